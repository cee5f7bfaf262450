"""The figures a run reports: metrics from its predictions (classification, regulation statistics, reliance
on the affective pathway), what a model that learned nothing would score, and the rows it used."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import EvalPrediction


def scalars(metrics: dict) -> dict:
    """The metrics a console line and a tracker's scalar plot show: per-class ρ (`rho_class/<class>`) and
    emotion shares (`emotion_share/<emotion>`) stay in the results, the card and the histograms."""
    return {k: v for k, v in metrics.items() if "/" not in k}


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def keep_logits_for_metrics(outputs, labels):
    """Keep only what the metrics read from each evaluation batch: the regulated logits and, for EmoReg, ρ,
    e(x) and the pooled features h_T, h_A (from which `affect_reliance` recomputes the output). EmoReg's
    outputs arrive as (logits, regulation, emotion_probs, logits_non_emotional, logits_emotional,
    task_features, affect_features)."""
    if isinstance(outputs, tuple):
        return tuple(t.float() for t in outputs[:3] + outputs[5:7])
    return outputs.float()


RELIANCE_PERMUTATIONS = 5  # averaged: one permutation of 10,000 images moves the accuracy by ~0.1 pp


@torch.no_grad()
def affect_reliance(
    model,
    task_features: np.ndarray,
    affect_features: np.ndarray,
    emotion_probs: np.ndarray,
    labels: np.ndarray,
    *,
    permutations: int = RELIANCE_PERMUTATIONS,
    seed: int = 0,
) -> dict[str, float]:
    """How much EmoReg's answers rely on the affective pathway: the accuracy drop when its outputs are
    permuted across the evaluated images (each image gets another image's feelings) and when they are
    replaced by their mean over the split (no image-specific feeling at all). ρ cannot say this: it weights
    the emotional response's logits, and that response also reads h_T. Drops are fractions, like accuracy,
    relative to the accuracy recomputed from the same features.

    `reliance_permuted` / `reliance_mean` change h_A and e(x) together; `*_affect` changes h_A alone (e(x)
    kept) and `*_emotion` e(x) alone (h_A kept). e(x) is changed everywhere `model.respond` reads it: in the
    emotional response and, in adaptive regulation, in ρ; h_A enters the emotional response only. The three
    permuted settings share each permutation (one generator), so their figures are comparable.
    `accuracy_non_emotional` / `accuracy_emotional`: the accuracy of z_N and z_E alone, unregulated."""
    parameter = next(model.parameters())

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=parameter.dtype, device=parameter.device)

    h_task, h_affect, emotion = tensor(task_features), tensor(affect_features), tensor(emotion_probs)
    targets = torch.as_tensor(np.asarray(labels), device=parameter.device)
    if targets.ndim > 1:
        targets = targets.argmax(-1)

    def correct(logits: torch.Tensor) -> float:
        return float((logits.argmax(-1) == targets).float().mean())

    def accuracy(affect: torch.Tensor, feeling: torch.Tensor) -> float:
        return correct(model.respond(h_task, affect, feeling).logits)

    responses = model.respond(h_task, h_affect, emotion)
    reference = correct(responses.logits)
    generator = torch.Generator().manual_seed(seed)
    permuted: dict[str, list[float]] = {"": [], "_affect": [], "_emotion": []}
    for _ in range(permutations):
        order = torch.randperm(len(targets), generator=generator).to(parameter.device)
        permuted[""].append(accuracy(h_affect[order], emotion[order]))
        permuted["_affect"].append(accuracy(h_affect[order], emotion))
        permuted["_emotion"].append(accuracy(h_affect, emotion[order]))
    mean_affect = h_affect.mean(0, keepdim=True).expand_as(h_affect)
    mean_emotion = emotion.mean(0, keepdim=True).expand_as(emotion)
    return {
        "reliance_permuted": reference - float(np.mean(permuted[""])),
        "reliance_mean": reference - accuracy(mean_affect, mean_emotion),
        "reliance_permuted_affect": reference - float(np.mean(permuted["_affect"])),
        "reliance_permuted_emotion": reference - float(np.mean(permuted["_emotion"])),
        "reliance_mean_affect": reference - accuracy(mean_affect, emotion),
        "reliance_mean_emotion": reference - accuracy(h_affect, mean_emotion),
        "accuracy_non_emotional": correct(responses.logits_non_emotional),
        "accuracy_emotional": correct(responses.logits_emotional),
    }


def regulation_statistics(
    regulation: np.ndarray,
    emotion_probs: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    emotion_names: Sequence[str],
) -> dict[str, float]:
    """Mean/std of ρ, mean emotion entropy, ρ per target class, and each emotion's share of e(x)."""
    probs = torch.from_numpy(np.asarray(emotion_probs, dtype=np.float64))
    stats = {
        "rho_mean": float(np.mean(regulation)),
        "rho_std": float(np.std(regulation)),
        "emotion_entropy": float(_entropy(probs).mean()),
    }
    for index, name in enumerate(label_names):
        members = labels == index
        if members.any():
            stats[f"rho_class/{name}"] = float(regulation[members].mean())
    shares = np.asarray(emotion_probs).mean(axis=0)
    for name, share in zip(emotion_names, shares):
        stats[f"emotion_share/{name}"] = float(share)
    return stats


def build_compute_metrics(
    label_names: Sequence[str], emotion_names: Sequence[str] | None = None, model=None
) -> Callable[[EvalPrediction], dict]:
    """`compute_metrics` for Trainer: classification metrics, plus for EmoReg the regulation statistics and,
    given the `model`, its reliance on the affective pathway (`affect_reliance`)."""
    from .metrics import compute_classification_metrics

    def compute_metrics(prediction: EvalPrediction) -> dict:
        outputs, labels = prediction.predictions, np.asarray(prediction.label_ids)
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        metrics = compute_classification_metrics(np.asarray(logits), labels)
        if isinstance(outputs, tuple) and len(outputs) >= 3 and emotion_names:
            metrics.update(regulation_statistics(outputs[1], outputs[2], labels, label_names, emotion_names))
        if isinstance(outputs, tuple) and len(outputs) >= 5 and model is not None:
            metrics.update(affect_reliance(model, outputs[3], outputs[4], outputs[2], labels))
        return metrics

    return compute_metrics


def stage1_label_statistics(data_report: dict) -> dict[str, float]:
    """What stage 1's labels were, for its results: with k-means labels, how strongly the clusters go with
    the emotions they replaced on the training faces (Cramér's V, mutual information in nats, and that
    information as a share of the emotions' entropy): near 0 means a non-emotion control."""
    clusters = data_report.get("kmeans_labels")
    if not clusters:
        return {}
    train = clusters["train"]
    return {
        f"kmeans_emotion_{key}": train[key]
        for key in ("cramers_v", "mutual_information", "information_share")
    }


def label_baselines(train_split, split, predictions: np.ndarray, prefix: str) -> dict[str, float]:
    """How a classifier that learned nothing would score: `majority_accuracy` (always answering the class
    most frequent in training), and the share of the predictions that fall on its most predicted class
    (`modal_prediction_share`). A stage 1 at the majority rate is a degenerate control (`stats.degenerate`)."""
    from .data.splits import column_values

    if not hasattr(train_split, "__len__") or not hasattr(split, "__len__") or len(split) == 0:
        return {}
    majority = int(np.bincount(column_values(train_split, "label")).argmax())
    labels = column_values(split, "label")
    predicted = np.bincount(np.asarray(predictions).astype(int))
    return {
        f"{prefix}_majority_accuracy": float(np.mean(labels == majority)),
        f"{prefix}_modal_prediction_share": float(predicted.max() / predicted.sum()),
    }


def rows_per_source(splits, data_report: dict) -> dict[str, dict[str, int]]:
    """Rows of each affective source per split actually used (after caps), from the `source` column;
    a streamed split, which cannot be counted, falls back to the loader's report."""
    from .data.splits import count_labels

    used: dict[str, dict[str, int]] = {name: {} for name in data_report["sources"]}
    for split_name, split in splits.items():
        counts = count_labels(split, "source")
        for name, stats in data_report["sources"].items():
            n = counts.get(name, 0) if counts is not None else stats.get(split_name)
            if n is not None:
                used[name][split_name] = int(n)
    return used


def rows_per_split(splits) -> dict[str, int]:
    """Rows of each split a run used; a streamed training split: the rows it trained on, counted as it
    streamed (`data.streaming.StreamedTrainSplit.counted`, once training has tallied them)."""
    return {
        name: len(split)
        if hasattr(split, "__len__")
        else sum(c["rows"] for c in (split.counted or {}).values())
        for name, split in splits.items()
    }
