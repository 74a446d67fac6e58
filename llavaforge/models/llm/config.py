"""Recipe section `synthesize`: which task types the LLM writes, with which backend."""

from llavaforge.schemas.config import StrictModel


class SynthesizeConfig(StrictModel):
    """Synthesis is off unless the recipe or a preset turns it on."""
