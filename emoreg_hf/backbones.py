"""Pooled features and own logits for any `AutoModelForImageClassification` family.

EmoReg needs the representation each pathway's classifier sees (`h_T`, `h_A`) and the classifier itself
(`W_N` for the task pathway, the emotion head for the affective one). Transformers' image classifiers
share one shape (a base model, a pooled vector, a `classifier`); timm models expose the same split
through `forward_features` / `forward_head(pre_logits=True)`. This file travels as remote code.
"""

from __future__ import annotations

import torch
from torch import nn

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
