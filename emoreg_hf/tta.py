"""Test-time augmentation (TTA): each evaluated image is seen as several views, and the model's softmax is
averaged over them. `flip`: the image and its mirror image; `ten_crop`: torchvision's `TenCrop` at the
model's input size from the image enlarged by `TEN_CROP_ENLARGE` (its four corners and centre, and those of
its mirror image), the FER habit (Pramerdorfer & Kampel 2016; Khaireddin & Chen 2021). The recipes report it
under its own result keys beside the plain evaluation, never instead of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as tvF

TTA_MODES = ("none", "flip", "ten_crop")  # configs.TTA_MODES holds the same words (parsing stays torch-free)
VIEWS = {"flip": 2, "ten_crop": 10}
# The crops are the model's input size, cut from the image resized this much larger: 48 -> 54 px, close to
# the 42-of-48 crops of Pramerdorfer & Kampel (x1.14) while the crops keep the size the model trained on.
TEN_CROP_ENLARGE = 1.125


def check_mode(mode: str) -> None:
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {list(TTA_MODES)}, got {mode!r}")


def enlarged_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size ten-crop cuts its crops from, for crops of `size` (H, W)."""
    return tuple(math.ceil(s * TEN_CROP_ENLARGE) for s in size)


def views(pixel_values: torch.Tensor, mode: str, size: tuple[int, int]) -> Iterator[torch.Tensor]:
    """The views of a float batch `[B, C, h, w]`, each `[B, C, *size]`, one at a time (no view is copied
    before it is asked for). `ten_crop` expects the batch at `enlarged_size(size)` (it is resized there
    otherwise); `flip` at `size`."""
    check_mode(mode)
    size = tuple(int(s) for s in size)
    if mode == "none":
        yield _resized(pixel_values, size)
    elif mode == "flip":
        x = _resized(pixel_values, size)
        yield x
        yield tvF.horizontal_flip(x)
    else:
        x = _resized(pixel_values, enlarged_size(size))
        yield from tvF.five_crop(x, list(size))
        yield from tvF.five_crop(tvF.horizontal_flip(x), list(size))


def _resized(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def averaged_log_probs(
    logits_of: Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    mode: str,
    size: tuple[int, int],
    max_images: int,
) -> torch.Tensor:
    """log of the softmax averaged over the views, `[B, K]` float32: a logit whose softmax is the averaged
    probability, so accuracy, top-k and calibration read it as any logit. `logits_of` maps images to
    logits; each call gets at most `max(max_images, B)` images (views are batched together up to it), so
    memory stays that of a plain evaluation batch."""
    batch = pixel_values.shape[0]
    per_call = max(1, int(max_images) // max(1, batch))
    log_probs, group = [], []  # per view, [B, K]: small next to the images

    def run(group: list[torch.Tensor]) -> None:
        logits = logits_of(torch.cat(group)).float()  # one contiguous batch of views
        log_probs.extend(logits.log_softmax(-1).view(len(group), batch, -1).unbind(0))
        group.clear()

    for view in views(pixel_values, mode, size):
        group.append(view)
        if len(group) == per_call:
            run(group)
    if group:
        run(group)
    # log(mean_v p_v) in log space: exact where a probability underflows
    return torch.logsumexp(torch.stack(log_probs), 0) - math.log(len(log_probs))


def averaged_loss(log_probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the averaged prediction: hard labels `[B]` or soft targets `[B, K]`."""
    if labels.ndim > 1:
        return -(labels.float() * log_probs).sum(-1).mean()
    return F.nll_loss(log_probs, labels)
