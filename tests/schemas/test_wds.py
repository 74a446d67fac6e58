from webdataset.tariterators import base_plus_ext

from llavaforge.schemas.wds import split_member_name


def test_member_names_split_as_webdataset_splits_them():
    names = ["a.jpg", "dir/a.b.json", "x/y/z.tar.gz", "noext", "d.ir/file.png", ".hidden", "a.", "k/.jpg"]
    for name in names:
        assert split_member_name(name) == base_plus_ext(name), name
