"""The one base of every error that means "bad usage or configuration" (exit 2).

Kept free of imports so the command line can catch it without loading Beam, torch or
pydantic first."""


class UsageError(ValueError):
    """Bad usage or configuration: the message names the flag, field, input or output."""
