"""Recipe section `check`: quality and grounding checks on generated conversations."""

from llavaforge.schemas.config import StrictModel


class CheckConfig(StrictModel):
    """Checks on generated conversations."""
