"""Recipe section `annotate`: which vision roles run, with which models and options.

Every field has a default so that a recipe can change one option of a preset's model
(`--set annotate.captioner.max_batch_size=8`) without restating the rest; the preset
supplies the remaining fields (see `llavaforge.config.presets`).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from llavaforge.config.base import StrictModel
from llavaforge.config.models import ModelConfig
from llavaforge.config.vlm import DenseCaptionerConfig

ROLES = ("captioner", "detector", "tagger", "ocr", "dense_captioner")


class CaptionerConfig(ModelConfig):
    kind: Literal["blip", "git", "vision-encoder-decoder", "florence2"] = Field(
        default="blip", description="Model family: blip, git, vision-encoder-decoder or florence2.")
    prompt: Optional[str] = Field(
        default=None,
        description="Text the caption starts from (BLIP/GIT), or the task token (Florence-2, "
                    "e.g. `<MORE_DETAILED_CAPTION>`); none for plain captioning.")
    max_new_tokens: int = Field(default=30, ge=1, le=512, description="Longest caption, in tokens.")
    num_captions: int = Field(
        default=1, ge=1, le=8, description="Captions per image (the best beams of a beam search).")
    fused_attention: bool = Field(
        default=True,
        description="BLIP: run the image encoder's attention through torch's scaled_dot_product_attention "
                    "(one fused kernel on GPU) instead of transformers' eager matmul-softmax-matmul; the same "
                    "attention, rounded differently.")
    compile_vision: bool = Field(
        default=False,
        description="torch.compile the image encoder (static shapes): fuses its attention on GPU. The first batch "
                    "of each batch size pays the compile (tens of seconds); keep min_batch_size = max_batch_size.")
    static_decode: Optional[bool] = Field(
        default=None,
        description="Caption with llavaforge's own greedy loop over static caches (its one-token step compiled "
                    "with CUDA graphs on cuda) instead of generate: the same captions, fewer Python launches per "
                    "token. BLIP-style models, no prompt, one caption. None = on with cuda where it applies.")

    @model_validator(mode="after")
    def _prompt_supported(self):
        if self.prompt and self.kind == "vision-encoder-decoder":
            raise ValueError("prompt is not supported by kind vision-encoder-decoder")
        if self.static_decode and (self.prompt or self.num_captions > 1 or self.kind != "blip"):
            raise ValueError("static_decode needs kind blip, no prompt and num_captions 1 (it decodes greedily)")
        return self

    @property
    def uses_static_decode(self) -> bool:
        if self.static_decode is not None:
            return self.static_decode
        return self.device == "cuda" and self.kind == "blip" and not self.prompt and self.num_captions == 1


class DetectorConfig(ModelConfig):
    kind: Literal["detr", "rt-detr", "owlv2", "owlvit"] = Field(
        default="rt-detr",
        description="Model family: detr / rt-detr (closed vocabulary) or owlv2 / owlvit (open vocabulary, uses `labels`).")
    score_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Objects scoring below this are dropped.")
    max_objects: int = Field(default=20, ge=1, description="Most objects kept per image (highest scores first).")
    labels: list[str] = Field(
        default_factory=list,
        description="Labels an open-vocabulary detector looks for (default: the 80 COCO classes).")


class TaggerConfig(ModelConfig):
    kind: Literal["classification", "efficientnet-lite", "clip", "siglip"] = Field(
        default="clip",
        description="Model family: classification (any image classifier), efficientnet-lite (offline "
                    "package), clip / siglip (zero-shot over `vocabulary`).")
    top_k: int = Field(default=5, ge=1, description="Most tags kept per image.")
    score_threshold: float = Field(default=0.05, ge=0.0, le=1.0, description="Tags scoring below this are dropped.")
    vocabulary: list[str] = Field(
        default_factory=list,
        description="Tags a zero-shot tagger chooses from (default: COCO + common objects and scenes).")
    prompt_template: str = Field(
        default="a photo of a {}.", description="Text each zero-shot tag is embedded as; `{}` is the tag.")

    @model_validator(mode="after")
    def _template_has_slot(self):
        if "{}" not in self.prompt_template:
            raise ValueError("prompt_template must contain `{}`")
        return self


class OcrConfig(ModelConfig):
    kind: Literal["rapidocr"] = Field(default="rapidocr", description="OCR engine: rapidocr (ONNX).")
    score_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="Text lines scoring below this are dropped.")
    max_lines: int = Field(default=50, ge=1, description="Most text lines kept per image.")


class AnnotateConfig(StrictModel):
    """No role runs unless the recipe or a preset names a model for it."""

    captioner: Optional[CaptionerConfig] = Field(default=None, description="Image captioning model.")
    detector: Optional[DetectorConfig] = Field(default=None, description="Object detection model.")
    tagger: Optional[TaggerConfig] = Field(default=None, description="Image tagging model.")
    ocr: Optional[OcrConfig] = Field(default=None, description="Text-in-image reader.")
    dense_captioner: Optional[DenseCaptionerConfig] = Field(
        default=None, description="Vision-language model writing a detailed description of each image (a caption).")

    def active_roles(self) -> list[tuple[str, ModelConfig]]:
        """(role, config) of the roles that run, in flow order."""
        roles = [(role, getattr(self, role)) for role in ROLES]
        return [(role, config) for role, config in roles if config is not None and config.enabled]
