"""Images as a vision-language model receives them: no side longer than `max_image_side`.

Image tokens grow with the pixel count, so every backend downscales first: the hf backend
the decoded image (a PIL image, or a CHW tensor already on the GPU), the vLLM and OpenAI
backends the bytes they send. Bytes that already fit go out as they are.
"""

from __future__ import annotations

import base64
import io

import torch
import torch.nn.functional as F
from PIL import Image

from llavaforge.models.handler import decode_rgb
from llavaforge.schemas.record import ImageInfo

UPLOAD_MIME = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
REENCODE_QUALITY = 90


def fitted_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down to fit `max_side`, aspect kept; unchanged when it fits."""
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_pil(image: Image.Image, max_side: int) -> Image.Image:
    size = fitted_size(*image.size, max_side)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def fit_tensor(image: torch.Tensor, max_side: int) -> torch.Tensor:
    """A CHW uint8 image tensor scaled down on its own device (antialiased, as Pillow does)."""
    height, width = image.shape[-2:]
    new_width, new_height = fitted_size(width, height, max_side)
    if (new_width, new_height) == (width, height):
        return image
    resized = F.interpolate(image[None].float(), size=(new_height, new_width), mode="bicubic", antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def upload_bytes(image: ImageInfo, max_side: int) -> tuple[str, bytes]:
    """(MIME type, bytes) to send: the stored bytes when their format travels and they fit,
    else the image downscaled and re-encoded as JPEG."""
    mime = UPLOAD_MIME.get(image.format.lower())
    if mime and max(image.width, image.height) <= max_side:
        return mime, image.data
    out = io.BytesIO()
    fit_pil(decode_rgb(image.data), max_side).save(out, format="JPEG", quality=REENCODE_QUALITY)
    return "image/jpeg", out.getvalue()


def data_url(image: ImageInfo, max_side: int) -> str:
    mime, data = upload_bytes(image, max_side)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
