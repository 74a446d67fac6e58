"""The base of every recipe section: typed, strict, immutable, documented field by field."""

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Unknown fields are errors, so a typo in a recipe never passes silently. Frozen: a recipe
    is validated and hashed once, so nothing may change it afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BatchBounds(StrictModel):
    """The batch sizes a model stage's RunInference may form."""

    min_batch_size: int = Field(default=1, ge=1, description="Smallest batch per model call.")
    max_batch_size: int = Field(default=16, ge=1, description="Largest batch per model call (fill the GPU).")

    @model_validator(mode="after")
    def _min_not_above_max(self):
        if self.min_batch_size > self.max_batch_size:
            raise ValueError("min_batch_size must be <= max_batch_size")
        return self
