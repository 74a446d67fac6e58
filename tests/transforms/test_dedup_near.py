import io
import tarfile

import apache_beam as beam
import imagehash
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image, ImageFilter

from llavaforge.config.recipe import Recipe
from llavaforge.schemas.record import ImageInfo, ImageRecord, Source, content_key
from llavaforge.transforms.dedup import NearDedup, band_keys, hash_bands
from tests.conftest import EXAMPLES

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "text")


def photos() -> dict[str, Image.Image]:
    with tarfile.open(EXAMPLES / "sample-000.tar") as tar:
        return {name: Image.open(io.BytesIO(tar.extractfile(f"{name}.jpg").read())).convert("RGB")
                for name in PHOTOS}


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def cropped(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    dx, dy = int(w * share), int(h * share)
    return image.crop((dx, dy, w - dx, h - dy))


def grass(seed: int, size: int = 256) -> Image.Image:
    """A blurred green noise texture: many such images look alike and are not duplicates."""
    g = np.clip(100 + 40 * np.random.default_rng(seed).normal(size=(size, size)), 0, 255)
    rgb = np.stack([g * 0.4, g, g * 0.3], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(2))


def record(member: str, image: Image.Image) -> ImageRecord:
    """Near-dedup reads only the pHash (computed as Decode does) and the source."""
    key = content_key(member.encode())
    return ImageRecord(key=key, source=Source("shard.tar", member),
                       image=ImageInfo(data=b"", format="png", width=image.width, height=image.height,
                                       sha256=key, phash=str(imagehash.phash(image))))


def test_bands_cover_all_bits_and_catch_every_close_pair():
    for d in (0, 6, 10, 32):
        bands = hash_bands(d)
        assert len(bands) == d + 1 and sum(w for _, w in bands) == 64
    rng = np.random.default_rng(0)
    bands = hash_bands(6)
    for _ in range(200):
        a = int(rng.integers(0, 2**63)) << 1
        b = a
        for bit in rng.choice(64, size=6, replace=False):
            b ^= 1 << int(bit)
        assert set(band_keys(a, bands)) & set(band_keys(b, bands))


def test_copies_are_caught_and_different_images_are_not():
    images = photos()
    astronaut, chelsea = images["astronaut"], images["chelsea"]
    w, h = astronaut.size
    texture = grass(1)
    records = [record(f"0_{name}.jpg", image) for name, image in images.items()] + [
        record("1_astronaut_half.jpg", astronaut.resize((w // 2, h // 2))),
        record("1_astronaut_q30.jpg", jpeg(astronaut, 30)),
        record("1_astronaut_crop.jpg", cropped(astronaut, 0.02)),
        record("1_chelsea_crop.jpg", cropped(chelsea, 0.02)),
        record("2_grass_a.jpg", texture.crop((0, 0, 128, 128))),
        record("2_grass_b.jpg", texture.crop((128, 128, 256, 256))),
        record("2_grass_other.jpg", grass(2)),
    ]
    keys = {r.source.member: r.key for r in records}
    copies = {"1_astronaut_half.jpg": "0_astronaut.jpg", "1_astronaut_q30.jpg": "0_astronaut.jpg",
              "1_astronaut_crop.jpg": "0_astronaut.jpg", "1_chelsea_crop.jpg": "0_chelsea.jpg"}
    with TestPipeline() as p:
        # reversed input: which copy is kept must not depend on arrival order
        kept, rejects = p | beam.Create(records[::-1]) | NearDedup(max_distance=6)
        assert_that(kept | beam.Map(lambda r: r.source.member),
                    equal_to([m for m in keys if m not in copies]), label="kept")
        assert_that(rejects | beam.Map(lambda r: (r.source_member, r.stage, r.reason, r.detail.split()[3])),
                    equal_to([(m, "dedup", "near_duplicate", keys[kept_member])
                              for m, kept_member in copies.items()]), label="rejects")
