"""Class imbalance: loss weights from the training split's class counts, and a class-balanced sampler.

Emotion data sets are imbalanced (FER-2013's `disgust` is 1.5 % of its faces). `--class_weighting balanced`
weights every cross-entropy term of the training loss (EmoReg's three: the blend and both responses) by
n / (K · n_c), the weights scikit-learn calls "balanced"; `--class_balanced_sampler` draws training images
with probability ∝ 1 / n_c of their class instead. With soft targets (FER+) n_c is the sum of the targets'
shares of class c, the weight multiplies each class's term of the soft cross-entropy, and the sampler reads a
row's top class. Both stages take both; the run record keeps the counts,
the weights and the sampler (`class_balance`), and the card says which was used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .configs import CLASS_WEIGHTINGS

logger = logging.getLogger(__name__)


def class_counts(train_split, num_classes: int, label_column: str = "label") -> np.ndarray:
    """Rows per class id of a map-style training split (the labels only are read, no image is decoded). With
    FER+ soft targets, the sum of the rows' distributions: how often each class is the target, in
    expectation (a face voted 0.6 happiness / 0.4 surprise counts 0.6 and 0.4)."""
    import datasets

    from .data.ferplus import DISTRIBUTION

    if isinstance(train_split, datasets.IterableDataset):
        raise ValueError(
            "--class_weighting balanced and --class_balanced_sampler need the training split's class counts, "
            "and a streamed source has none before it is read: drop `streaming: true` from the sources, or "
            "both options"
        )
    if DISTRIBUTION in train_split.column_names:
        soft = np.asarray(train_split.select_columns([DISTRIBUTION])[DISTRIBUTION], dtype=np.float64)
        return soft.reshape(-1, num_classes).sum(0).round(4)
    labels = np.asarray(train_split.select_columns([label_column])[label_column], dtype=np.int64)
    return np.bincount(labels, minlength=num_classes)


def balanced_weights(counts: np.ndarray) -> np.ndarray:
    """n / (K · n_c) per class; a class with no training row gets 0 (it is never a training target)."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros_like(counts)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


class ClassBalancedSampler(torch.utils.data.WeightedRandomSampler):
    """Each draw picks a class uniformly, then a row of it (with replacement); an epoch is as many draws as
    the split has rows. Seeded from the run's seed and the epoch (Trainer calls `set_epoch`), so a resumed
    run draws the same epochs as an uninterrupted one."""

    def __init__(self, labels: np.ndarray, counts: np.ndarray, seed: int):
        per_row = 1.0 / np.maximum(counts, 1)[labels]
        super().__init__(
            torch.as_tensor(per_row, dtype=torch.double), num_samples=len(labels), replacement=True
        )
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def class_balance(args, train_split, label_names: list[str]) -> dict[str, Any] | None:
    """What the run does about class imbalance (None when nothing): the training counts, the loss weights
    and the sampler, as the run record keeps them (`class_balance`) and the trainer uses them."""
    if args.class_weighting == "none" and not args.class_balanced_sampler:
        return None
    if (
        args.class_weighting == "balanced" and args.class_balanced_sampler
    ):  # the README's "use one of the two"
        logger.warning(
            "class balance: --class_weighting balanced and --class_balanced_sampler true together correct the "
            "imbalance twice (the sampler already draws every class equally often, and the loss weights then "
            "favour the rare classes again), pushing predictions towards the rarest class; use one of the two"
        )
    counts = class_counts(train_split, len(label_names))
    missing = [name for name, n in zip(label_names, counts, strict=True) if n == 0]
    if missing:
        logger.warning(
            "class balance: no training row for %s (loss weight 0, never drawn)", ", ".join(missing)
        )
    weights = balanced_weights(counts) if args.class_weighting == "balanced" else None
    balance = {
        "class_weighting": args.class_weighting,
        "sampler": "class_balanced" if args.class_balanced_sampler else "shuffled",
        "train_counts": dict(zip(label_names, counts.tolist(), strict=True)),
        "loss_weights": dict(zip(label_names, [round(float(w), 6) for w in weights], strict=True))
        if weights is not None
        else None,
    }
    logger.info(
        "class balance: weighting %s, sampler %s; training counts %s",
        balance["class_weighting"],
        balance["sampler"],
        balance["train_counts"],
    )
    return balance


def loss_weights(balance: dict[str, Any] | None) -> torch.Tensor | None:
    """The loss weights in class-id order (the order `train_counts` keeps), or None."""
    if not balance or not balance.get("loss_weights"):
        return None
    return torch.tensor(list(balance["loss_weights"].values()), dtype=torch.float32)


def balanced_sampler(balance: dict[str, Any] | None, train_split, seed: int) -> ClassBalancedSampler | None:
    """The class-balanced sampler over `train_split` (before its loader transform) when the run asked for one."""
    if not balance or balance["sampler"] != "class_balanced":
        return None
    labels = np.asarray(train_split.select_columns(["label"])["label"], dtype=np.int64)
    counts = np.asarray(list(balance["train_counts"].values()))
    return ClassBalancedSampler(labels, counts, seed)


__all__ = [
    "CLASS_WEIGHTINGS",
    "ClassBalancedSampler",
    "balanced_sampler",
    "balanced_weights",
    "class_balance",
    "class_counts",
    "loss_weights",
]
