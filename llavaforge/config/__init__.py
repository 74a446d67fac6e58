"""Configuration: every recipe section, both preset tables, and the one loader that resolves
them into the recipe a run uses (presets merged once, validated once, hashed once)."""
