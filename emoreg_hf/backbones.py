"""EmoReg's pathways, for any `AutoModelForImageClassification` family: built from a config, the input
geometry of a checkpoint's image processor (and the task input converted to the affective pathway's), their
pooled features and own logits, and the layer classes FSDP may shard them by.

EmoReg needs the representation each pathway's classifier sees (`h_T`, `h_A`) and the classifier itself
(`W_N` for the task pathway, the emotion head for the affective one). Transformers' image classifiers
share one shape (a base model, a pooled vector, a `classifier`); timm models expose the same split
through `forward_features` / `forward_head(pre_logits=True)`. This file travels as remote code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoImageProcessor, AutoModelForImageClassification, PreTrainedModel

from .configuration_emoreg import IMAGENET_MEAN, IMAGENET_STD, LUMA_WEIGHTS
from .configuration_small_resnet import SmallResNetConfig
from .modeling_small_resnet import SmallResNetForImageClassification

# Families whose classifier reads the first token of `last_hidden_state` (no pooler in the classifier).
_CLS_TOKEN_FAMILIES = {"vit", "deit", "vit_msn", "vit_hybrid", "dinat", "ijepa"}


def _is_timm(model: nn.Module) -> bool:
    return getattr(model.config, "model_type", None) == "timm_wrapper"


def _classifier(model: nn.Module) -> nn.Module:
    if _is_timm(model):
        return model.timm_model.get_classifier()
    head = getattr(model, "classifier", None)
    if head is None:
        raise NotImplementedError(
            f"{type(model).__name__} (model_type={model.config.model_type!r}) has no `classifier`; "
            "EmoReg supports AutoModelForImageClassification families with a pooled classifier "
            "(ViT, DeiT, ResNet, ConvNeXt, Swin, timm models, ...)"
        )
    return head


def feature_dim(model: nn.Module) -> int:
    """Width of the pooled features the model's own classifier reads."""
    if _is_timm(model):
        tm = model.timm_model
        return int(getattr(tm, "head_hidden_size", None) or tm.num_features)
    for module in _classifier(model).modules():
        if isinstance(module, nn.Linear):
            return module.in_features
    raise NotImplementedError(
        f"cannot find the input width of {type(model).__name__}'s classifier; give the model num_labels > 0"
    )


def pooled_features(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The `[batch, feature_dim]` vector that the model's classifier maps to logits."""
    if _is_timm(model):
        tm = model.timm_model
        return tm.forward_head(tm.forward_features(pixel_values), pre_logits=True)
    base = getattr(model, model.base_model_prefix)
    outputs = base(pixel_values)
    if model.config.model_type in _CLS_TOKEN_FAMILIES or getattr(outputs, "pooler_output", None) is None:
        features = outputs.last_hidden_state[:, 0]
    else:
        features = outputs.pooler_output
    return features.flatten(1)


def classify(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Apply the model's own classifier to `pooled_features`, giving the model's own logits."""
    return _classifier(model)(features)


def _image_classifier_from_config(config) -> PreTrainedModel:
    """`AutoModelForImageClassification.from_config`, also for families mapped to several classes (DeiT).
    The small-image ResNet is built by its own sibling file directly: as remote code, the config may be
    another copy of its class (loaded through configuration_emoreg.py), which the Auto mapping keys apart."""
    if config.model_type == SmallResNetConfig.model_type:
        return SmallResNetForImageClassification(config)
    if not config.architectures:
        model_class = AutoModelForImageClassification._model_mapping[type(config)]
        if isinstance(model_class, (list, tuple)):
            config.architectures = [model_class[0].__name__]
    return AutoModelForImageClassification.from_config(config)


def _processor_geometry(name_or_path: str) -> dict:
    """`{"size": [h, w], "mean": [...], "std": [...]}` of the input a checkpoint's image processor makes."""
    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError):
        return {}
    data_config = getattr(processor, "data_config", None)  # timm processors
    if data_config:
        return {
            "size": list(data_config["input_size"][-2:]),
            "mean": list(data_config["mean"]),
            "std": list(data_config["std"]),
        }
    size = getattr(processor, "size", None) or {}
    crop = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    if crop:
        hw = [crop["height"], crop["width"]]
    elif "height" in size:
        hw = [size["height"], size["width"]]
    elif "shortest_edge" in size:
        hw = [size["shortest_edge"]] * 2
    else:
        hw = None
    geometry = {"mean": list(processor.image_mean), "std": list(processor.image_std)}
    if hw is not None:
        geometry["size"] = [int(v) for v in hw]
    return geometry


def _affect_pixels(cfg, pixel_values: torch.Tensor) -> torch.Tensor:
    """Convert task-normalised pixels to the affective pathway's colour mode, size and normalisation."""
    if not cfg.converts_affect_input:
        return pixel_values

    def stats(prefix: str, key: str, default: list[float]) -> torch.Tensor:
        value = getattr(cfg, f"{prefix}_image_{key}") or default
        return torch.tensor(value, dtype=pixel_values.dtype, device=pixel_values.device).view(1, 3, 1, 1)

    rgb = pixel_values * stats("task", "std", IMAGENET_STD) + stats("task", "mean", IMAGENET_MEAN)
    if cfg.affect_grayscale:  # a pathway trained on grayscale faces is given luminance, as PIL makes it
        luma = torch.tensor(LUMA_WEIGHTS, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
        rgb = (rgb * luma).sum(1, keepdim=True).expand(-1, 3, -1, -1)
    size = tuple(cfg.affect_image_size or pixel_values.shape[-2:])
    if tuple(rgb.shape[-2:]) != size:
        rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False, antialias=True)
    return (rgb - stats("affect", "mean", IMAGENET_MEAN)) / stats("affect", "std", IMAGENET_STD)


def present_no_split_modules(model: nn.Module) -> set[str]:
    """The model's `_no_split_modules` (its pathways' layer classes, gathered by `post_init`) that it
    contains: FSDP's transformer-based wrapping shards one unit per such layer, and refuses a name it cannot
    find (transformers' timm wrapper names `TimmWrapperModel`, which its classifier does not contain)."""
    present = {type(module).__name__ for module in model.modules()}
    return {name for name in (model._no_split_modules or ()) if name in present}
