"""The shipped evaluate module loads offline and agrees with scikit-learn / hand-computed values."""

import os
from importlib import resources

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, top_k_accuracy_score

from emoreg_hf.metrics import compute_classification_metrics, load_metric, metric_path

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(size=(300, 10)) * 2
LABELS = np.where(RNG.random(300) < 0.5, LOGITS.argmax(1), RNG.integers(0, 10, 300))


def reference_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Guo et al. (2017), the loop everyone copies: bins (lo, hi] over the top-1 confidence."""
    confidence, correct = probs.max(1), probs.argmax(1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_the_metric_ships_as_one_loadable_local_module():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    shipped = resources.files("emoreg_hf.metrics")
    assert shipped.joinpath("classification", "classification.py").is_file()
    module = evaluate.load(metric_path(), keep_in_memory=True)
    assert isinstance(module, evaluate.Metric) and "calibration" in module.description
    assert load_metric() is load_metric()  # loaded once per process


def ece_of(probs: np.ndarray, labels: np.ndarray) -> float:
    """ECE through `compute_classification_metrics`, from probabilities (log-probabilities are logits)."""
    return compute_classification_metrics(np.log(np.clip(probs, 1e-300, None)), labels)["ece"]


def test_compute_classification_metrics_matches_sklearn():
    results = compute_classification_metrics(LOGITS, LABELS)
    assert list(results) == ["accuracy", "top5_accuracy", "macro_f1", "balanced_accuracy", "ece"]
    assert all(isinstance(v, float) for v in results.values())
    predictions = LOGITS.argmax(1)
    assert results["accuracy"] == pytest.approx(accuracy_score(LABELS, predictions))
    assert results["top5_accuracy"] == pytest.approx(top_k_accuracy_score(LABELS, LOGITS, k=5))
    assert results["macro_f1"] == pytest.approx(f1_score(LABELS, predictions, average="macro"))
    assert results["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(LABELS, predictions))
    assert results["ece"] == pytest.approx(reference_ece(softmax(LOGITS), LABELS))
    # The Trainer hands over every model output as a tuple: the first item is the logits.
    assert compute_classification_metrics((LOGITS, np.zeros(300)), LABELS) == results


def test_top5_is_clipped_to_the_number_of_classes_and_ties_favour_the_reference():
    logits, labels = RNG.normal(size=(50, 3)), RNG.integers(0, 3, 50)
    assert compute_classification_metrics(logits, labels)["top5_accuracy"] == 1.0
    tied = np.zeros((4, 8))  # every class scores the same: the reference is in any top-k
    assert compute_classification_metrics(tied, np.arange(4))["top5_accuracy"] == 1.0
    ranked = np.tile(np.arange(8, 0, -1), (3, 1))  # class 0 best ... class 7 worst
    assert compute_classification_metrics(ranked, np.array([4, 5, 7]))["top5_accuracy"] == pytest.approx(
        1 / 3
    )


def test_ece_edge_cases():
    confident_and_right = np.eye(4)
    assert ece_of(confident_and_right, np.arange(4)) == pytest.approx(0.0, abs=1e-12)
    confident_and_wrong = np.eye(4)[[1, 2, 3, 0]]
    assert ece_of(confident_and_wrong, np.arange(4)) == pytest.approx(1.0)
    # 60 % confident, right 3 times out of 5: perfectly calibrated.
    probs = np.tile([0.6, 0.4], (5, 1))
    assert ece_of(probs, np.array([0, 0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-12)


def test_class_averaged_metrics_weigh_rare_classes():
    labels = np.array([0] * 9 + [1])
    always_zero = np.eye(2)[np.zeros(10, dtype=int)] * 5
    results = compute_classification_metrics(always_zero, labels)
    assert results["accuracy"] == pytest.approx(0.9)
    assert results["balanced_accuracy"] == pytest.approx(0.5)
    assert results["macro_f1"] == pytest.approx(
        f1_score(labels, np.zeros(10), average="macro", zero_division=0)
    )


def test_shape_errors_are_explained():
    with pytest.raises(ValueError, match=r"logits \(N, C\)"):
        compute_classification_metrics(np.zeros((4, 3)), np.zeros(5))
