"""Classification metrics as one local `evaluate` module, so evaluation never needs the Hub.

The module lives in `classification/classification.py` next to this file and loads with
`evaluate.load(metric_path())` under `HF_HUB_OFFLINE=1`; `compute_classification_metrics` feeds it from logits.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent
METRIC_MODULE = "classification"
#: the keys `compute_classification_metrics` returns, in order
METRIC_NAMES = ("accuracy", "top5_accuracy", "macro_f1", "balanced_accuracy", "ece")
#: the mechanism figures `evaluation.affect_reliance` adds to EmoReg's reliance_permuted / reliance_mean
#: (accuracy drops with h_A or e(x) alone changed; then the accuracy of z_N and of z_E alone)
MECHANISM_DROPS = (
    "reliance_permuted_affect",
    "reliance_permuted_emotion",
    "reliance_mean_affect",
    "reliance_mean_emotion",
)
MECHANISM_ACCURACIES = ("accuracy_non_emotional", "accuracy_emotional")
MECHANISM_NAMES = MECHANISM_DROPS + MECHANISM_ACCURACIES
ECE_BINS = 15
TOP_K = 5

__all__ = ["MECHANISM_NAMES", "METRIC_NAMES", "compute_classification_metrics", "load_metric", "metric_path"]


def metric_path() -> str:
    """Local path of the shipped metric module, for `evaluate.load`."""
    return str(METRICS_DIR / METRIC_MODULE)


@functools.cache
def load_metric():
    """Load the shipped module once per process; in memory, so parallel ranks never share a cache file."""
    import evaluate

    return evaluate.load(metric_path(), keep_in_memory=True)


def compute_classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Top-1/top-5 accuracy, macro-F1, balanced accuracy and 15-bin ECE from raw logits.

    `logits` is (N, C) (a tuple of arrays is accepted and its first item used, as the Trainer hands over
    every model output); `labels` is (N,). Keys: accuracy, top5_accuracy, macro_f1, balanced_accuracy, ece.
    """
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"Expected logits (N, C) and labels (N,), got {logits.shape} and {labels.shape}.")
    predictions = logits.argmax(axis=1)
    top = logits[np.arange(len(labels)), predictions]
    confidences = 1.0 / np.exp(logits - top[:, None]).sum(axis=1)  # softmax of the top class
    reference_scores = logits[np.arange(len(labels)), labels]
    reference_ranks = (logits > reference_scores[:, None]).sum(axis=1)
    results = load_metric().compute(
        predictions=predictions,
        references=labels,
        confidences=confidences,
        reference_ranks=reference_ranks,
        k=min(TOP_K, logits.shape[1]),
        n_bins=ECE_BINS,
    )
    return {key: float(results[key]) for key in METRIC_NAMES}
