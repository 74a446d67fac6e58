import re

from llavaforge.schemas.record import Reject, Source, content_key, source_key


def test_content_key_is_stable_hex_without_dots_or_slashes():
    key = content_key(b"abc")
    assert key == content_key(b"abc") != content_key(b"abd")
    assert re.fullmatch(r"[0-9a-f]{32}", key)


def test_source_key_never_contains_the_member_name():
    key = source_key("s.tar", "../../etc/passwd.jpg")
    assert re.fullmatch(r"[0-9a-f]{32}", key)


def test_reject_detail_is_truncated():
    r = Reject.of("k", Source(url="u", member="m"), "decode", "corrupt", "x" * 5000)
    assert len(r.detail) == 2000 and r.task is None
