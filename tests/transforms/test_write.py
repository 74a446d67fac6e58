"""The shard writer reads each staged image once and holds one row group of images at a time."""

from __future__ import annotations

import pickle
import tarfile

import pyarrow.parquet as pq

from llavaforge.schemas import record as record_module
from llavaforge.schemas.layout import IMAGES_DIR, SAMPLES_DIR, image_name, shard_path, wds_shard_path
from llavaforge.transforms.staging import staged
from llavaforge.transforms.write import IMAGES_PER_ROW_GROUP, write_image_shard
from tests.conftest import make_record


def test_a_shard_writer_holds_one_row_group_of_staged_images(tmp_path, monkeypatch):
    originals = [make_record(key=f"{i:032x}", seed=i) for i in range(2 * IMAGES_PER_ROW_GROUP + 5)]
    # As the writer gets them: staged, across a stage boundary, bytes not loaded.
    records = [pickle.loads(pickle.dumps(staged(r, str(tmp_path / "staging")))) for r in originals]
    loaded_at_each_read = []
    read_bytes = record_module.read_bytes

    def counting_read(url: str) -> bytes:
        loaded_at_each_read.append(1 + sum("data" in r.image.__dict__ for r in records))
        return read_bytes(url)

    monkeypatch.setattr(record_module, "read_bytes", counting_read)
    run_dir = str(tmp_path / "run")
    summary = write_image_shard(run_dir, 0, records)

    assert len(loaded_at_each_read) == len(records)  # each image read once for all three outputs
    assert max(loaded_at_each_read) <= IMAGES_PER_ROW_GROUP
    assert not any("data" in r.image.__dict__ for r in records)
    assert summary["images"] == summary["samples"] == len(records)
    expected = {r.key: r.image.data for r in originals}
    samples = pq.ParquetFile(shard_path(run_dir, SAMPLES_DIR, 0, "parquet"))
    assert samples.metadata.num_row_groups == 3
    table = samples.read(columns=["key", "image"]).to_pylist()
    assert {row["key"]: row["image"]["bytes"] for row in table} == expected
    with tarfile.open(wds_shard_path(run_dir, "jpg", 0)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg")}
    assert members == {f"{key}.jpg": data for key, data in expected.items()}
    assert all((tmp_path / "run" / IMAGES_DIR / image_name(key, "jpg")).read_bytes() == data
               for key, data in expected.items())
