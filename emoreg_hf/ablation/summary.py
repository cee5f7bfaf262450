"""The study's numbers, as `results.json` keeps them, from its `records/` alone: statistics per method over
seeds (`emoreg_hf.stats`), paired differences to the baseline and to each method's control, the smallest
difference the design can detect, stage 1's checks and the pre-registered analysis."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import registry, stage1_variants, stats
from ..metrics import MECHANISM_NAMES, METRIC_NAMES
from ..run_record import RECORD_FILE, RunRecord, load_run_record
from .records import RECORDS, load_study


def collect_records(
    output_dir: str | Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    stage1_seeds: Sequence[int] | None = None,
) -> dict:
    """`{"finetune": {method: {seed: RunRecord}}, "pretrain": {variant: {seed: RunRecord}}}` of finished runs
    (stage 1 over `stage1_seeds` when it was trained for fewer seeds), from the study's `records/` (what
    the runner copied of each run)."""
    root = Path(output_dir) / RECORDS
    found: dict[str, dict[str, dict[int, RunRecord]]] = {"finetune": {}, "pretrain": {}}
    for stage, names, stage_seeds in (
        ("finetune", methods, seeds),
        ("pretrain", list(stage1_variants.STAGE1_VARIANTS), seeds if stage1_seeds is None else stage1_seeds),
    ):
        for name in names:
            for seed in stage_seeds:
                folder = root / stage / name / f"seed{seed}"
                if (folder / RECORD_FILE).is_file():
                    found[stage].setdefault(name, {})[seed] = load_run_record(folder)
    return found


def summarize(
    records: dict[str, dict[int, dict]],
    *,
    baseline: str = registry.REFERENCE_ARM,
    pairs: Sequence[tuple[str, str]] | None = None,
    split: str | None = None,
    confidence: float = stats.CONFIDENCE,
) -> dict:
    """Statistics per method over seeds, paired differences to `baseline` (with the smallest difference
    the design detects at 80% power), and each (method, control) pair of `pairs` that ran (by default
    every control of the registry with the arm it pairs with).

    `records`: `{method: {seed: all_results}}`. `split`: `test` (default when present) or `eval`.
    """
    if split is None:
        has_test = any("test_accuracy" in r for runs in records.values() for r in runs.values())
        split = "test" if has_test else "eval"

    def series(method: str, key: str) -> dict[int, float]:
        return {
            s: float(r[key])
            for s, r in records.get(method, {}).items()
            if r.get(key) is not None and math.isfinite(float(r[key]))
        }

    def described(method: str, key: str) -> dict | None:
        values = series(method, key)
        return stats.describe(list(values.values()), confidence) if values else None

    pairs = registry.control_pairs() if pairs is None else pairs
    methods: dict[str, Any] = {}
    for method, runs in records.items():
        if not runs:
            continue
        entry: dict[str, Any] = {
            "description": registry.MATRIX[method].description if method in registry.MATRIX else method,
            "seeds": sorted(runs),
            "n": len(runs),
            "metrics": {},
        }
        for metric in METRIC_NAMES:
            values = series(method, f"{split}_{metric}")
            if values:
                entry["metrics"][metric] = stats.describe(list(values.values()), confidence)
                entry["metrics"][metric]["values"] = {str(s): v for s, v in sorted(values.items())}
        entry["validation_accuracy"] = described(method, "eval_accuracy")
        entry["rho_mean"] = described(method, f"{split}_rho_mean")
        entry["reliance_permuted"] = described(method, f"{split}_reliance_permuted")
        entry["reliance_mean"] = described(method, f"{split}_reliance_mean")
        for (
            key
        ) in MECHANISM_NAMES:  # absent from records evaluated before them: left out, results.json unchanged
            if (mechanism := described(method, f"{split}_{key}")) is not None:
                entry[key] = mechanism
        entry["train_runtime"] = described(method, "train_runtime")
        entry["train_samples_per_second"] = described(method, "train_samples_per_second")
        if method != baseline and baseline in records:
            difference = stats.paired_difference(
                series(method, f"{split}_accuracy"), series(baseline, f"{split}_accuracy"), confidence
            )
            if difference["std"]:
                difference["detectable_at_80_power"] = stats.minimum_detectable_difference(
                    difference["std"], difference["n"], confidence=confidence
                )
            entry["vs_baseline"] = difference
        methods[method] = entry
    comparisons = []
    for reference, control in pairs:
        if reference in records and control in records:
            difference = stats.paired_difference(
                series(reference, f"{split}_accuracy"), series(control, f"{split}_accuracy"), confidence
            )
            comparisons.append({"method": reference, "versus": control, **difference})
    return {
        "split": split,
        "confidence": confidence,
        "baseline": baseline if baseline in records else None,
        "methods": methods,
        "comparisons": comparisons,
    }


def _images(record: RunRecord) -> dict[str, int]:
    """Images per split a run used (summed over its data sets)."""
    sizes: dict[str, int] = {}
    for dataset in record.datasets:
        for split, n in dataset.split_sizes.items():
            sizes[split] = sizes.get(split, 0) + int(n)
    return sizes


def _provenance(collected: dict, registered: str | None) -> dict | None:
    """When the plan was registered, the first run's start, the last run's end and the machines the runs
    used (cpu model / GPU / instruction set, with how many runs each), from records that hold them; None
    when none does (records written before they were recorded)."""
    records = [r for stage in collected.values() for runs in stage.values() for r in runs.values()]
    starts = sorted(r.started for r in records if r.started)
    ends = sorted(r.finished for r in records if r.finished)
    machines: dict[tuple, int] = {}
    for record in records:
        if record.machine:
            key = tuple(record.machine.get(k) for k in ("cpu_model", "gpu", "cpu_capability"))
            machines[key] = machines.get(key, 0) + 1
    if not (starts or ends or machines):
        return None
    return {
        "plan_registered": registered,
        "first_started": starts[0] if starts else None,
        "last_finished": ends[-1] if ends else None,
        "machines": [
            {"cpu_model": cpu, "gpu": gpu, "cpu_capability": capability, "runs": n}
            for (cpu, gpu, capability), n in sorted(machines.items(), key=lambda item: -item[1])
        ],
    }


def _scope(config, finetune: dict[str, dict[int, RunRecord]], primary: Sequence[str]) -> dict[str, Any]:
    """What a conclusion of the study holds for: its stage-1 models per arm, its stage-2 seeds (and how many
    share one stage-1 model) and the stage-2 schedule its primary arms' records ran (epochs, when one)."""
    models = len(config.stage1_seeds) if config.stage1_seeds is not None else len(config.seeds)
    epochs = {
        r.hyperparameters.get("num_train_epochs") for m in primary for r in finetune.get(m, {}).values()
    }
    return {
        "stage1_models_per_arm": models,
        "stage2_seeds": len(config.seeds),
        "stage2_seeds_per_model": len(config.seeds) // models if config.stage1_seeds is not None else 1,
        "stage2_epochs": epochs.pop() if len(epochs) == 1 else None,
    }


def summarize_study(study_dir: str | Path) -> dict:
    """The numbers of the study in `study_dir` from its `records/` alone (the run folders are not read):
    `summarize` over its methods and seeds, the images per run and stage, stage 1's accuracies and checks,
    the pre-registered analysis (when the study declares one), and the study itself (title, notes, data,
    the command that ran it), as `results.json` keeps them."""
    from . import analysis, replicates

    config, command = load_study(study_dir)
    root = Path(study_dir)
    collected = collect_records(root, config.methods, config.seeds, config.stage1_seeds)
    finetune = {m: collected["finetune"][m] for m in config.methods if m in collected["finetune"]}
    summary = summarize({m: {s: r.results for s, r in runs.items()} for m, runs in finetune.items()})
    summary["seeds"] = config.seeds
    summary["stage1_seeds"] = config.stage1_seeds
    summary["images"] = {
        stage: {
            name: {str(s): _images(r) for s, r in runs.items()} for name, runs in collected[stage].items()
        }
        for stage in ("pretrain", "finetune")
    }
    summary["stage1"] = {
        variant: {
            str(s): {k: r.results.get(k) for k in ("eval_accuracy", "test_accuracy", "train_runtime")}
            for s, r in runs.items()
        }
        for variant, runs in collected["pretrain"].items()
    }
    stage1_results = {v: {s: r.results for s, r in runs.items()} for v, runs in collected["pretrain"].items()}
    summary["stage1_checks"] = analysis.stage1_checks(stage1_results)
    plan_file = root / RECORDS / analysis.PLAN_FILE
    registered = json.loads(plan_file.read_text()) if plan_file.is_file() else None
    if config.analysis is not None:
        nested = config.analysis.get("unit") == "stage1_model"
        summary["analysis"] = analysis.analyse(
            {m: {s: r.results for s, r in runs.items()} for m, runs in finetune.items()},
            config.analysis,
            split=summary["split"],
            planned_seeds=len(config.stage1_seeds if nested else config.seeds),  # the unit's count
            stage1=stage1_results,
            stage1_of={m: registry.MATRIX[m].stage1 for m in config.methods},
            registered=registered,
            groups=replicates.stage1_groups(config.seeds, config.stage1_seeds) if nested else None,
            scope=_scope(config, finetune, config.analysis["primary"]),
        )
    provenance = _provenance(collected, (registered or {}).get("registered_at"))
    if provenance is not None:  # studies whose records predate these fields keep their results.json
        summary["provenance"] = provenance
    summary["study"] = {
        "title": config.title,
        "notes": config.notes.strip(),
        "data": {
            "affective_sources": config.pretrain.get("affective_sources"),
            "taxonomy": config.pretrain.get("taxonomy"),
            "dataset": config.finetune.get("dataset"),
        },
        "command": command,
    }
    return summary
