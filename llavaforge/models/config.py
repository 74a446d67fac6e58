"""Recipe section `annotate`: which vision roles run, with which models."""

from llavaforge.schemas.config import StrictModel


class AnnotateConfig(StrictModel):
    """No role runs unless the recipe or a preset names a model for it."""
