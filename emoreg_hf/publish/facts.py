"""What a card says about a run besides its numbers, read from its record: whether `--max_*_samples`
dropped rows, whether the checkpoint needs remote code, a title when no Hub id is known, and the class
counts of what stage 1 trained on, and which stage-1 model the seeds of a card read. Values only: the templates word them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import registry, stage1_variants
from .results import configuration_label
from .runs import RunFolder, read_json
from .scrub import is_hub_id


def data_report_table(
    report: dict[str, Any] | None, label_names: Sequence[str] = ()
) -> dict[str, Any] | None:
    """Stage 1's per-class training counts as a table (classes x sources), in the classes it trained on: the
    emotions per source, a k-means control's cluster sizes, a positive control's target classes."""
    report = report or {}
    clusters = (report.get("kmeans_labels") or {}).get("train") or {}
    if clusters.get("sizes") and len(clusters["sizes"]) == len(label_names):
        sources = {"all sources": {"class_counts": {"train": dict(zip(label_names, clusters["sizes"]))}}}
    else:
        sources = report.get("sources") or {}
    counts = {
        name: (s.get("class_counts") or {}).get("train") or s.get("class_counts_train")
        for name, s in sources.items()
    }
    if not counts or not all(isinstance(c, dict) and c for c in counts.values()):
        return None
    classes = list(dict.fromkeys(c for inner in counts.values() for c in inner))
    names = list(counts)
    rows = [{"name": c, "values": [counts[s].get(c, 0) for s in names]} for c in classes]
    for row in rows:
        row["total"] = sum(row["values"])
    totals = [sum(counts[s].values()) for s in names]
    return {"sources": names, "rows": rows, "totals": totals, "total": sum(totals)}


def _rows_before_cap(run: RunFolder) -> dict[str, int]:
    """Each split's rows before `--max_*_samples` capped it, where the run recorded them (`<split>_rows_before_cap`
    in its results; a stage-1 record from before that field: its mixture's counts)."""
    recorded = {
        split: run.results[f"{split}_rows_before_cap"]
        for split in ("train", "validation", "test")
        if isinstance(run.results.get(f"{split}_rows_before_cap"), int)
    }
    if recorded:
        return recorded
    mixture = (run.record.data_report or {}).get("mixture") or {}
    return {
        s: mixture[f"{s}_rows"]
        for s in ("train", "validation", "test")
        if isinstance(mixture.get(f"{s}_rows"), int)
    }


def _dropped(before: int | None, used: int | None, cap: int) -> bool | None:
    """Whether a cap of `cap` rows dropped any: a split is capped only when it has more rows than the cap,
    so fewer rows used than the cap means none dropped; None when the record cannot tell."""
    if before is not None and used is not None:
        return before > used
    if used is not None and used < cap:
        return False
    return None


def caps(run: RunFolder) -> dict[str, Any] | None:
    """What `--max_train_samples` / `--max_eval_samples` did to the run's splits, when they dropped rows
    (or the record cannot tell): a cap that kept every row is no subsample."""
    config = run.record.config
    train_cap, eval_cap = config.get("max_train_samples"), config.get("max_eval_samples")
    before = _rows_before_cap(run)
    sizes: dict[str, int] = {}
    for dataset in run.record.datasets:
        for split, n in (dataset.split_sizes or {}).items():
            sizes[split] = sizes.get(split, 0) + n
    train = None
    if train_cap is not None:
        used = run.results.get("train_samples", sizes.get("train"))
        dropped = _dropped(before.get("train"), used, train_cap)
        if dropped is not False:
            train = {
                "max": train_cap,
                "used": used,
                "available": before.get("train"),
                "known": dropped is True,
            }
    evaluation = None
    if eval_cap is not None:
        verdicts = {
            s: _dropped(before.get(s), sizes.get(s), eval_cap) for s in ("validation", "test") if s in sizes
        }
        capped = [s for s, dropped in verdicts.items() if dropped is not False]
        if capped:
            evaluation = {
                "max": eval_cap,
                "splits": [{"split": s, "available": before.get(s), "used": sizes[s]} for s in capped],
                "known": all(verdicts[s] for s in capped),
            }
    return {"train": train, "eval": evaluation} if train or evaluation else None


# How a title names a stage-1 variant (the normal one: nothing).
STAGE1_TITLES = {
    "normal": "",
    "shuffled": " (shuffled-emotion diagnostic)",
    "kmeans": " (k-means control)",
    "target": " (positive control)",
}
LOCAL_REPO = "path/to/this/folder"  # what a run folder's own card loads while no Hub id is known


def needs_remote_code(run: RunFolder) -> bool:
    """Whether `from_pretrained` needs `trust_remote_code=True` for the run's checkpoint: its config.json
    names code of its own (`auto_map`); without the weights (a study's records), a model type that
    transformers itself does not know (`small_resnet`, `emoreg`) is shipped as remote code."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    config = read_json(run.path / "config.json")
    if isinstance(config, dict):
        return bool(config.get("auto_map"))
    model_type = run.record.models.get("architecture")
    return bool(model_type) and model_type not in CONFIG_MAPPING_NAMES


def model_title(run: RunFolder, data_names: Sequence[str]) -> str:
    """The name of a card with no Hub id: the model (stage or method, backbone, data), not its folder's name."""
    record = run.record
    data = ", ".join(data_names) or "unknown data"
    if run.stage == "pretrain":
        variant = stage1_variants.stage1_variant(record.controls).name
        kind = f"stage 1{STAGE1_TITLES.get(variant, f' ({variant})')}"
        return f"emoreg-hf {kind} · {record.models.get('architecture') or '?'} · {data}"
    models = record.models
    method = registry.method(run.method)
    backbone = (
        models.get("task") or (models.get("task_config") or {}).get("model_type")
        if method is not None and method.uses_task
        else models.get("architecture")
    )
    if backbone and not is_hub_id(
        backbone
    ):  # a local checkpoint: its folder's name, not a path of this machine
        backbone = Path(backbone).name
    return f"{configuration_label(run)} · {backbone or models.get('architecture') or '?'} · {data}"


def affect_variant(record) -> str | None:
    """The stage-1 variant of a stage-2 run's affective pathway, from its control flags (None: the normal one
    or no affective pathway): what its classes are, emotions or a control's own."""
    for control in registry.CONTROLS.values():
        if control.stage1 not in (None, stage1_variants.NORMAL_STAGE1) and record.controls.get(
            control.record_flag
        ):
            return control.stage1
    return None


def class_balance(record) -> dict[str, Any] | None:
    """What the run did about class imbalance, for the card (None: plain loss, shuffled sampling)."""
    balance = record.class_balance
    if not balance:
        return None
    weights = balance.get("loss_weights") or {}
    return {
        "weighting": balance.get("class_weighting"),
        "sampler": balance.get("sampler"),
        "rows": [
            {"name": name, "count": count, "weight": f"{weights[name]:.3f}" if name in weights else "–"}
            for name, count in (balance.get("train_counts") or {}).items()
        ],
    }


def _seed_ranges(seeds: Sequence[int]) -> str:
    """`[0, 1, 2, 4]` -> "0-2, 4"."""
    parts, start = [], None
    for i, seed in enumerate(seeds):
        start = seed if start is None else start
        if i + 1 == len(seeds) or seeds[i + 1] != seed + 1:
            parts.append(str(seed) if start == seed else f"{start}-{seed}")
            start = None
    return ", ".join(parts)


def shared_stage1(runs: Sequence[RunFolder]) -> list[dict[str, Any]] | None:
    """Which trained stage-1 model the seeds of a multi-seed card read, grouped by the affective checkpoint
    as recorded (never published) and named by its stage-1 variant and published folder name
    (`normal/seed0` in a study; a Hub id as it is): `[{"model", "seeds" (as ranges), "n"}]`. Seeds that
    share one stage-1 model spread by stage-2 training alone, which the card must say. None for one run or
    runs without a trained stage 1."""
    groups: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for run in runs:
        shown = run.record.models.get("affect")
        if not shown or run.record.config.get("affect_init") == "random":
            return None
        model = (run.recorded or run.record).models.get("affect_path") or shown
        variant = affect_variant(run.record) or stage1_variants.NORMAL_STAGE1
        names[model] = shown if is_hub_id(shown) else f"{variant}/{Path(shown).name}"
        groups.setdefault(model, []).append(run.record.seed)
    if len(runs) < 2:
        return None
    return [{"model": names[m], "seeds": _seed_ranges(sorted(s)), "n": len(s)} for m, s in groups.items()]


__all__ = [
    "LOCAL_REPO",
    "affect_variant",
    "caps",
    "class_balance",
    "data_report_table",
    "model_title",
    "needs_remote_code",
    "shared_stage1",
]
