"""Classification metrics as local `evaluate` modules, so evaluation never needs the Hub.

Each metric is a folder `<name>/<name>.py` next to this file, loadable with
`evaluate.load(metric_path(name))` under `HF_HUB_OFFLINE=1`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

METRICS_DIR = Path(__file__).resolve().parent
METRIC_NAMES = ("accuracy", "top5_accuracy", "macro_f1", "balanced_accuracy", "expected_calibration_error")
ECE_BINS = 15
TOP_K = 5

__all__ = ["METRIC_NAMES", "compute_classification_metrics", "load_metric", "metric_path"]


def metric_path(name: str) -> str:
    """Local path of a shipped metric module, for `evaluate.load`."""
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}; shipped metrics are {', '.join(METRIC_NAMES)}.")
    return str(METRICS_DIR / name)


@functools.cache
def load_metric(name: str):
    """Load a shipped metric once per process; in memory, so parallel ranks never share a cache file."""
    import evaluate

    return evaluate.load(metric_path(name), keep_in_memory=True)


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
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)

    k = min(TOP_K, logits.shape[1])
    results = {
        **load_metric("accuracy").compute(predictions=predictions, references=labels),
        **load_metric("top5_accuracy").compute(predictions=logits, references=labels, k=k),
        **load_metric("macro_f1").compute(predictions=predictions, references=labels),
        **load_metric("balanced_accuracy").compute(predictions=predictions, references=labels),
        **load_metric("expected_calibration_error").compute(
            predictions=probs, references=labels, n_bins=ECE_BINS
        ),
    }
    return {key: float(value) for key, value in results.items()}
