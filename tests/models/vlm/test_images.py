"""What a VLM receives: images no larger than `max_image_side`, bytes passed through when they fit."""

from __future__ import annotations

import base64
import io

import torch
from PIL import Image

from llavaforge.models.vlm.images import data_url, fit_pil, fit_tensor, fitted_size, upload_bytes
from llavaforge.schemas.record import ImageInfo
from tests.conftest import image_bytes


def test_fitted_size_keeps_the_aspect_and_never_upscales():
    assert fitted_size(1000, 500, 768) == (768, 384)
    assert fitted_size(300, 1200, 600) == (150, 600)
    assert fitted_size(64, 48, 768) == (64, 48)


def test_pil_and_tensor_fit_agree_on_the_size():
    image = Image.open(io.BytesIO(image_bytes(200, 100)))
    assert fit_pil(image, 50).size == (50, 25)
    tensor = torch.randint(0, 256, (3, 100, 200), dtype=torch.uint8)
    fitted = fit_tensor(tensor, 50)
    assert fitted.shape == (3, 25, 50) and fitted.dtype == torch.uint8
    assert fit_tensor(tensor, 500) is tensor


def test_upload_passes_fitting_bytes_through_and_reencodes_the_rest():
    jpeg = ImageInfo(image_bytes(40, 30), "jpg", 40, 30, "", "")
    assert upload_bytes(jpeg, 64) == ("image/jpeg", jpeg.data)
    webp = ImageInfo(image_bytes(40, 30, fmt="WEBP"), "webp", 40, 30, "", "")
    assert upload_bytes(webp, 64) == ("image/webp", webp.data)
    big = ImageInfo(image_bytes(300, 150, fmt="PNG"), "png", 300, 150, "", "")
    mime, data = upload_bytes(big, 64)
    assert mime == "image/jpeg" and Image.open(io.BytesIO(data)).size == (64, 32)
    gif = ImageInfo(image_bytes(20, 20, fmt="GIF"), "gif", 20, 20, "", "")
    assert upload_bytes(gif, 64)[0] == "image/jpeg"  # a format an endpoint may not take


def test_data_url_is_base64_of_the_upload_bytes():
    jpeg = ImageInfo(image_bytes(16, 16), "jpg", 16, 16, "", "")
    assert data_url(jpeg, 64) == "data:image/jpeg;base64," + base64.b64encode(jpeg.data).decode()
