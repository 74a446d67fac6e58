import apache_beam as beam
import fsspec
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from llavaforge.config.sections import ReadConfig
from llavaforge.schemas.record import RawSample, Reject
from llavaforge.transforms.read import InputError, ReadShardFn, ReadShards, group_members, match_inputs
from tests.conftest import image_bytes, tar_bytes, write_parquet, write_tar

CONFIG = ReadConfig()


def read(url, config=CONFIG):
    return list(ReadShardFn(config).read_shard(url))


def members_of(outputs):
    return sorted(o.source.member for o in outputs if isinstance(o, RawSample))


def reasons_of(outputs):
    return sorted(o.reason for o in outputs if isinstance(o, Reject))


@pytest.fixture
def memfs():
    fs = fsspec.filesystem("memory")
    yield fs
    fs.rm("/", recursive=True)


def test_tar_groups_by_key_with_siblings(tmp_path):
    url = write_tar(tmp_path / "a.tar", [
        ("x/one.jpg", image_bytes(seed=1)), ("x/one.txt", b" a red bus "), ("x/one.json", b'{"w": 1}'),
        ("two.png", image_bytes(fmt="PNG", seed=2)), ("two.caption", b"second"),
    ])
    out = read(url)
    assert members_of(out) == ["two.png", "x/one.jpg"]
    one = next(o for o in out if o.source.member == "x/one.jpg")
    assert one.source.texts == ["a red bus"] and one.source.metadata == '{"w": 1}'
    assert one.extension == "jpg" and one.source.url == url


def test_tar_on_memory_filesystem(memfs):
    memfs.pipe("/shards/a.tar", tar_bytes([("k.webp", image_bytes(fmt="WEBP"))]))
    assert members_of(read("memory://shards/a.tar")) == ["k.webp"]


def test_non_image_member_is_a_reject(tmp_path):
    url = write_tar(tmp_path / "a.tar", [("a.jpg", image_bytes()), ("notes.md", b"hello")])
    out = read(url)
    assert members_of(out) == ["a.jpg"]
    (reject,) = [o for o in out if isinstance(o, Reject)]
    assert (reject.stage, reject.reason, reject.source_member) == ("read", "no_image", "notes.md")


def test_truncated_tar_keeps_samples_before_the_break(tmp_path):
    whole = tar_bytes([("a.jpg", image_bytes(seed=1)), ("b.jpg", image_bytes(seed=2, width=300, height=300))])
    url = str(tmp_path / "t.tar")
    (tmp_path / "t.tar").write_bytes(whole[: len(whole) - 2048 - 700])
    out = read(url)
    assert "a.jpg" in members_of(out)
    assert reasons_of(out) == ["truncated_shard"]


def test_garbage_tar_is_one_reject(tmp_path):
    (tmp_path / "g.tar").write_bytes(b"definitely not a tar" * 100)
    out = read(str(tmp_path / "g.tar"))
    assert [o.reason for o in out] in (["unreadable_shard"], ["truncated_shard"])


def test_duplicate_member_names_lose_nothing(tmp_path):
    url = write_tar(tmp_path / "d.tar", [("a.jpg", image_bytes(seed=1)), ("a.jpg", image_bytes(seed=2)),
                                         ("b.jpg", image_bytes(seed=3)), ("a.jpg", image_bytes(seed=4))])
    assert members_of(read(url)) == ["a.jpg", "a.jpg", "a.jpg", "b.jpg"]


def test_path_traversal_names_stay_text(tmp_path):
    url = write_tar(tmp_path / "p.tar", [("../../etc/passwd.jpg", image_bytes()), ("/abs/x.png", image_bytes(fmt="PNG"))])
    out = read(url)
    assert members_of(out) == ["../../etc/passwd.jpg", "/abs/x.png"]
    assert not (tmp_path.parent.parent / "etc" / "passwd.jpg").exists()


def test_group_members_follows_webdataset_keys():
    groups = list(group_members([("a.b.jpg", b"1"), ("a.b.txt", b"2"), ("c.jpg", b"3"), ("noext", b"4")]))
    assert [(k, sorted(g)) for k, g in groups] == [("a", ["b.jpg", "b.txt"]), ("c", ["jpg"]), ("noext", [""])]


def test_parquet_bytes_struct_path_and_nulls(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "p.png").write_bytes(image_bytes(fmt="PNG", seed=5))
    url = write_parquet(tmp_path / "s.parquet", [
        {"image": {"bytes": image_bytes(seed=1), "path": None}, "caption": "first", "id": "r1"},
        {"image": {"bytes": None, "path": "img/p.png"}, "caption": None, "id": "r2"},
        {"image": None, "caption": "no image", "id": "r3"},
        {"image": {"bytes": None, "path": "../outside.png"}, "caption": None, "id": "r4"},
    ])
    config = ReadConfig(text_column="caption", id_column="id")
    out = read(url, config)
    assert members_of(out) == ["r1", "r2"]
    assert next(o for o in out if o.source.member == "r1").source.texts == ["first"]
    assert reasons_of(out) == ["image_path_not_allowed", "null_image"]


def test_parquet_raw_bytes_column_on_memory(memfs, tmp_path):
    local = write_parquet(tmp_path / "raw.parquet", [{"jpg": image_bytes(seed=i)} for i in range(3)])
    memfs.pipe("/p/raw.parquet", open(local, "rb").read())
    out = read("memory://p/raw.parquet", ReadConfig(image_column="jpg"))
    assert members_of(out) == ["row 0", "row 1", "row 2"]


def test_missing_parquet_column_is_named(tmp_path):
    url = write_parquet(tmp_path / "s.parquet", [{"picture": image_bytes()}])
    (reject,) = read(url)
    assert reject.reason == "missing_column" and "'image'" in reject.detail and "read.image_column" in reject.detail
    with pytest.raises(InputError, match="read.image_column"):
        match_inputs([url], CONFIG)


def test_folder_recursive_with_sibling_text(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "a.jpg").write_bytes(image_bytes(seed=1))
    (root / "a.txt").write_text("alt text")
    (root / "sub" / "b.png").write_bytes(image_bytes(fmt="PNG", seed=2))
    (root / "sub" / "readme.pdf").write_bytes(b"%PDF")
    out = read(str(root))
    assert members_of(out) == ["a.jpg", "sub/b.png"]
    assert next(o for o in out if o.source.member == "a.jpg").source.texts == ["alt text"]
    assert reasons_of(out) == ["no_image"]


def test_match_inputs_globs_lists_and_errors(tmp_path, memfs):
    write_tar(tmp_path / "a-0.tar", [("a.jpg", image_bytes())])
    write_tar(tmp_path / "a-1.tar", [("a.jpg", image_bytes())])
    (tmp_path / "pic.jpg").write_bytes(image_bytes())
    memfs.pipe("/m/x.tar", tar_bytes([("a.jpg", image_bytes())]))
    urls = match_inputs([str(tmp_path / "a-*.tar"), f"file://{tmp_path}/pic.jpg", "memory://m/*.tar",
                         str(tmp_path / "a-0.tar")], CONFIG)
    assert len(urls) == 4 and urls == sorted(urls)
    assert any(u.startswith("memory://") for u in urls)
    with pytest.raises(InputError, match="nothing-here"):
        match_inputs([str(tmp_path / "nothing-here-*.tar")], CONFIG)


def test_single_image_file_with_sibling(tmp_path):
    (tmp_path / "cat.jpg").write_bytes(image_bytes())
    (tmp_path / "cat.txt").write_text("a cat")
    (sample,) = read(str(tmp_path / "cat.jpg"))
    assert sample.source.member == "cat.jpg" and sample.source.texts == ["a cat"]


def test_read_shards_pipeline_spreads_and_reads(tmp_path):
    a = write_tar(tmp_path / "a.tar", [("1.jpg", image_bytes(seed=1)), ("x.md", b"no")])
    b = write_tar(tmp_path / "b.tar", [("2.jpg", image_bytes(seed=2))])
    with TestPipeline() as p:
        samples, rejects = p | ReadShards([a, b], CONFIG)
        assert_that(samples | "M" >> beam.Map(lambda s: s.source.member),
                    equal_to(["1.jpg", "2.jpg"]), label="samples")
        assert_that(rejects | "R" >> beam.Map(lambda r: r.reason),
                    equal_to(["no_image"]), label="rejects")


def special_tar(path) -> str:
    import io as _io
    import tarfile

    with tarfile.open(path, "w") as tar:
        def add(info, data=b""):
            info.size = len(data)
            tar.addfile(info, _io.BytesIO(data) if data else None)

        add(tarfile.TarInfo("ok.jpg"), image_bytes(seed=1))
        for name, kind, link in [("link.jpg", tarfile.SYMTYPE, "/etc/passwd"), ("hard.jpg", tarfile.LNKTYPE, "ok.jpg"),
                                 ("folder", tarfile.DIRTYPE, ""), ("pipe.jpg", tarfile.FIFOTYPE, ""),
                                 ("dev.jpg", tarfile.CHRTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            add(info)
    return str(path)


def test_every_tar_member_that_is_not_a_file_is_counted_with_its_own_reason(tmp_path):
    out = read(special_tar(tmp_path / "special.tar"))
    assert members_of(out) == ["ok.jpg"]
    assert sorted((o.source_member, o.reason) for o in out if isinstance(o, Reject)) == [
        ("dev.jpg", "device_member"), ("folder", "directory_member"), ("hard.jpg", "hardlink_member"),
        ("link.jpg", "symlink_member"), ("pipe.jpg", "fifo_member")]


def test_members_above_the_limit_are_rejects_and_not_read(tmp_path):
    big = image_bytes(400, 400, fmt="PNG", seed=3)
    url = write_tar(tmp_path / "big.tar", [("big.png", big), ("big.txt", b"caption"), ("small.jpg", image_bytes())])
    out = read(url, ReadConfig(max_member_bytes=len(big) - 1))
    assert members_of(out) == ["small.jpg"]
    (reject,) = [o for o in out if isinstance(o, Reject)]
    assert (reject.source_member, reject.reason) == ("big.png", "member_too_large")  # one input, caption or not
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "big.png").write_bytes(big)
    assert reasons_of(read(str(folder), ReadConfig(max_member_bytes=100))) == ["member_too_large"]


def test_path_cells_stay_inside_the_shard_folder_unless_a_prefix_is_allowed(tmp_path, memfs):
    secret = tmp_path / "secret.png"
    secret.write_bytes(image_bytes(fmt="PNG", seed=9))
    memfs.pipe("/bucket/other.png", image_bytes(fmt="PNG", seed=8))
    (tmp_path / "ds").mkdir()
    rows = [{"image": {"bytes": None, "path": path}} for path in
            (f"file://{secret}", str(secret), "memory://bucket/other.png", "http://127.0.0.1:9/x.png", "local://x.png")]
    url = write_parquet(tmp_path / "ds" / "s.parquet", rows)
    out = read(url)
    assert reasons_of(out) == ["image_path_not_allowed"] * 5
    allowed = read(url, ReadConfig(allowed_path_prefixes=[f"file://{tmp_path}", "memory://bucket"]))
    assert members_of(allowed) == ["row 0", "row 2"]


def test_a_symlink_out_of_a_folder_shard_is_not_followed(tmp_path):
    (tmp_path / "outside.jpg").write_bytes(image_bytes(seed=4))
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "in.jpg").write_bytes(image_bytes(seed=5))
    (folder / "escape.jpg").symlink_to(tmp_path / "outside.jpg")
    out = read(str(folder))
    assert members_of(out) == ["in.jpg"] and reasons_of(out) == ["symlink_member"]


@pytest.mark.parametrize("content", [b"", b"garbage, not parquet" * 10])
def test_a_bad_parquet_first_among_the_inputs_is_that_shards_reject(tmp_path, content):
    (tmp_path / "a-bad.parquet").write_bytes(content)
    good = write_parquet(tmp_path / "b-good.parquet", [{"image": image_bytes(seed=1)}])
    urls = match_inputs([str(tmp_path / "*.parquet")], CONFIG)  # no traceback at launch
    assert len(urls) == 2
    out = read(urls[0])
    assert [(o.reason, o.source_url) for o in out] == [("unreadable_shard", urls[0])]
    assert members_of(read(good)) == ["row 0"]


def test_every_read_reason_is_in_the_readme():
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "llavaforge" / "transforms" / "read.py").read_text()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    reasons = set(re.findall(r'(?:shard_reject\(url, |member_reject\(url, \w+, |STAGE, |TarInfo\.\w+, |\()"([a-z]+_[a-z_]+)"[,)]',
                             source))
    assert {"symlink_member", "member_too_large", "image_path_not_allowed", "unknown_shard_type"} <= reasons
    missing = sorted(r for r in reasons if f"`{r}`" not in readme)
    assert not missing, f"reject reasons missing from the README table: {missing}"
