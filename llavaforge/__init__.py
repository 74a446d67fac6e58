"""llavaforge: raw image collections in, LLaVA-style visual-instruction data out."""

__version__ = "0.1.0"
