"""WebDataset's naming rule, kept here so that reading a shard's keys needs no webdataset
import (which loads torch): a member `dir/name.ext1.ext2` belongs to sample `dir/name`
with extension `ext1.ext2` (the key runs to the first dot of the basename)."""

from __future__ import annotations

import re
from typing import Optional

_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")


def split_member_name(name: str) -> tuple[Optional[str], Optional[str]]:
    """(key, extension) of a member name as webdataset's `base_plus_ext` splits it; (None, None)
    when the basename has no dot."""
    match = _MEMBER.match(name)
    return (match.group(1), match.group(2)) if match else (None, None)
