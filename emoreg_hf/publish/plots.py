"""The card's figures, drawn from a run folder's files: training curves, ρ histogram, ρ per class, confusion.

A figure with nothing to draw (no logged points, no regulation) is not written, so a card never shows
empty axes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .runs import PathLike, RunFolder, load_run_folder

PLOTS_DIR = "plots"


def make_plots(run: RunFolder | PathLike, output_dir: PathLike) -> dict[str, str]:
    """Draw the card's PNGs into `output_dir/plots`; returns {plot name: path relative to output_dir}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = run if isinstance(run, RunFolder) else load_run_folder(run)
    plots_dir = Path(output_dir) / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    for stale in plots_dir.glob(
        "*.png"
    ):  # a figure this run cannot draw must not survive from an earlier one
        stale.unlink()
    drawn = plot_paths(run)
    for name, _, draw in PLOTS:
        if name not in drawn:
            continue
        fig = draw(run, plt)
        fig.tight_layout()
        fig.savefig(plots_dir / f"{name}.png", dpi=110)
        plt.close(fig)
    return drawn


def plot_paths(run: RunFolder) -> dict[str, str]:
    """The figures `make_plots` draws for `run` (those with something to show), without drawing them:
    {plot name: path relative to the card}, as the card links them."""
    return {name: f"{PLOTS_DIR}/{name}.png" for name, available, _ in PLOTS if available(run)}


def _has_curves(run: RunFolder) -> bool:
    """At least two points on one of the curves (loss, validation loss, validation accuracy)."""
    logs = run.state.get("log_history") or []
    return max(len(_series(logs, key)[0]) for key in ("loss", "eval_loss", "eval_accuracy")) >= 2


def _has_predictions(run: RunFolder) -> bool:
    return bool((run.predictions or {}).get("labels"))


def _has_regulation(run: RunFolder) -> bool:
    return (run.predictions or {}).get("regulation") is not None


def _series(logs: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(log["step"], log[key]) for log in logs if key in log and "step" in log]
    return [p[0] for p in points], [p[1] for p in points]


def _plot_curves(run: RunFolder, plt):
    logs = run.state.get("log_history") or []
    has_rho = any("rho_mean" in log for log in logs)
    fig, axes = plt.subplots(1, 3 if has_rho else 2, figsize=(13 if has_rho else 9, 3.6))
    ax = axes[0]
    for key, label in (("loss", "train"), ("eval_loss", "validation")):
        x, y = _series(logs, key)
        if x:
            ax.plot(x, y, marker="o" if key.startswith("eval") else None, markersize=3, label=label)
    ax.set(title="Loss", xlabel="step")
    ax.legend()
    ax = axes[1]
    for key, label in (("accuracy", "train"), ("train_accuracy", "train"), ("eval_accuracy", "validation")):
        x, y = _series(logs, key)
        if x:
            ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set(title="Accuracy", xlabel="step", ylim=(0, 1))
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    if has_rho:
        ax = axes[2]
        x, mean = _series(logs, "rho_mean")
        _, std = _series(logs, "rho_std")
        ax.plot(x, mean, label="ρ mean (train batches)")
        if len(std) == len(mean):
            lo, hi = np.asarray(mean) - np.asarray(std), np.asarray(mean) + np.asarray(std)
            ax.fill_between(x, lo, hi, alpha=0.25, label="± std")
        ax.set(title="Regulation ρ during training", xlabel="step", ylim=(0, 1))
        ax.legend()
    return fig


def _regulation(run: RunFolder) -> tuple[np.ndarray, np.ndarray]:
    pred = run.predictions
    rho = np.asarray(pred["regulation"], dtype=np.float64).reshape(len(pred["labels"]), -1).mean(axis=1)
    return rho, np.asarray(pred["labels"])


def _plot_rho_histogram(run: RunFolder, plt):
    rho, _ = _regulation(run)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(rho, bins=30, range=(0, 1), color="tab:purple")
    ax.set(
        title=f"ρ per image ({run.predictions.get('split', '?')} split)",
        xlabel="ρ (weight of the emotional response)",
        ylabel="images",
    )
    return fig


def _plot_rho_per_class(run: RunFolder, plt):
    rho, labels = _regulation(run)
    names = run.predictions.get("label_names") or run.record.label_names or []
    classes = np.unique(labels)
    means = np.array([rho[labels == c].mean() for c in classes])
    stds = np.array([rho[labels == c].std() for c in classes])
    fig, ax = plt.subplots(figsize=(max(5, 0.28 * len(classes)), 3.6))
    ax.bar(range(len(classes)), means, yerr=stds, color="tab:purple", alpha=0.8, capsize=2)
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(
        [names[c] if c < len(names) else str(c) for c in classes],
        rotation=90,
        fontsize=7 if len(classes) > 20 else 9,
    )
    ax.set(title="Mean ρ per target class (± std)", ylabel="ρ", ylim=(0, 1))
    return fig


def _plot_confusion(run: RunFolder, plt):
    pred = run.predictions
    labels, predictions = np.asarray(pred["labels"]), np.asarray(pred["predictions"])
    names = pred.get("label_names") or run.record.label_names or []
    n = max(len(names), int(labels.max()) + 1, int(predictions.max()) + 1)
    matrix = np.zeros((n, n))
    np.add.at(matrix, (labels, predictions), 1)
    matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = min(14, max(4.5, 0.3 * n))
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if n <= 30:
        ticks = [names[i] if i < len(names) else str(i) for i in range(n)]
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=8)
        ax.set_yticks(range(n), ticks, fontsize=8)
    if n <= 12:
        for i, j in np.ndindex(n, n):
            if matrix[i, j] > 0:
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set(
        title=f"Confusion matrix ({pred.get('split', '?')} split, row-normalised)",
        xlabel="predicted",
        ylabel="true",
    )
    return fig


# Each figure: its name (the file `plots/<name>.png`), whether a run has something to show in it, how to draw it.
PLOTS = (
    ("training_curves", _has_curves, _plot_curves),
    ("rho_histogram", _has_regulation, _plot_rho_histogram),
    ("rho_per_class", _has_regulation, _plot_rho_per_class),
    ("confusion_matrix", _has_predictions, _plot_confusion),
)
