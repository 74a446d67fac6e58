"""Decode: validate every image fully with Pillow and make it a record, or reject it.

Every image has one canonical RGB view (`to_rgb`: EXIF orientation applied, transparency
composited on white, high bit depths scaled). The bytes written are such that a training
loader's `Image.open(p).convert("RGB")` (which ignores EXIF orientation and alpha) returns
exactly that view: the original bytes when their loader view already equals it pixel for
pixel, else the canonical view re-encoded losslessly (PNG). The vision models decode the
written bytes the same way, so models and trainers see the same pixels.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from typing import Iterator, Optional, Union

import apache_beam as beam
import imagehash
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from llavaforge.config.sections import DecodeConfig
from llavaforge.schemas.record import ImageInfo, ImageRecord, Provenance, RawSample, Reject, key_of_sha256
from llavaforge.transforms.base import StageFn, apply_stage_fn

STAGE = "decode"
ACCEPTED_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif",
                    "BMP": "bmp", "TIFF": "tiff"}
KEPT_FORMATS = {"JPEG", "MPO", "PNG", "WEBP"}

ImageFile.LOAD_TRUNCATED_IMAGES = False


class DecodeReject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency composited on white, high bit depths
    scaled (Pillow's own convert clips 16-bit values to white)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(array.max()), 1.0)
        if mode == "F":
            low = float(array.min())
            array, top = array - low, max(float(array.max()) - low, 1e-12)
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    converted = image.convert("RGB")
    if converted.mode != "RGB":
        raise DecodeReject("unsupported_mode", f"cannot convert mode {mode} to RGB")
    return converted


def open_image(data: bytes, config: DecodeConfig) -> tuple[Image.Image, Image.Image, bool]:
    """(decoded image as stored, normalised RGB, whether EXIF orientation changed it).
    Raises DecodeReject with the reason."""
    if not data:
        raise DecodeReject("empty", "zero bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError as e:
            raise DecodeReject("not_an_image", str(e)) from e
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DecodeReject("decompression_bomb", str(e)) from e
        if image.format not in ACCEPTED_FORMATS:
            raise DecodeReject("unsupported_format", f"format {image.format}")
        width, height = image.size
        # Checked from the header, before any pixel is decoded.
        if width * height > config.max_pixels:
            raise DecodeReject("decompression_bomb",
                               f"{width}x{height} = {width * height} pixels > max_pixels {config.max_pixels}")
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DecodeReject("decompression_bomb", str(e)) from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            reason = "truncated" if "truncated" in str(e).lower() or isinstance(e, EOFError) else "corrupt"
            raise DecodeReject(reason, f"{type(e).__name__}: {e}") from e
    rotated = _orientation(image) not in (None, 1)
    try:
        rgb = to_rgb(ImageOps.exif_transpose(image) if rotated else image)
    except DecodeReject:
        raise
    except Exception as e:  # noqa: BLE001 -- Pillow raises many types for exotic modes
        raise DecodeReject("unsupported_mode", f"mode {image.mode}: {type(e).__name__}: {e}") from e
    return image, rgb, rotated


def _orientation(image: Image.Image) -> Optional[int]:
    try:
        return image.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 -- a broken EXIF block means no orientation
        return None


def loader_view_is(image: Image.Image, rgb: Image.Image) -> bool:
    """Whether `Image.open(original).convert("RGB")` returns exactly the canonical `rgb`."""
    if image.mode == "RGB":
        return image.size == rgb.size
    try:
        view = image.convert("RGB")
    except Exception:  # noqa: BLE001 -- a mode Pillow cannot convert: the loader would fail too
        return False
    return view.size == rgb.size and np.array_equal(np.asarray(view), np.asarray(rgb))


def encode(rgb: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    if fmt == "jpg":
        rgb.save(out, format="JPEG", quality=95)
    else:
        rgb.save(out, format="PNG", optimize=False)
    return out.getvalue()


def decode_sample(sample: RawSample, config: DecodeConfig, provenance: Optional[Provenance]) -> Union[ImageRecord, Reject]:
    source_sha256 = hashlib.sha256(sample.data).hexdigest()
    key = key_of_sha256(source_sha256)
    try:
        image, rgb, rotated = open_image(sample.data, config)
        width, height = rgb.size
        if min(width, height) < config.min_side:
            raise DecodeReject("too_small", f"{width}x{height}, min_side {config.min_side}")
        if max(width, height) / min(width, height) > config.max_aspect_ratio:
            raise DecodeReject("extreme_aspect_ratio",
                               f"{width}x{height}, max_aspect_ratio {config.max_aspect_ratio}")
    except DecodeReject as e:
        return Reject.of(key, sample.source, STAGE, e.reason, str(e))
    if image.format in KEPT_FORMATS and not rotated and loader_view_is(image, rgb):
        data, fmt = sample.data, ACCEPTED_FORMATS[image.format]
    else:
        data, fmt = encode(rgb, config.reencode_format), config.reencode_format
    sha256 = source_sha256 if data is sample.data else hashlib.sha256(data).hexdigest()
    info = ImageInfo(data=data, format=fmt, width=width, height=height, sha256=sha256,
                     phash=str(imagehash.phash(rgb)), source_sha256=source_sha256)
    return ImageRecord(key=key, source=sample.source, image=info, provenance=provenance)


class DecodeFn(StageFn):
    stage = STAGE

    def __init__(self, config: DecodeConfig, provenance: Optional[Provenance]) -> None:
        super().__init__()
        self.config = config
        self.provenance = provenance

    def process_element(self, sample: RawSample) -> Iterator[Union[ImageRecord, Reject]]:
        yield decode_sample(sample, self.config, self.provenance)


class Decode(beam.PTransform):
    """RawSamples -> (ImageRecords, rejects)."""

    def __init__(self, config: DecodeConfig, provenance: Optional[Provenance] = None) -> None:
        super().__init__()
        self.config = config
        self.provenance = provenance

    def expand(self, samples):
        return apply_stage_fn(samples, DecodeFn(self.config, self.provenance), "DecodeValidate")
