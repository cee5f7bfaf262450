"""`emoreg-image-classification`: the image-classification pipeline plus what EmoReg felt and the weight ρ it gave
its emotional response.

    >>> from transformers import pipeline
    >>> classify = pipeline("emoreg-image-classification", model="org/emoreg-model", trust_remote_code=True)
    >>> classify("cat.jpg")
    {'labels': [{'label': 'cat', 'score': 0.91}, ...],     # the regulated prediction, as image-classification
     'regulation': 0.42,                                     # rho: weight of the emotional response's logits
     'emotions': [{'label': 'happiness', 'score': 0.6}, ...],  # e(x), with the emotion taxonomy's names
     'non_emotional': {'label': 'cat', 'score': 0.88},      # top class of z_N (task pathway alone)
     'emotional': {'label': 'cat', 'score': 0.95}}          # top class of z_E (emotion-influenced)

Every EmoReg checkpoint declares this class in its config's `custom_pipelines` and carries this file next to
`modeling_emoreg.py`, so the pipeline works in a process that never installed `emoreg_hf`. For plain image
classifiers (no affective pathway) it gives `labels` and sets the four EmoReg fields to None.

This file travels to the Hub as remote code: it imports only numpy, torch, transformers and PIL.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
from typing import Any

import numpy as np
import torch
from transformers import ImageClassificationPipeline, Pipeline
from transformers.utils import is_vision_available, requires_backends

# transformers' own pattern: the remote-code loader does not demand PIL for imports under this test
if is_vision_available():
    from PIL import Image, ImageOps, UnidentifiedImageError

TASK = "emoreg-image-classification"
EMOREG_FIELDS = ("regulation", "emotions", "non_emotional", "emotional")
_OUTPUT_KEYS = ("logits", "regulation", "emotion_probs", "logits_non_emotional", "logits_emotional")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


class EmoRegImageClassificationPipeline(ImageClassificationPipeline):
    """Image classification with an EmoReg model: per image, a dict with

    - `labels`: the top-k task classes of the regulated logits `z`, as the `image-classification` pipeline
      gives them (list of `{"label", "score"}`);
    - `regulation`: ρ in [0, 1], the weight of the emotional response's logits in `z = (1 − ρ) z_N + ρ z_E`
      (not how much emotion was used: z_E also reads the task features; see the card's reliance figures);
    - `emotions`: the top-k of the emotion distribution e(x), named by `config.emotion_labels`;
    - `non_emotional` / `emotional`: the top class (`{"label", "score"}`) of `z_N` and of `z_E`.

    The four EmoReg fields are None for a model without an affective pathway (a baseline or transfer
    checkpoint). Inputs are what `image-classification` takes: a path, an http(s) URL, base64 data, a PIL
    image of any mode (grayscale, RGBA, palette, 16-bit, ...) or a list of these; `batch_size` batches.

    Call parameters: `top_k` (task classes, default 5), `top_k_emotions` (default: `top_k`),
    `function_to_apply` (`"softmax"`, `"sigmoid"` or `"none"`, as in `image-classification`), `timeout`
    (seconds, for URLs).
    """

    def __init__(self, *args, **kwargs):
        # Not ImageClassificationPipeline.__init__: its model check logs an error for remote-code classes.
        # Ours raises a clear error for a model that really is not an image classifier.
        Pipeline.__init__(self, *args, **kwargs)
        requires_backends(self, "vision")
        _check_is_image_classifier(self.model)
        _restore_custom_pipelines(self.model.config)

    def __call__(self, inputs, **kwargs):
        """As `image-classification`; an empty list of images gives an empty list of results."""
        if isinstance(inputs, (list, tuple)) and len(inputs) == 0:
            return []
        return super().__call__(inputs, **kwargs)

    @property
    def is_emoreg(self) -> bool:
        """True when the model has an affective pathway (regulation, emotions and the two responses)."""
        return _emotion_names(self.model.config) is not None

    def _sanitize_parameters(self, top_k=None, function_to_apply=None, timeout=None, top_k_emotions=None):
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(
            top_k=top_k, function_to_apply=function_to_apply, timeout=timeout
        )
        if top_k_emotions is not None:
            postprocess_params["top_k_emotions"] = top_k_emotions
        return preprocess_params, forward_params, postprocess_params

    def preprocess(self, image, timeout=None):
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            image = load_rgb_image(image, timeout=timeout)
        return self.image_processor(images=image, return_tensors="pt").to(self.dtype)

    def _forward(self, model_inputs):
        outputs = self.model(**model_inputs)
        return {key: outputs[key] for key in _OUTPUT_KEYS if outputs.get(key) is not None}

    def postprocess(self, model_outputs, function_to_apply=None, top_k=5, top_k_emotions=None):
        labels = super().postprocess(model_outputs, function_to_apply=function_to_apply, top_k=top_k)
        result: dict[str, Any] = {"labels": labels, **dict.fromkeys(EMOREG_FIELDS)}
        names = _emotion_names(self.model.config)
        if names is None or model_outputs.get("emotion_probs") is None:
            return result

        rho = model_outputs.get("regulation")
        if rho is not None:
            result["regulation"] = float(rho.reshape(-1)[0].float())
        probs = model_outputs["emotion_probs"][0].float().numpy()
        k = top_k if top_k_emotions is None else top_k_emotions
        order = np.argsort(-probs, kind="stable")[: max(1, min(int(k), len(names)))]
        result["emotions"] = [{"label": names[i], "score": float(probs[i])} for i in order]
        for field, key in (("non_emotional", "logits_non_emotional"), ("emotional", "logits_emotional")):
            if model_outputs.get(key) is not None:
                top = super().postprocess({"logits": model_outputs[key]}, function_to_apply, top_k=1)
                result[field] = top[0]
        return result


# -- images --------------------------------------------------------------------------------------------


def load_rgb_image(image, timeout: float | None = None) -> Image.Image:
    """A path, an http(s) URL, base64 / `data:image/...` text, bytes or a PIL image, as an upright RGB image.

    16-bit and 32-bit images are rescaled to 8 bits (not clipped), transparency is composited on white,
    grayscale / palette / CMYK are converted. Anything unreadable raises a `ValueError` that names the input.
    """
    try:
        opened = _open_image(image, timeout)
        opened = ImageOps.exif_transpose(opened)
        opened.load()
        return to_rgb(opened)
    except ValueError:
        raise
    except Exception as error:  # PIL raises many kinds (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ValueError(f"cannot read an image from {_describe(image)}: {error}") from error


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert a PIL image of any mode to 8-bit RGB without losing the picture to clipping."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if mode in _SIXTEEN_BIT_MODES:
            array = array / 257.0
        elif mode == "F" and array.size and np.nanmax(array) <= 1.0 and np.nanmin(array) >= 0.0:
            array = array * 255.0  # float images in [0, 1]
        elif array.size and (np.nanmax(array) > 255 or np.nanmin(array) < 0):
            low, high = np.nanmin(array), np.nanmax(array)
            array = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        gray = np.nan_to_num(array).clip(0, 255).round().astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _open_image(image, timeout):
    if is_vision_available() and isinstance(image, Image.Image):
        return image
    if isinstance(image, (bytes, bytearray)):
        return Image.open(io.BytesIO(image))
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if not isinstance(image, str):
        raise ValueError(
            f"cannot read an image from {_describe(image)}: expected a path, an http(s) URL, base64 image data "
            "or a PIL image"
        )
    if image.startswith(("http://", "https://")):
        return Image.open(io.BytesIO(_download(image, timeout)))
    if os.path.isfile(image):
        return Image.open(image)
    if os.path.isdir(image):
        raise ValueError(
            f"cannot read an image from {_describe(image)}: it is a folder, not an image; to classify the "
            "images in it, pass a list of their paths (e.g. sorted(glob.glob('folder/*.jpg')))"
        )
    data = image.split(",", 1)[1] if image.startswith("data:image/") else image
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    reason = "no such file" if not image.startswith("data:") else "invalid base64 image data"
    if len(raw) < 8:
        raise ValueError(f"cannot read an image from {_describe(image)}: {reason}")
    try:  # text that happens to decode as base64 (a path like 'photos/cat1') is not an image either
        return Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise ValueError(f"cannot read an image from {_describe(image)}: {reason}") from None


def _download(url: str, timeout):
    try:
        import httpx  # a dependency of huggingface_hub, hence of transformers
    except ImportError as error:  # pragma: no cover
        raise ValueError(f"cannot read an image from {url!r}: httpx is needed for URLs") from error
    response = httpx.get(url, timeout=timeout, follow_redirects=True)
    response.raise_for_status()
    return response.content


def _describe(image) -> str:
    if isinstance(image, str):
        return repr(image if len(image) <= 120 else image[:100] + "...")
    if isinstance(image, os.PathLike):
        return repr(os.fspath(image))
    if is_vision_available() and isinstance(image, Image.Image):
        return f"a PIL image (mode {image.mode}, size {image.size[0]}x{image.size[1]})"
    if isinstance(image, (bytes, bytearray)):
        return f"{len(image)} bytes"
    return f"an object of type {type(image).__name__}"


# -- model ---------------------------------------------------------------------------------------------


def _emotion_names(config) -> list[str] | None:
    """The emotion taxonomy (order of `emotion_probs`), or None for a model without an affective pathway."""
    if getattr(config, "model_type", None) != "emoreg":
        return None
    names = getattr(config, "emotion_labels", None)
    if names:
        return list(names)
    id2label = getattr(getattr(config, "affect_config", None), "id2label", None) or {}
    return [id2label[i] for i in range(len(id2label))] or None


def _check_is_image_classifier(model) -> None:
    """Raise a clear error for a model that is not an image classifier (instead of a failure deep in torch)."""
    config = model.config
    name = type(model).__name__
    architectures = getattr(config, "architectures", None) or []
    head_less = architectures and not any("ImageClassification" in a for a in architectures)
    if "ImageClassification" not in name or head_less or not getattr(config, "id2label", None):
        found = ", ".join(architectures) or name
        raise ValueError(
            f"{TASK} needs an image classifier (an EmoReg checkpoint or any AutoModelForImageClassification "
            f"checkpoint with class names in id2label); this checkpoint is {found} "
            f"(model_type={getattr(config, 'model_type', None)!r})"
        )


def _restore_custom_pipelines(config) -> None:
    """`pipeline()` turns the class names of `custom_pipelines[task]["pt"]` into classes in the loaded config;
    put the names back so that the model can still be saved as JSON."""
    custom = getattr(config, "custom_pipelines", None)
    if not isinstance(custom, dict):
        return
    for info in custom.values():
        if isinstance(info, dict) and isinstance(info.get("pt"), (list, tuple)):
            info["pt"] = [c if isinstance(c, str) else c.__name__ for c in info["pt"]]


__all__ = ["TASK", "EmoRegImageClassificationPipeline", "load_rgb_image", "to_rgb"]
