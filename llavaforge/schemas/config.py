"""The base of every recipe section: typed, strict, and documented field by field."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown fields are errors, so a typo in a recipe never passes silently."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
