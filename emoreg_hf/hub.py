"""Model cards, plots, Hub-ready export and push for the run folders written by the recipes.

A run folder (`--output_dir` of `recipes/pretrain.py` or `recipes/finetune.py`) holds the weights,
`all_results.json`, `trainer_state.json`, `run_info.json` and `predictions_<split>.json`. Everything the
card says is read from those files, so a number on a Hub page is never typed in by hand.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import EvalResult, ModelCard, ModelCardData

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
RunDirs = PathLike | Sequence[PathLike]

CARD_NAME = "README.md"
PLOTS_DIR = "plots"
TEMPLATES = {"pretrain": "affect_card.md", "finetune": "emoreg_card.md"}
SPLITS = {"eval": "validation", "test": "test"}  # all_results.json prefix -> split name in the card
METRICS = {
    "accuracy": "Accuracy",
    "top5_accuracy": "Top-5 accuracy",
    "macro_f1": "Macro-F1",
    "balanced_accuracy": "Balanced accuracy",
    "ece": "ECE (15 bins)",
}
# Top-k accuracy says nothing when k covers (almost) every class: top-5 of 3 emotions is always 1.0.
TOPK_MIN_CLASSES = {"top5_accuracy": 6}
# Readable names for the data sets the presets load; a card never shows a bare id where a name is known.
DATASET_NAMES = {
    "uoft-cs/cifar10": "CIFAR-10",
    "uoft-cs/cifar100": "CIFAR-100",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "demo": "emoreg-hf synthetic shapes (demo target set)",
}
CITATION = """@article{landi2026emotional,
  title         = {Emotional regulation improves deep learning-based image classification},
  author        = {Landi and Rodrigues and Chinnici},
  journal       = {arXiv preprint arXiv:2606.13081},
  eprint        = {2606.13081},
  archivePrefix = {arXiv},
  year          = {2026},
  url           = {https://arxiv.org/abs/2606.13081}
}"""

# What a Hub repo may hold: weights as safetensors, configs, remote code, results; nothing pickled.
EXPORT_FILES = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "*processor_config.json",
    "*.py",
    "all_results.json",
    "eval_results.json",
    "test_results.json",
    "train_results.json",
    "trainer_state.json",
    "run_info.json",
    "predictions_*.json",
)
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
FORBIDDEN_PREFIXES = ("checkpoint-", "optimizer", "scheduler", "rng_state", "training_args")
SECRET_KEYS = {"hub_token", "token", "push_to_hub_token", "hf_token", "api_key", "wandb_api_key"}
TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
# An absolute path not glued to a word, a URL or another path: `/data/x`, `~/x` (but not `org/name`, `https://`).
ABS_PATH_RE = re.compile(r"(?<![\w.:/~-])(?:/|~/)[^\s\"'`,;()\[\]{}<>|]+")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
REPO_ID_RE = re.compile(
    r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$"
)  # `name` pushes to your own namespace


class HubPushError(RuntimeError):
    """A push that cannot go ahead, with a message for the user (recipes print it instead of a traceback)."""


class HubCredentialsError(HubPushError):
    """No usable Hugging Face token, so nothing can be pushed."""


class CardExistsError(HubPushError):
    """The target revision already has a README.md and `overwrite` was not asked for."""


class HubUnreachableError(HubPushError):
    """The Hub could not be reached (offline mode, no network)."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP client huggingface_hub uses (requests or httpx)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import requests

        errors += [requests.exceptions.ConnectionError, requests.exceptions.Timeout]
    except ImportError:
        pass
    try:
        import httpx

        errors.append(httpx.TransportError)
    except ImportError:
        pass
    return tuple(errors)


# ----------------------------------------------------------------------------------------------- runs


@dataclass
class Run:
    """The files of one run folder, parsed."""

    path: Path
    info: dict[str, Any]
    results: dict[str, Any]
    state: dict[str, Any]
    predictions: dict[str, Any] | None

    @property
    def stage(self) -> str:
        return self.info.get("stage", "finetune")

    @property
    def method(self) -> str | None:
        return self.info.get("method")


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def load_run(run_dir: PathLike) -> Run:
    """Read a run folder; fails with a message naming the folder and the missing file."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"Run folder {str(path)!r} does not exist.")
    results = _read_json(path / "all_results.json")
    if results is None:
        raise FileNotFoundError(
            f"{path}/all_results.json is missing: is {str(path)!r} the --output_dir of a finished "
            "recipes/pretrain.py or recipes/finetune.py run?"
        )
    info = _read_json(path / "run_info.json")
    if info is None:
        config = _read_json(path / "config.json", {})
        info = {"stage": "finetune" if config.get("model_type") == "emoreg" else "pretrain"}
        logger.warning(
            "%s has no run_info.json; the card will lack provenance (guessed stage %s).", path, info["stage"]
        )
    predictions = None
    for split in ("test", "validation", "eval"):
        predictions = _read_json(path / f"predictions_{split}.json")
        if predictions is not None:
            break
    state = _read_json(path / "trainer_state.json", {})
    return Run(path=path, info=scrub(info), results=results, state=state, predictions=predictions)


def _as_list(run_dirs: RunDirs) -> list[Path]:
    if isinstance(run_dirs, (str, os.PathLike)):
        return [Path(run_dirs)]
    dirs = [Path(d) for d in run_dirs]
    if not dirs:
        raise ValueError("Give at least one run folder.")
    return dirs


# Keys that legitimately differ between seeds of one configuration.
_PER_RUN_KEYS = {
    "seed",
    "data_seed",
    "output_dir",
    "logging_dir",
    "run_name",
    "hub_model_id",
    "push_to_hub",
    "hub_private_repo",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "report_to",
    "training.seed",
}


def _configuration(run: Run) -> dict[str, Any]:
    """Everything that defines a run's configuration: recipe arguments, training hyperparameters, method."""
    training = {f"training.{k}": v for k, v in (run.info.get("training") or {}).items()}
    return {
        **(run.info.get("config") or {}),
        **training,
        **{k: run.info.get(k) for k in ("emoreg", "controls", "label_names")},
    }


def _check_same_configuration(runs: list[Run]) -> None:
    """Averaging over seeds only makes sense if nothing but the seed changed."""
    first = runs[0]
    for run in runs[1:]:
        if run.stage != first.stage or run.method != first.method:
            raise ValueError(
                f"{run.path} ({run.stage}/{run.method}) is not the configuration of {first.path}."
            )
        a, b = _configuration(first), _configuration(run)
        differing = sorted(k for k in set(a) | set(b) if k not in _PER_RUN_KEYS and a.get(k) != b.get(k))
        if differing:
            raise ValueError(
                f"{run.path} and {first.path} differ in {', '.join(differing)}; a card averages seeds of one "
                "configuration only (give other configurations as comparisons)."
            )


# -------------------------------------------------------------------------------------------- scrubbing


def _local_roots() -> list[Path]:
    roots = [Path.cwd(), Path(__file__).resolve().parents[1]]
    return [r for r in roots if len(r.parts) > 1]


def _scrub_path(match: re.Match) -> str:
    """An absolute path becomes relative to the project (if inside it) or its base name."""
    raw = match.group(0)
    path = Path(os.path.expanduser(raw))
    for root in _local_roots():
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return path.name or "<local path>"


def scrub(obj: Any) -> Any:
    """Drop secrets and rewrite absolute local paths in a JSON-like object, so it can be published."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return ABS_PATH_RE.sub(_scrub_path, TOKEN_RE.sub("<redacted>", obj))
    return obj


def _is_hub_id(name: Any) -> bool:
    return isinstance(name, str) and bool(HUB_ID_RE.match(name)) and not Path(name).exists()


# ---------------------------------------------------------------------------------------------- results


def aggregate(runs: list[Run]) -> dict[str, tuple[float, float, int]]:
    """Mean, sample std and count of every numeric result shared by all runs."""
    keys = [k for k, v in runs[0].results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for key in keys:
        values = [r.results[key] for r in runs if isinstance(r.results.get(key), (int, float))]
        if len(values) == len(runs):
            arr = np.asarray(values, dtype=np.float64)
            out[key] = (float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, len(arr))
    return out


def _fmt(stat: tuple[float, float, int] | None, digits: int = 4) -> str:
    if stat is None:
        return "–"
    mean, std, n = stat
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def _n_classes(run: Run) -> int | None:
    names = run.info.get("label_names") or (run.predictions or {}).get("label_names")
    if names:
        return len(names)
    return len(_read_json(run.path / "config.json", {}).get("id2label") or {}) or None


def reported_metrics(run: Run) -> list[str]:
    """The metrics a card reports: all of METRICS but top-k accuracies that are trivially 1 for few classes."""
    n = _n_classes(run)
    return [m for m in METRICS if n is None or n >= TOPK_MIN_CLASSES.get(m, 0)]


def _dataset_name(entry: dict[str, Any]) -> str:
    data_id = entry.get("id") or "unknown"
    return entry.get("name") or DATASET_NAMES.get(data_id) or data_id


def _evaluated_dataset(run: Run) -> dict[str, Any]:
    """The data set the reported metrics are measured on (the target set; the mixture for stage 1)."""
    datasets = run.info.get("datasets") or []
    if run.stage == "pretrain" and len(datasets) > 1:
        ids = [d.get("id", "") for d in datasets]
        hub_ids = [i for i in ids if _is_hub_id(i)]
        return {
            "id": hub_ids[0] if len(hub_ids) == 1 else "affective-mixture",
            "name": "Affective mixture: " + ", ".join(_dataset_name(d) for d in datasets),
        }
    if datasets:
        return {"id": datasets[0].get("id") or "unknown", "name": _dataset_name(datasets[0])}
    return {"id": "unknown", "name": "unknown"}


def eval_results(runs: list[Run], model_name: str) -> list[EvalResult]:
    """One EvalResult per reported split x metric; the value is the run's (or the seeds' mean) result."""
    stats = aggregate(runs)
    dataset = _evaluated_dataset(runs[0])
    n = len(runs)
    results = []
    for prefix, split in SPLITS.items():
        for metric in reported_metrics(runs[0]):
            pretty = METRICS[metric]
            stat = stats.get(f"{prefix}_{metric}")
            if stat is None:
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=dataset["id"],
                    dataset_name=dataset["name"],
                    dataset_split=split,
                    metric_type=metric,
                    metric_name=f"{pretty} ({split})" + (f", mean of {n} seeds" if n > 1 else ""),
                    metric_value=stat[0],
                )
            )
    return results


def _results_table(stats: dict[str, tuple[float, float, int]], metrics: Sequence[str]) -> dict[str, Any]:
    metrics = [m for m in (*metrics, "loss") if any(f"{p}_{m}" in stats for p in SPLITS)]
    rows = [
        {"split": split, "values": [_fmt(stats.get(f"{prefix}_{m}")) for m in metrics]}
        for prefix, split in SPLITS.items()
        if any(f"{prefix}_{m}" in stats for m in metrics)
    ]
    return {"columns": [METRICS.get(m, "Loss") for m in metrics], "rows": rows}


def _regulation_stats(stats: dict[str, tuple[float, float, int]]) -> dict[str, Any] | None:
    """ρ and emotion statistics per split, as tables, from the `<split>_rho_*` / `emotion_*` results."""
    summary, per_class, shares = [], {}, {}
    for prefix, split in SPLITS.items():
        if f"{prefix}_rho_mean" not in stats:
            continue
        summary.append(
            {
                "split": split,
                "rho_mean": _fmt(stats.get(f"{prefix}_rho_mean")),
                "rho_std": _fmt(stats.get(f"{prefix}_rho_std")),
                "emotion_entropy": _fmt(stats.get(f"{prefix}_emotion_entropy")),
            }
        )
        for key, stat in stats.items():
            if key.startswith(f"{prefix}_rho_class/"):
                per_class.setdefault(key.split("/", 1)[1], {})[split] = _fmt(stat, 3)
            elif key.startswith(f"{prefix}_emotion_share/"):
                shares.setdefault(key.split("/", 1)[1], {})[split] = _fmt(stat, 3)
    if not summary:
        return None
    splits = [row["split"] for row in summary]
    last = "test" if "test" in splits else splits[-1]
    rho = stats[f"{'test' if last == 'test' else 'eval'}_rho_mean"][0]
    reading = (
        f"On the {last} split ρ averaged {rho:.2f}: a prediction is on average {100 * (1 - rho):.0f}% the "
        f"non-emotional response and {100 * rho:.0f}% the emotionally-influenced one."
    )
    if rho < 0.1:
        reading += " This checkpoint has learned to rely mostly on its task pathway."
    elif rho > 0.9:
        reading += " This checkpoint relies mostly on the emotionally-influenced response."
    return {
        "splits": splits,
        "reading": reading,
        "summary": summary,
        "per_class": [{"name": k, "values": [v.get(s, "–") for s in splits]} for k, v in per_class.items()],
        "emotion_share": [{"name": k, "values": [v.get(s, "–") for s in splits]} for k, v in shares.items()],
    }


def _data_report(report: Any) -> dict[str, Any] | None:
    """Per-source, per-class counts as a table (classes x sources); None if the report has another shape."""
    if isinstance(report, dict):
        report = report.get("sources") or report.get("per_source") or report
    if isinstance(report, list):
        report = {
            str(r.get("name") or r.get("source") or i): r for i, r in enumerate(report) if isinstance(r, dict)
        }
    if not isinstance(report, dict) or not report:
        return None
    counts = {}
    for source, value in report.items():
        if not isinstance(value, dict):
            return None
        inner = next(
            (value[k] for k in ("per_class", "class_counts", "counts") if isinstance(value.get(k), dict)),
            value,
        )
        if isinstance(inner.get("train"), dict):  # counts per split: the card reports what was trained on
            inner = inner["train"]
        if not inner or not all(isinstance(v, int) for v in inner.values()):
            return None
        counts[str(source)] = inner
    classes = list(dict.fromkeys(c for inner in counts.values() for c in inner))
    sources = list(counts)
    rows = [{"name": c, "values": [counts[s].get(c, 0) for s in sources]} for c in classes]
    for row in rows:
        row["total"] = sum(row["values"])
    totals = [sum(counts[s].values()) for s in sources]
    return {"sources": sources, "rows": rows, "totals": totals, "total": sum(totals)}


CONTROL_KINDS = {
    "baseline": lambda run: run.method == "baseline",
    "transfer": lambda run: run.method == "transfer",
    "shuffled-emotion control": lambda run: bool((run.info.get("controls") or {}).get("shuffled_emotion")),
    "no-pretraining control": lambda run: bool((run.info.get("controls") or {}).get("no_pretraining")),
}


def _comparisons(runs: list[Run], compare_dirs: Sequence[PathLike]) -> dict[str, Any] | None:
    """This checkpoint's configuration next to other configurations (baseline, controls), with the gap."""
    if not compare_dirs:
        return None
    others = [load_run(d) for d in compare_dirs]
    for other in others:
        if other.stage != runs[0].stage or other.info.get("label_names") != runs[0].info.get("label_names"):
            raise ValueError(
                f"{other.path} is a {other.stage} run on other classes than {runs[0].path}: a comparison "
                "needs runs of the same stage on the same data set."
            )
    prefix = "test" if "test_accuracy" in runs[0].results else "eval"
    key = f"{prefix}_accuracy"
    this = aggregate(runs).get(key)
    groups: dict[str, list[Run]] = {}
    for run in others:
        groups.setdefault(_configuration_label(run), []).append(run)
    rows = [
        {
            "label": _configuration_label(runs[0]) + " (this checkpoint)",
            "n": len(runs),
            "accuracy": _fmt(this),
        }
    ]
    for label, group in groups.items():
        stat = aggregate(group).get(key)
        row = {"label": label, "n": len(group), "accuracy": _fmt(stat), "reading": "–"}
        row["command"] = group[0].info.get("command")
        if this is not None and stat is not None:
            delta = this[0] - stat[0]
            spread = max(this[1], stat[1]) if min(this[2], stat[2]) > 1 else None
            if spread is not None and abs(delta) <= spread:
                row["reading"] = f"within the seeds' spread ({delta:+.4f})"
            else:
                row["reading"] = f"this checkpoint {'ahead' if delta > 0 else 'behind'} by {abs(delta):.4f}"
                if spread is None:
                    row["reading"] += " (single runs: not evidence)"
        rows.append(row)
    missing = []
    if runs[0].stage == "finetune" and runs[0].method == "emoreg":
        missing = [kind for kind, test in CONTROL_KINDS.items() if not any(test(r) for r in others)]
    return {"split": SPLITS[prefix], "rows": rows, "missing": missing}


def _configuration_label(run: Run) -> str:
    label = run.method or run.stage
    if run.method == "emoreg":
        settings = run.info.get("emoreg") or {}
        label += f" ({settings.get('regulation', '?')}, {settings.get('influence', '?')})"
    controls = [k for k, v in (run.info.get("controls") or {}).items() if v]
    return label + "".join(f", {c}" for c in controls)


# ------------------------------------------------------------------------------------------------ plots


def make_plots(run: Run | PathLike, output_dir: PathLike) -> dict[str, str]:
    """Draw the card's PNGs into `output_dir/plots`; returns {plot name: path relative to output_dir}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = run if isinstance(run, Run) else load_run(run)
    plots_dir = Path(output_dir) / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for name, draw in (
        ("training_curves", _plot_curves),
        ("rho_histogram", _plot_rho_histogram),
        ("rho_per_class", _plot_rho_per_class),
        ("confusion_matrix", _plot_confusion),
    ):
        fig = draw(run, plt)
        if fig is None:
            continue
        fig.tight_layout()
        fig.savefig(plots_dir / f"{name}.png", dpi=110)
        plt.close(fig)
        drawn[name] = f"{PLOTS_DIR}/{name}.png"
    return drawn


def _series(logs: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(log["step"], log[key]) for log in logs if key in log and "step" in log]
    return [p[0] for p in points], [p[1] for p in points]


def _plot_curves(run: Run, plt):
    logs = run.state.get("log_history") or []
    if not logs:
        return None
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


def _regulation(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    pred = run.predictions or {}
    if pred.get("regulation") is None:
        return None
    rho = np.asarray(pred["regulation"], dtype=np.float64).reshape(len(pred["labels"]), -1).mean(axis=1)
    return rho, np.asarray(pred["labels"])


def _plot_rho_histogram(run: Run, plt):
    data = _regulation(run)
    if data is None:
        return None
    rho, _ = data
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.hist(rho, bins=30, range=(0, 1), color="tab:purple")
    ax.set(
        title=f"ρ per image ({run.predictions.get('split', '?')} split)",
        xlabel="ρ (weight of the emotional response)",
        ylabel="images",
    )
    return fig


def _plot_rho_per_class(run: Run, plt):
    data = _regulation(run)
    names = (run.predictions or {}).get("label_names") or run.info.get("label_names") or []
    if data is None:
        return None
    rho, labels = data
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


def _plot_confusion(run: Run, plt):
    pred = run.predictions
    if not pred or not pred.get("labels"):
        return None
    labels, predictions = np.asarray(pred["labels"]), np.asarray(pred["predictions"])
    names = pred.get("label_names") or run.info.get("label_names") or []
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


# ------------------------------------------------------------------------------------------------ cards


def _template(stage: str) -> str:
    return resources.files("emoreg_hf.model_cards").joinpath(TEMPLATES[stage]).read_text(encoding="utf-8")


def _hub_link(name: str) -> str:
    return f"[`{name}`](https://huggingface.co/{name})"


def _stage1_run(run: Run) -> Run | None:
    """The run folder of a local affective checkpoint (for its provenance and reproduce command), if found."""
    raw = (_read_json(run.path / "run_info.json", {}).get("config") or {}).get("affect_model_name_or_path")
    if not raw or _is_hub_id(raw):
        return None
    candidates = (
        [Path(raw)] if Path(raw).is_absolute() else [Path.cwd() / raw, *(r / raw for r in _local_roots())]
    )
    for path in candidates:
        if (path / "all_results.json").is_file() and (path / "run_info.json").is_file():
            return load_run(path)
    return None


def _backbones(run: Run, stage1: Run | None) -> dict[str, str]:
    """How the card names the two pathways: a Hub link, a local folder, or a from-scratch architecture."""
    cfg = run.info.get("config") or {}
    task = cfg.get("task_model_name_or_path")
    if task:
        task_text = _hub_link(task) if _is_hub_id(task) else f"the local checkpoint `{task}`"
    else:
        arch = (cfg.get("task_model_config") or {}).get("model_type", "task")
        task_text = f"a `{arch}` backbone trained from scratch (built from its config, no pretraining)"
    affect = cfg.get("affect_model_name_or_path")
    if (run.info.get("controls") or {}).get("no_pretraining"):
        affect_text = "a randomly initialised affective backbone (no-pretraining control)"
    elif affect and _is_hub_id(affect):
        affect_text = _hub_link(affect)
    elif affect:
        affect_text = f"the stage-1 checkpoint from the local folder `{affect}` (not on the Hub"
        affect_text += "; its weights are part of this repository)" if run.method == "emoreg" else ")"
        if stage1 is not None and stage1.info.get("synthetic_data"):
            affect_text += ", itself trained on synthetic demo stimuli"
    else:
        affect_text = "an affective backbone"
    return {"task": task_text, "affect": affect_text}


def _pretrain_sources(info: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Stage-1 sources with their split sizes, and each source's label mapping onto the taxonomy."""
    report = (info.get("data_report") or {}).get("sources") or {}
    datasets, mappings = [], []
    for entry in info.get("datasets") or []:
        entry = dict(entry, name=_dataset_name(entry))
        source = report.get(entry["name"]) or report.get(entry.get("id")) or {}
        sizes = {k: source[k] for k in ("train", "validation", "test") if isinstance(source.get(k), int)}
        if sizes and not entry.get("split_sizes"):
            entry["split_sizes"] = sizes
        datasets.append(entry)
        if isinstance(source.get("mapping"), dict):
            mappings.append({"source": entry["name"], "pairs": list(source["mapping"].items())})
    return datasets, mappings


def _caps(run: Run) -> str | None:
    """A sentence when the run trained or evaluated on a subsample (`--max_train_samples` and the like)."""
    cfg = run.info.get("config") or {}
    parts = []
    if cfg.get("max_train_samples") is not None:
        used = run.results.get("train_samples", cfg["max_train_samples"])
        parts.append(
            f"training used a class-stratified sample of {used} images (`--max_train_samples {cfg['max_train_samples']}`)"
        )
    if cfg.get("max_eval_samples") is not None:
        parts.append(
            f"each evaluation split was capped at {cfg['max_eval_samples']} images (`--max_eval_samples`)"
        )
    return ("Subsampled run: " + "; ".join(parts) + ".") if parts else None


def _default_repo_id(run: Run) -> str:
    config = run.info.get("config") or {}
    return config.get("hub_model_id") or f"your-org/{run.path.resolve().name}"


def build_model_card(
    run_dirs: RunDirs,
    *,
    repo_id: str | None = None,
    plots: dict[str, str] | None = None,
    compare_dirs: Sequence[PathLike] = (),
) -> ModelCard:
    """Render the stage's template from the run folders' files (several folders = seeds of one config)."""
    runs = [load_run(d) for d in _as_list(run_dirs)]
    _check_same_configuration(runs)
    run = runs[0]
    info = run.info
    repo_id = repo_id or _default_repo_id(run)
    model_name = repo_id.split("/")[-1]
    stats = aggregate(runs)
    evals = eval_results(runs, model_name)
    emoreg = info.get("emoreg") or {}

    tags = ["image-classification", "emoreg", "emotional-regulation", "affective-computing"]
    if run.stage == "pretrain":
        tags.append("emotion-recognition")
    elif run.method != "baseline":
        tags.append("emoreg-classifier")
    if run.method:
        tags.append(f"method-{run.method}")
    if emoreg.get("regulation") and run.method == "emoreg":
        tags.append(f"regulation-{emoreg['regulation']}")
    if info.get("synthetic_data"):
        tags.append("synthetic-data")
    if any((info.get("controls") or {}).values()):
        tags.append("control")

    datasets, mappings = _pretrain_sources(info)
    base_models = info.get("base_models") or []
    hub_base_models = [m for m in base_models if _is_hub_id(m)]
    metrics = reported_metrics(run)
    uses_stage1 = run.stage == "finetune" and run.method in ("emoreg", "transfer")
    stage1 = (
        _stage1_run(run) if uses_stage1 and not (info.get("controls") or {}).get("no_pretraining") else None
    )
    card_data = ModelCardData(
        license=info.get("license", "apache-2.0"),
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=tags,
        datasets=[d["id"] for d in datasets if _is_hub_id(d.get("id"))] or None,
        base_model=hub_base_models or None,
        # Two base models would read as a merge on the Hub; both pathways are fine-tuned from / built on them.
        base_model_relation="finetune" if hub_base_models else None,
        metrics=[m for m in metrics if any(f"{p}_{m}" in stats for p in SPLITS)] or None,
        model_name=model_name,
        eval_results=evals or None,
    )
    seeds = [r.info.get("training", {}).get("seed", r.info.get("config", {}).get("seed")) for r in runs]
    context = {
        "repo_id": repo_id,
        "model_name": model_name,
        "stage": run.stage,
        "method": run.method,
        "info": info,
        "emoreg": emoreg,
        "training": {
            k: v
            for k, v in (info.get("training") or {}).items()
            if v is not None and not (k == "max_steps" and isinstance(v, int) and v <= 0)
        },
        "datasets": datasets,
        "label_mappings": mappings,
        "backbones": _backbones(run, stage1),
        "architecture": _read_json(run.path / "config.json", {}).get("model_type"),
        "stage1": {
            "path": (info.get("config") or {}).get("affect_model_name_or_path"),
            "command": stage1.info.get("command"),
        }
        if stage1 is not None
        else None,
        "local_base_models": [m for m in base_models if not _is_hub_id(m)],
        "taxonomy": info.get("taxonomy") or {},
        "label_names": info.get("label_names") or [],
        "data_report": _data_report(info.get("data_report")),
        "data_report_json": json.dumps(info.get("data_report"), indent=1)
        if info.get("data_report")
        else None,
        "controls": {k: v for k, v in (info.get("controls") or {}).items() if v},
        "synthetic_data": bool(info.get("synthetic_data")),
        "caps": _caps(run),
        "results": _results_table(stats, metrics),
        "regulation": _regulation_stats(stats),
        "n_runs": len(runs),
        "seeds": seeds,
        "comparisons": _comparisons(runs, compare_dirs),
        "plots": plots or {},
        "command": info.get("command"),
        "train_loss": _fmt(stats.get("train_loss")),
        "epochs": _fmt(stats.get("epoch"), 2),
        "citation": CITATION,
    }
    return ModelCard.from_template(card_data, template_str=_template(run.stage), **context)


def write_model_card(
    run_dirs: RunDirs,
    output_dir: PathLike | None = None,
    *,
    repo_id: str | None = None,
    compare_dirs: Sequence[PathLike] = (),
) -> Path:
    """Write README.md and its plots into `output_dir` (default: the first run folder); returns README's path."""
    dirs = _as_list(run_dirs)
    output_dir = Path(output_dir or dirs[0])
    plots = make_plots(dirs[0], output_dir)
    card = build_model_card(dirs, repo_id=repo_id, plots=plots, compare_dirs=compare_dirs)
    card.save(output_dir / CARD_NAME)
    return output_dir / CARD_NAME


# ----------------------------------------------------------------------------------------------- export


def _exportable(path: Path) -> bool:
    return path.is_file() and any(path.match(pattern) for pattern in EXPORT_FILES)


def export_for_hub(
    run_dirs: RunDirs,
    export_dir: PathLike,
    *,
    repo_id: str | None = None,
    compare_dirs: Sequence[PathLike] = (),
) -> Path:
    """Build the folder a Hub repo will hold: safetensors, configs, code, results, card and plots.

    The first run folder gives the weights and plots; all of them give results. JSON files are scrubbed of
    secrets and absolute local paths, and the folder is checked before it is returned.
    """
    dirs = _as_list(run_dirs)
    source, export_dir = dirs[0], Path(export_dir)
    if export_dir.exists() and any(export_dir.iterdir()):
        raise FileExistsError(f"Export folder {export_dir} is not empty.")
    if not list(source.glob("*.safetensors")):
        found = (
            ", ".join(sorted(p.name for p in source.iterdir() if p.suffix in FORBIDDEN_SUFFIXES)) or "nothing"
        )
        raise FileNotFoundError(
            f"{source} has no *.safetensors weights (found {found}); save with safe_serialization=True."
        )
    export_dir.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if not _exportable(path):
            continue
        if path.suffix == ".json":
            data = scrub(json.loads(path.read_text(encoding="utf-8")))
            (export_dir / path.name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        else:
            shutil.copy2(path, export_dir / path.name)
    write_model_card(dirs, export_dir, repo_id=repo_id, compare_dirs=compare_dirs)
    problems = check_export(export_dir, local_paths=[d.resolve() for d in dirs])
    if problems:
        raise ValueError("Refusing to publish this folder:\n  " + "\n  ".join(problems))
    return export_dir


def check_export(folder: PathLike, local_paths: Sequence[PathLike] = ()) -> list[str]:
    """Problems that must not reach the Hub: pickles, checkpoints, tokens, absolute local paths."""
    folder = Path(folder)
    prefixes = {
        str(p) for p in (*local_paths, folder.resolve(), Path.home(), *_local_roots()) if len(str(p)) > 1
    }
    problems = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(FORBIDDEN_PREFIXES) for part in path.relative_to(folder).parts):
            problems.append(f"{rel}: checkpoint/optimizer/training-state files are not published")
        elif path.is_file() and path.suffix in FORBIDDEN_SUFFIXES:
            problems.append(f"{rel}: only safetensors weights are published, no pickles")
        if not path.is_file() or path.suffix not in (".json", ".md", ".py", ".txt", ".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if TOKEN_RE.search(text):
            problems.append(f"{rel}: contains something that looks like a Hugging Face token")
        leaked = sorted(p for p in prefixes if p in text)
        if path.suffix == ".json":
            leaked += [s for s in _strings(json.loads(text)) if os.path.isabs(s)][:3]
        if leaked:
            problems.append(f"{rel}: contains absolute local paths ({', '.join(leaked)})")
    return problems


def _strings(obj: Any):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


# ------------------------------------------------------------------------------------------------- push


def push_to_hub(
    run_dirs: RunDirs,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    compare_dirs: Sequence[PathLike] = (),
    commit_message: str | None = None,
    token: str | None = None,
    api: Any = None,
) -> str | None:
    """Export the run folders and upload them to `repo_id` with `create_repo` + `upload_folder`.

    An existing README.md at the target revision is kept unless `overwrite` (a PR never overwrites, so
    `create_pr` proposes the new card instead). `dry_run` prints the file list and the card and touches no
    network. Returns the commit (or PR) URL, None on a dry run.
    """
    if not isinstance(repo_id, str) or not REPO_ID_RE.match(repo_id):
        raise ValueError(
            f"{repo_id!r} is not a Hub model repository id: give --repo_id (recipes: --hub_model_id) as org/name."
        )
    with tempfile.TemporaryDirectory(prefix="emoreg-export-") as tmp:
        folder = export_for_hub(run_dirs, Path(tmp) / "export", repo_id=repo_id, compare_dirs=compare_dirs)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        if dry_run:
            where = f"{repo_id}@{revision or 'main'}" + (" as a pull request" if create_pr else "")
            print(f"[dry run] would upload {len(files)} files to https://huggingface.co/{repo_id} ({where}):")
            for name in files:
                print(f"  {name}  ({(folder / name).stat().st_size:,} bytes)")
            print(f"\n[dry run] {CARD_NAME}:\n")
            print((folder / CARD_NAME).read_text(encoding="utf-8"))
            return None
        api = api if api is not None else _hf_api(token)
        return _upload(folder, files, repo_id, private, revision, create_pr, overwrite, commit_message, api)


def push_from_training_args(output_dir: PathLike, training_args: Any) -> str | None:
    """The recipes' `--push_to_hub true --hub_model_id org/name` path: push `output_dir` with the
    `hub_*` training arguments, or exit with the reason (missing token, existing card, bad id), not a traceback."""
    try:
        return push_to_hub(
            [output_dir],
            training_args.hub_model_id,
            private=bool(getattr(training_args, "hub_private_repo", False)),
            revision=getattr(training_args, "hub_revision", None),
            token=getattr(training_args, "hub_token", None),
        )
    except (HubPushError, ValueError, FileNotFoundError) as error:
        raise SystemExit(
            f"push_to_hub: {error}\nThe run in {output_dir} is complete and saved; publish it later with "
            f"`python recipes/push.py {output_dir} --repo_id {training_args.hub_model_id or 'org/name'}`."
        ) from None


def _hf_api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(token=token)


def _upload(folder, files, repo_id, private, revision, create_pr, overwrite, commit_message, api) -> str:
    from huggingface_hub import get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if not (getattr(api, "token", None) or get_token()):
        raise HubCredentialsError(
            "No Hugging Face token found, so nothing was pushed. Log in with `hf auth login` or set HF_TOKEN "
            "(a token with write access to the target namespace), then rerun; `recipes/push.py ... --dry_run` "
            "shows what would be uploaded without a token."
        )
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        if not overwrite and not create_pr and api.file_exists(repo_id, CARD_NAME, revision=revision):
            raise CardExistsError(
                f"{repo_id}@{revision or 'main'} already has a {CARD_NAME}; nothing was pushed. Pass --overwrite "
                "to replace it, or --create_pr to propose the new card as a pull request."
            )
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message
            or f"Upload {len(files)} files with emoreg-hf (model card, weights, results)",
        )
    except OfflineModeIsEnabled as error:
        raise HubUnreachableError(
            f"HF_HUB_OFFLINE is set, so nothing was pushed to {repo_id}: unset it (or use --dry_run)."
        ) from error
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubCredentialsError(
                f"The Hub refused the token for {repo_id} (HTTP {status}): it needs write access to that "
                "namespace. Log in again with `hf auth login` or set HF_TOKEN."
            ) from error
        raise
    except _transport_errors() as error:
        raise HubUnreachableError(
            f"Could not reach the Hub to push {repo_id} ({type(error).__name__}); nothing was pushed. Check the "
            "network (or HF_ENDPOINT) and rerun; --dry_run shows what would be uploaded."
        ) from error
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or info)
