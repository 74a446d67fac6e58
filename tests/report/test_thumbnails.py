import base64
import io

from PIL import Image

from llavaforge.report.thumbnails import thumbnail_data_uri, thumbnails


def decoded(uri: str) -> Image.Image:
    header, data = uri.split(",", 1)
    assert header == "data:image/webp;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


def encoded(image: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def test_thumbnails_fit_the_box_and_keep_the_aspect_ratio():
    thumb = decoded(thumbnail_data_uri(encoded(Image.new("RGB", (1600, 900), "red"), "JPEG"), 192))
    assert thumb.size == (192, 108)
    small = decoded(thumbnail_data_uri(encoded(Image.new("RGB", (40, 30), "red"), "PNG"), 192))
    assert small.size == (40, 30)  # never enlarged


def test_transparent_images_are_shown_on_white():
    transparent = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    thumb = decoded(thumbnail_data_uri(encoded(transparent, "PNG"), 192)).convert("RGB")
    assert min(thumb.getpixel((25, 25))) > 240


def test_missing_and_unreadable_images_come_back_as_errors(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "ok.png").write_bytes(encoded(Image.new("RGB", (8, 8)), "PNG"))
    (tmp_path / "images" / "bad.jpg").write_bytes(b"not an image")
    result = thumbnails(str(tmp_path), ["ok.png", "bad.jpg", "gone.jpg"], 64)
    assert result["ok.png"].startswith("data:image/webp;base64,")
    assert isinstance(result["bad.jpg"], Exception) and isinstance(result["gone.jpg"], FileNotFoundError)
