"""Records for the vision-role tests: real photos from the bundled examples, synthetic images."""

from __future__ import annotations

import hashlib
import io
import tarfile
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

from llavaforge.schemas.record import ImageInfo, ImageRecord, Source, content_key
from tests.conftest import EXAMPLES, image_bytes

# scikit-image samples (public domain / CC0, see examples/LICENSES.md)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "text")


@lru_cache(maxsize=None)
def _example_members() -> dict[str, bytes]:
    with tarfile.open(EXAMPLES / "sample-000.tar") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def record_of(data: bytes, member: str = "image.jpg", texts: tuple[str, ...] = ()) -> ImageRecord:
    image = Image.open(io.BytesIO(data))
    key = content_key(data)
    return ImageRecord(key=key, source=Source(url="test.tar", member=member, texts=list(texts)),
                       image=ImageInfo(data=data, format="jpg", width=image.width, height=image.height,
                                       sha256=hashlib.sha256(data).hexdigest(), phash="0" * 16,
                                       source_sha256=hashlib.sha256(data).hexdigest()))


def photo(name: str) -> ImageRecord:
    return record_of(_example_members()[f"{name}.jpg"], f"{name}.jpg")


def poisoned() -> ImageRecord:
    """A truncated JPEG (the bundled broken.jpg): its header parses, its pixels do not."""
    data = _example_members()["broken.jpg"]
    key = content_key(data)
    return ImageRecord(key=key, source=Source(url="test.tar", member="broken.jpg"),
                       image=ImageInfo(data=data, format="jpg", width=451, height=300, sha256=key * 2, phash="0" * 16))


def mixed_sizes() -> list[ImageRecord]:
    """Synthetic images of different sizes and aspect ratios, for one batch."""
    sizes = [(64, 48), (40, 90), (120, 60), (33, 33)]
    return [record_of(image_bytes(w, h, seed=i), f"noise{i}.jpg") for i, (w, h) in enumerate(sizes)]


def rendered_text(text: str, size: int = 64) -> ImageRecord:
    """Black text on white, PIL's default font at a large size."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("RGB", (right - left + 2 * size, bottom - top + 2 * size), "white")
    ImageDraw.Draw(image).text((size - left, size - top), text, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return record_of(out.getvalue(), "rendered.png")
