import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from llavaforge.config.sections import DecodeConfig
from llavaforge.schemas.record import ImageRecord, RawSample, Reject, Source, content_key
from llavaforge.transforms.decode import decode_sample
from tests.conftest import image_bytes

CONFIG = DecodeConfig()


def decode(data: bytes, config=CONFIG, ext="jpg"):
    return decode_sample(RawSample(source=Source(url="s.tar", member=f"m.{ext}"), data=data, extension=ext),
                         config, None)


def reject_reason(data: bytes, config=CONFIG) -> str:
    out = decode(data, config)
    assert isinstance(out, Reject), out
    assert out.stage == "decode" and out.detail
    return out.reason


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a huge size: Pillow reads the header without decoding pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def test_valid_jpeg_keeps_original_bytes_and_metadata():
    data = image_bytes(80, 60)
    record = decode(data)
    assert isinstance(record, ImageRecord)
    assert record.key == content_key(data)
    assert record.image.data == data and record.image.format == "jpg"
    assert (record.image.width, record.image.height) == (80, 60)
    assert len(record.image.sha256) == 64 and len(record.image.phash) == 16


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"this is a text file pretending to be a jpeg\n" * 10, "not_an_image"),
    (image_bytes(300, 300)[:1500], "truncated"),
    (image_bytes(1, 1, fmt="PNG"), "too_small"),
    (image_bytes(400, 33, fmt="PNG"), "extreme_aspect_ratio"),
    (png_header_only(20000, 20000), "decompression_bomb"),
])
def test_reject_reasons(data, reason):
    assert reject_reason(data) == reason


def test_decompression_bomb_limit_is_configurable():
    data = image_bytes(100, 100, fmt="PNG")
    assert reject_reason(data, DecodeConfig(max_pixels=5000)) == "decompression_bomb"
    assert isinstance(decode(data, DecodeConfig(max_pixels=10000)), ImageRecord)


def test_corrupt_png_body():
    data = bytearray(image_bytes(64, 64, fmt="PNG"))
    data[60:200] = b"\x00" * 140
    assert reject_reason(bytes(data)) in ("corrupt", "truncated")


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("P", "PNG"), ("L", "PNG"), ("RGBA", "PNG"),
                                       ("RGB", "WEBP"), ("RGB", "BMP"), ("RGB", "GIF"), ("RGB", "TIFF")])
def test_accepted_modes_and_formats(mode, fmt):
    record = decode(image_bytes(64, 48, fmt=fmt, mode=mode))
    assert isinstance(record, ImageRecord), record
    assert record.image.format in ("jpg", "png", "webp")
    Image.open(io.BytesIO(record.image.data)).convert("RGB").load()


def test_16_bit_is_scaled_not_clipped_and_reencoded():
    array = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20)
    out = io.BytesIO()
    Image.fromarray(array, "I;16").save(out, format="PNG")
    record = decode(out.getvalue(), ext="png")
    assert isinstance(record, ImageRecord)
    assert record.image.format == "png" and record.image.data != out.getvalue()
    pixels = np.asarray(Image.open(io.BytesIO(record.image.data)).convert("L"))
    assert 0 < pixels.mean() < 250  # Pillow's own convert would clip almost all to 255


def test_palette_with_transparency_is_composited():
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 0, 0] + [0, 0, 0] * 255)
    out = io.BytesIO()
    image.save(out, format="PNG", transparency=0)
    assert isinstance(decode(out.getvalue(), ext="png"), ImageRecord)


def test_exif_orientation_is_applied_and_bytes_reencoded():
    image = Image.fromarray(np.zeros((40, 80, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    record = decode(out.getvalue())
    assert (record.image.width, record.image.height) == (40, 80)
    stored = Image.open(io.BytesIO(record.image.data))
    assert stored.size == (40, 80)  # what a training loader sees matches what models saw


def test_animated_gif_first_frame():
    frames = [Image.new("RGB", (50, 50), c) for c in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    record = decode(out.getvalue(), ext="gif")
    assert record.image.format == "png"


def _half_transparent_rgba() -> Image.Image:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (40, 60, 4), dtype=np.uint8)
    rgba[:, :30, 3] = 0  # fully transparent half with coloured pixels under it
    return Image.fromarray(rgba, "RGBA")


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (40, 40), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)
    image.paste(1, (0, 0, 20, 40))
    image.info["transparency"] = 0
    return image


def _encoded(image: Image.Image, fmt: str, **save) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save)
    return out.getvalue()


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encoded(Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 80, 3), dtype=np.uint8)), "JPEG",
                    exif=exif)


def _sixteen_bit() -> bytes:
    return _encoded(Image.fromarray((np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 20), "I;16"), "PNG")


MODES = {
    "rgba": (_encoded(_half_transparent_rgba(), "PNG"), "png"),
    "la": (_encoded(_half_transparent_rgba().convert("LA"), "PNG"), "png"),
    "palette-transparency": (_encoded(_palette_with_transparency(), "PNG", transparency=0), "png"),
    "16-bit": (_sixteen_bit(), "png"),
    "cmyk": (image_bytes(64, 48, fmt="JPEG", mode="CMYK"), "jpg"),
    "exif-rotated": (_exif_rotated_jpeg(), "jpg"),
    "grey": (image_bytes(64, 48, fmt="PNG", mode="L"), "png"),
    "rgb-webp": (image_bytes(64, 48, fmt="WEBP"), "webp"),
    "rgb-jpeg": (image_bytes(64, 48), "jpg"),
}


@pytest.mark.parametrize("name", sorted(MODES))
def test_a_training_loader_sees_exactly_the_canonical_pixels(name):
    """`Image.open(p).convert("RGB")` on the written bytes (what LLaVA's loader, and the vision
    models, do) equals the canonical view: EXIF applied, alpha composited on white, 16-bit scaled."""
    from llavaforge.transforms.decode import open_image

    data, ext = MODES[name]
    record = decode(data, ext=ext)
    assert isinstance(record, ImageRecord), record
    _, canonical, _ = open_image(data, CONFIG)
    seen = Image.open(io.BytesIO(record.image.data)).convert("RGB")
    assert np.array_equal(np.asarray(seen), np.asarray(canonical)), name
    assert record.image.sha256 == hashlib.sha256(record.image.data).hexdigest()  # the bytes written
    assert record.image.source_sha256 == hashlib.sha256(data).hexdigest()
    kept = record.image.data == data
    assert kept == (name in ("cmyk", "grey", "rgb-webp", "rgb-jpeg")), name  # originals kept only when faithful
