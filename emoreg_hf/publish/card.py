"""The model card: its context, built from run folders' records, rendered from the shipped templates with
`huggingface_hub.ModelCard`. Everything a card says is read from the run folders, so a number on a Hub
page is never typed in by hand. The context holds values only (numbers, names, flags); every sentence the
card says is written in its template."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .. import registry, stage1_variants, stats
from ..taxonomy import taxonomy_name
from ..templates import read_template
from .facts import (
    LOCAL_REPO,
    affect_variant,
    caps,
    class_balance,
    data_report_table,
    model_title,
    needs_remote_code,
    shared_stage1,
)
from .licenses import check_license
from .plots import make_plots
from .results import (
    SPLITS,
    averaging,
    comparisons,
    eval_results,
    fmt,
    regulation_tables,
    reported_metrics,
    results_table,
    seed_statistics,
)
from .runs import PathLike, RunDirs, RunFolder, as_run_folders, check_card_runs, stage1_run
from .scrub import is_hub_id

CARD_NAME = "README.md"
TEMPLATES = {"pretrain": "affect_card.md", "finetune": "emoreg_card.md"}
# Readable names for the data sets the presets load; a card never shows a bare id where a name is known.
DATASET_NAMES = {
    "uoft-cs/cifar10": "CIFAR-10",
    "uoft-cs/cifar100": "CIFAR-100",
    "demo:synthetic-target": "emoreg-hf synthetic shapes (demo target set)",
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


# The reasons a load left rows out (`DatasetRecord.rows_dropped`), in the card's words.
DROPPED_ROWS = {
    "class_not_in_train": "of a class no training row has (drop_unseen_classes)",
    "ferplus_no_image": "without a FER+ image name (faces FER+ left out)",
    "ferplus_not_face": "voted not a face by FER+'s annotators",
    "ferplus_unknown": "with no emotion from FER+'s votes under its label mode (unknown, or no agreement)",
    "no_label": "without a label (drop_unlabeled)",
    "unmapped_label": "with a label outside the label mapping (drop_unmapped)",
    "unreadable_image": "with an unreadable image (on_bad_image: skip)",
}


def _datasets(run: RunFolder) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "name": DATASET_NAMES.get(d.id) or d.name,
            "split_sizes": d.split_sizes,
            "rows_dropped": "; ".join(
                f"{n} {split} row(s) {DROPPED_ROWS.get(why, why)}"
                for split, reasons in d.rows_dropped.items()
                for why, n in reasons.items()
            ),
        }
        for d in run.record.datasets
    ]


def _evaluated_dataset(run: RunFolder) -> dict[str, str]:
    """The data set the reported metrics are measured on (the target set; the mixture for stage 1)."""
    datasets = _datasets(run)
    if run.stage == "pretrain" and len(datasets) > 1:
        hub_ids = [d["id"] for d in datasets if is_hub_id(d["id"])]
        return {
            "id": hub_ids[0] if len(hub_ids) == 1 else "affective-mixture",
            "name": "Affective mixture: " + ", ".join(d["name"] for d in datasets),
        }
    if datasets:
        return {"id": datasets[0]["id"], "name": datasets[0]["name"]}
    return {"id": "unknown", "name": "unknown"}


def _label_mappings(run: RunFolder) -> list[dict[str, Any]]:
    sources = (run.record.data_report or {}).get("sources") or {}
    return [
        {"source": name, "pairs": list(s["mapping"].items())}
        for name, s in sources.items()
        if isinstance(s.get("mapping"), dict)
    ]


def _backbones(run: RunFolder, stage1: RunFolder | None) -> dict[str, dict[str, Any]]:
    """How the card names the two pathways (the template words it): a Hub id, a local folder, a from-scratch
    architecture, or a randomly initialised affective backbone."""
    models, method = run.record.models, registry.method(run.method)
    task, affect = models.get("task"), models.get("affect")
    return {
        "task": {
            "id": task,
            "hub": bool(task) and is_hub_id(task),
            "architecture": (models.get("task_config") or {}).get("model_type", "task"),
        },
        "affect": {
            "id": affect,
            "hub": bool(affect) and is_hub_id(affect),
            "random": run.record.config.get("affect_init") == "random",
            "inside": method is not None and method.regulated,  # its weights are part of this model
            "synthetic_stage1": stage1 is not None and stage1.record.synthetic_data,
        },
    }


def _tags(run: RunFolder) -> list[str]:
    record, method = run.record, registry.method(run.method)
    tags = ["image-classification", "emoreg", "emotional-regulation", "affective-computing"]
    if run.stage == "pretrain":
        tags.append("emotion-recognition")
    if method is not None:
        tags += [*method.tags, f"method-{method.name}"]
    if record.emoreg and method is not None and method.regulated:
        tags.append(f"regulation-{record.emoreg['regulation']}")
    if record.synthetic_data:
        tags.append("synthetic-data")
    if any(record.controls.values()):
        tags.append("control")
    return tags


def _method_flags(method: registry.Method | None) -> dict[str, Any] | None:
    """What the stage-2 template branches on: the method's flags, never its name."""
    if method is None:
        return None
    return {
        "name": method.name,
        "description": method.description,
        "regulated": method.regulated,
        "uses_task": method.uses_task,
        "uses_affect": method.uses_affect,
    }


def _regulation_formula(emoreg: dict[str, Any] | None) -> str:
    """The card's formula of ρ, from the regulation mode's own declaration (an unknown mode is an error)."""
    from ..regulation_emoreg import REGULATIONS

    mode = (emoreg or {}).get("regulation")
    if mode not in REGULATIONS:
        raise ValueError(
            f"the run record names regulation mode {mode!r}, which this emoreg-hf does not know "
            f"(known: {', '.join(REGULATIONS)}); upgrade emoreg-hf to render its card"
        )
    return REGULATIONS[mode].card_formula(shown(emoreg.get("rho_init")))


# Licences of training data this toolkit knows: its own synthetic demo data is the project's (Apache-2.0).
DATA_LICENSES = {"demo:": "apache-2.0"}
FRAMEWORK_NAMES = {
    "python": "Python",
    "torch": "PyTorch",
    "transformers": "Transformers",
    "datasets": "Datasets",
    "accelerate": "Accelerate",
    "timm": "timm",
    "huggingface_hub": "huggingface_hub",
    "evaluate": "Evaluate",
    "numpy": "NumPy",
}


def _data_license(record) -> str | None:
    licences = {
        next((lic for prefix, lic in DATA_LICENSES.items() if d.id.startswith(prefix)), None)
        for d in record.datasets
    }
    return licences.pop() if len(licences) == 1 else None


def card_license(run: RunFolder, stage1: RunFolder | None, given: str | None) -> dict[str, Any]:
    """The card's licence: `given` (`--license`), else the training data's when every source's is known
    (the affective pathway's data counts too), else `other`, and `unknown` names the data behind that."""
    records = [run.record, *([stage1.record] if stage1 else [])]
    if given:
        check_license(given)
        return {"id": given, "given": True, "unknown": []}
    known = {_data_license(r) for r in records}
    if len(known) == 1 and None not in known:
        return {"id": known.pop(), "given": False, "unknown": []}
    unknown = [d.name or d.id for r in records for d in r.datasets if _data_license(r) is None]
    return {"id": "other", "given": False, "unknown": list(dict.fromkeys(unknown))}


def _taxonomy(taxonomy: dict | None) -> dict[str, Any]:
    """The record's emotion taxonomy, its name a name (records of 2026-11-30 and before nest the whole
    `{"name", "names"}` of the stage-1 config as the name)."""
    return {**taxonomy, "name": taxonomy_name(taxonomy.get("name"))} if taxonomy else {}


def shown(value: Any) -> Any:
    """A float as a card shows it, to 6 significant digits (0.8999999999999999 -> 0.9); the model-index
    metadata keeps exact values. Anything else as it is."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _frameworks(record) -> list[dict[str, str]]:
    versions = record.framework_versions or {}
    return [{"name": FRAMEWORK_NAMES.get(k, k), "version": v} for k, v in versions.items()]


def per_class_recall(run: RunFolder) -> dict[str, Any] | None:
    """Recall (the accuracy within each true class) on the split the run's predictions file holds."""
    predictions = run.predictions
    if not predictions or not predictions.get("labels"):
        return None
    names = predictions.get("label_names") or run.record.label_names
    rows = []
    for index, name in enumerate(names):
        hits = [
            p == index
            for label, p in zip(predictions["labels"], predictions["predictions"])
            if label == index
        ]
        rows.append({"name": name, "n": len(hits), "recall": f"{sum(hits) / len(hits):.3f}" if hits else "–"})
    return {"split": predictions.get("split", "validation"), "rows": rows}


def card_context(
    runs: list[RunFolder],
    *,
    repo_id: str | None,
    plots: dict[str, str] | None = None,
    compare_dirs: Sequence[PathLike | RunFolder] = (),
    space_id: str | None = None,
    license: str | None = None,
) -> tuple[ModelCardData, dict[str, Any]]:
    """The card's metadata and the template's variables (values only), from run folders of one
    configuration; `repo_id` None: a run folder's own card (titled after its model, loading a placeholder
    path); `compare_dirs` are other configurations' folders (or folders already read); `license`
    overrides the one the training data implies (`card_license`)."""
    compare = as_run_folders(compare_dirs) if compare_dirs else []
    run, record = runs[0], runs[0].record
    method = registry.method(run.method)
    local = repo_id is None
    model_name = (
        model_title(run, [d["name"] or d["id"] for d in _datasets(run)]) if local else repo_id.split("/")[-1]
    )
    repo_id = LOCAL_REPO if local else repo_id
    statistics = seed_statistics(runs)
    metrics = reported_metrics(run)
    datasets = _datasets(run)
    hub_base_models = [m for m in record.base_models if is_hub_id(m)]
    uses_stage1 = method is not None and method.uses_affect
    stage1 = stage1_run(run) if uses_stage1 and record.config.get("affect_init") != "random" else None
    licence = card_license(run, stage1, license)
    card_data = ModelCardData(
        license=licence["id"],
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=_tags(run),
        datasets=[d["id"] for d in datasets if is_hub_id(d["id"])] or None,
        base_model=hub_base_models or None,
        # Two base models would read as a merge on the Hub; both pathways are fine-tuned from / built on them.
        base_model_relation="finetune" if hub_base_models else None,
        metrics=[m for m in metrics if any(f"{p}_{m}" in statistics for p in SPLITS)] or None,
        model_name=model_name,
        eval_results=eval_results(runs, _evaluated_dataset(run)) or None,
    )
    context = {
        "repo_id": repo_id,
        "local": local,
        "remote_code": needs_remote_code(run),
        "space_id": space_id,
        "model_name": model_name,
        "stage": run.stage,
        "method": _method_flags(method),
        "config": record.config,
        "emoreg": {k: shown(v) for k, v in (record.emoreg or {}).items()},
        "license": licence,
        "frameworks": _frameworks(record),
        "emoreg_hf_version": record.emoreg_hf_version,
        "when_and_where": {
            k: getattr(record, k) for k in ("started", "finished", "resumed_from_step", "machine")
        },
        "regulation_formula": _regulation_formula(record.emoreg) if method and method.regulated else None,
        "affect_variant": affect_variant(record) if run.stage == "finetune" else None,
        "stage1_variant": dataclasses.asdict(stage1_variants.stage1_variant(record.controls))
        if run.stage == "pretrain"
        else None,
        "training": {
            k: shown(v)
            for k, v in record.hyperparameters.items()
            if v is not None and not (k == "max_steps" and isinstance(v, int) and v <= 0)
        },
        "datasets": datasets,
        "label_mappings": _label_mappings(run),
        "backbones": _backbones(run, stage1),
        "architecture": record.models.get("architecture"),
        "stage1": {"path": record.models.get("affect"), "command": stage1.reproduce_command}
        if stage1
        else None,
        "taxonomy": _taxonomy(record.taxonomy),
        "label_names": record.label_names,
        "data_report": data_report_table(record.data_report, record.label_names),
        "kmeans_labels": (record.data_report or {}).get("kmeans_labels"),
        "data_report_json": json.dumps(record.data_report, indent=1) if record.data_report else None,
        "controls": {k: v for k, v in record.controls.items() if v},
        "synthetic_data": record.synthetic_data,
        "caps": caps(run),
        "class_balance": class_balance(record),
        "per_class": per_class_recall(run) if run.stage == "pretrain" else None,
        "results": results_table(statistics, metrics),
        "averaging": averaging(record.config),
        "regulation": regulation_tables(statistics),
        "n_runs": len(runs),
        "seeds": [r.record.seed for r in runs],
        "shared_stage1": shared_stage1(runs) if uses_stage1 else None,
        "comparisons": comparisons(runs, compare),
        "confidence_level": int(round(100 * stats.CONFIDENCE)),
        "plots": plots or {},
        "command": run.reproduce_command,
        "train_loss": fmt(statistics.get("train_loss")),
        "train_loss_from_step": record.results.get("train_loss_from_step"),  # a run resumed from elsewhere
        "epochs": fmt(statistics.get("epoch"), 2),
        "citation": CITATION,
    }
    return card_data, context


def build_model_card(
    run_dirs: RunDirs | Sequence[RunFolder],
    *,
    repo_id: str | None = None,
    plots: dict[str, str] | None = None,
    compare_dirs: Sequence[PathLike | RunFolder] = (),
    space_id: str | None = None,
    license: str | None = None,
) -> ModelCard:
    """Render the stage's template from the run folders (several folders = seeds of one configuration);
    paths are read once here, folders already read are used as they are."""
    runs = as_run_folders(run_dirs)
    compare = as_run_folders(compare_dirs) if compare_dirs else []
    check_card_runs(runs, compare)
    card_data, context = card_context(
        runs, repo_id=repo_id, plots=plots, compare_dirs=compare, space_id=space_id, license=license
    )
    return ModelCard.from_template(card_data, template_str=read_template(TEMPLATES[runs[0].stage]), **context)


def write_model_card(
    run_dirs: RunDirs | Sequence[RunFolder],
    output_dir: PathLike | None = None,
    *,
    repo_id: str | None = None,
    compare_dirs: Sequence[PathLike | RunFolder] = (),
    space_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Write README.md and its plots into `output_dir` (default: the first run folder); returns README's path.
    Each folder is read once and handed to the plots and the card."""
    runs = as_run_folders(run_dirs)
    compare = as_run_folders(compare_dirs) if compare_dirs else []
    output_dir = Path(output_dir or runs[0].path)
    plots = make_plots(runs[0], output_dir)
    card = build_model_card(
        runs, repo_id=repo_id, plots=plots, compare_dirs=compare, space_id=space_id, license=license
    )
    card.save(output_dir / CARD_NAME)
    return output_dir / CARD_NAME
