"""Small inline thumbnails (data URIs) of the gallery's images, read through fsspec."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from typing import Union

import fsspec
from PIL import Image

from llavaforge.schemas.layout import IMAGES_DIR
from llavaforge.storage import join

# WebP at its fastest method: as fast as JPEG here and about 15% smaller on the sample photos;
# every current browser shows it.
THUMBNAIL_FORMAT = "WEBP"
THUMBNAIL_QUALITY = 70
THUMBNAIL_METHOD = 0
_WORKERS = 8  # Pillow releases the GIL while decoding and encoding


def thumbnail_data_uri(data: bytes, max_side: int) -> str:
    """The image shrunk to fit max_side x max_side, as a data URI. JPEGs are decoded at a
    reduced scale (draft mode), so a large photo costs little more than a small one."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (max_side, max_side))
        image.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        if "A" in image.getbands() or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        else:
            image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format=THUMBNAIL_FORMAT, quality=THUMBNAIL_QUALITY, method=THUMBNAIL_METHOD)
    return f"data:image/{THUMBNAIL_FORMAT.lower()};base64,{base64.b64encode(out.getvalue()).decode('ascii')}"


def thumbnails(run_dir: str, images: list[str], max_side: int) -> dict[str, Union[str, Exception]]:
    """images/<name> of a run folder -> data URI, or the exception that stopped it (a
    missing file, an image Pillow cannot read). Reads go out as one batch, which remote
    filesystems (gcsfs, s3fs) fetch concurrently."""
    fs, root = fsspec.core.url_to_fs(run_dir)
    paths = {name: join(root, IMAGES_DIR, name) for name in images}
    fetched = fs.cat(list(paths.values()), on_error="return") if paths else {}

    def one(name: str) -> Union[str, Exception]:
        data = fetched.get(paths[name])
        if isinstance(data, Exception):
            return data
        if not isinstance(data, bytes):
            return FileNotFoundError(paths[name])
        try:
            return thumbnail_data_uri(data, max_side)
        except Exception as e:  # noqa: BLE001 -- one unreadable image is shown as such, not fatal
            return e

    with ThreadPoolExecutor(_WORKERS) as pool:
        return dict(zip(images, pool.map(one, images)))
