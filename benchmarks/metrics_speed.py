"""Cost of the evaluation metrics at CIFAR-100 scale (a benchmark, not a test).

`compute_classification_metrics` (what the Trainer's `compute_metrics` calls: the shipped `evaluate`
module) against the same scikit-learn / numpy calls made directly, on 10,000 x 100 random logits,
alternating the two so that machine noise hits both alike. Prints the median seconds of each and the ratio.

    python benchmarks/metrics_speed.py [--n 10000 --classes 100 --repeats 15 --json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, top_k_accuracy_score

from emoreg_hf.metrics import compute_classification_metrics, load_metric


def direct(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The same five numbers without `evaluate` (ECE with the usual 15-bin loop)."""
    predictions = logits.argmax(1)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    confidence, correct = probs.max(1), predictions == labels
    edges = np.linspace(0, 1, 16)
    ece = sum(
        ((confidence > lo) & (confidence <= hi)).mean()
        * abs(
            correct[(confidence > lo) & (confidence <= hi)].mean()
            - confidence[(confidence > lo) & (confidence <= hi)].mean()
        )
        for lo, hi in zip(edges[:-1], edges[1:])
        if ((confidence > lo) & (confidence <= hi)).any()
    )
    return {
        "accuracy": accuracy_score(labels, predictions),
        "top5_accuracy": top_k_accuracy_score(labels, logits, k=5, labels=np.arange(logits.shape[1])),
        "macro_f1": f1_score(labels, predictions, average="macro", zero_division=0),
        "balanced_accuracy": balanced_accuracy_score(labels, predictions),
        "ece": ece,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="examples")
    parser.add_argument("--classes", type=int, default=100, help="classes")
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats of each")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(args.n, args.classes)).astype(np.float32) * 3
    labels = np.where(rng.random(args.n) < 0.6, logits.argmax(1), rng.integers(0, args.classes, args.n))
    load_metric()  # loading the module once per process is not part of each evaluation
    ours, theirs = compute_classification_metrics(logits, labels), direct(logits.astype(np.float64), labels)
    for key, value in theirs.items():
        assert abs(ours[key] - value) < 1e-9, (key, ours[key], value)
    times: dict[str, list[float]] = {"compute_metrics": [], "sklearn_direct": []}
    for _ in range(args.repeats):
        for name, fn in (("compute_metrics", compute_classification_metrics), ("sklearn_direct", direct)):
            start = time.perf_counter()
            fn(logits, labels)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    report = {
        "n": args.n,
        "classes": args.classes,
        "repeats": args.repeats,
        "median_seconds": medians,
        "ratio": medians["compute_metrics"] / medians["sklearn_direct"],
    }
    print(f"{args.n} x {args.classes} logits, median of {args.repeats}:")
    for name, value in medians.items():
        print(f"  {name:16s} {value:.4f} s")
    print(f"  ratio            {report['ratio']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
