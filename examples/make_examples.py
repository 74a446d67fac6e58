"""Rebuild the bundled sample shards from scikit-image's sample photographs.

Needs `pip install scikit-image` (not a llavaforge dependency). The images are public
domain or CC0; see LICENSES.md beside this file. The shards also carry a few deliberately
bad inputs (a truncated JPEG, a non-image member, a null image cell, a duplicate) so the
demo shows rejects and dedup at work.
"""

import io
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import skimage.data
from PIL import Image

HERE = Path(__file__).resolve().parent
MAX_SIDE = 512

TAR_IMAGES = {
    "astronaut": "Portrait of an astronaut in a white spacesuit holding a helmet, with a flag behind her.",
    "chelsea": "A tabby cat sitting and looking to the side.",
    "coffee": "A cup of coffee on a saucer with a spoon.",
    "rocket": "A rocket standing on a launch pad under a blue sky.",
    "camera": "",
    "text": "",
}
PARQUET_IMAGES = {
    "hubble_deep_field": "Deep field image of many distant galaxies.",
    "immunohistochemistry": "",
    "horse": "Silhouette of a horse.",
    "coffee": "Duplicate of the coffee photograph in the tar shard.",
}


def jpeg(name: str) -> bytes:
    image = Image.fromarray(getattr(skimage.data, name)())
    image.thumbnail((MAX_SIDE, MAX_SIDE))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    with tarfile.open(HERE / "sample-000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, caption in TAR_IMAGES.items():
            add(tar, f"{name}.jpg", jpeg(name))
            if caption:
                add(tar, f"{name}.txt", caption.encode())
        add(tar, "broken.jpg", jpeg("chelsea")[:3000])
        add(tar, "notes.md", b"This member is not an image: it becomes a `no_image` reject.\n")
    rows = [{"image": {"bytes": jpeg(n), "path": f"{n}.jpg"}, "text": t or None, "id": n}
            for n, t in PARQUET_IMAGES.items()]
    rows.append({"image": None, "text": "A row whose image is missing.", "id": "missing"})
    pq.write_table(pa.Table.from_pylist(rows), HERE / "sample-001.parquet")


if __name__ == "__main__":
    main()
