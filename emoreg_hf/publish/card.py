"""The model card: its context, built from run folders' records, rendered from the shipped templates with
`huggingface_hub.ModelCard`. Everything a card says is read from the run folders, so a number on a Hub
page is never typed in by hand."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .. import registry
from ..run_record import load_run_record
from ..templates import read_template
from .plots import make_plots
from .results import (
    SPLITS,
    comparisons,
    eval_results,
    fmt,
    regulation_tables,
    reported_metrics,
    results_table,
    seed_statistics,
)
from .runs import PathLike, RunDirs, RunFolder, as_paths, check_same_configuration, load_run_folder
from .scrub import is_hub_id, local_roots

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


def _datasets(run: RunFolder) -> list[dict[str, Any]]:
    return [
        {"id": d.id, "name": DATASET_NAMES.get(d.id) or d.name, "split_sizes": d.split_sizes}
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


def data_report_table(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """Stage 1's per-source, per-class training counts as a table (classes x sources)."""
    sources = (report or {}).get("sources") or {}
    counts = {name: (s.get("class_counts") or {}).get("train") for name, s in sources.items()}
    if not counts or not all(isinstance(c, dict) and c for c in counts.values()):
        return None
    classes = list(dict.fromkeys(c for inner in counts.values() for c in inner))
    names = list(counts)
    rows = [{"name": c, "values": [counts[s].get(c, 0) for s in names]} for c in classes]
    for row in rows:
        row["total"] = sum(row["values"])
    totals = [sum(counts[s].values()) for s in names]
    return {"sources": names, "rows": rows, "totals": totals, "total": sum(totals)}


def _label_mappings(run: RunFolder) -> list[dict[str, Any]]:
    sources = (run.record.data_report or {}).get("sources") or {}
    return [
        {"source": name, "pairs": list(s["mapping"].items())}
        for name, s in sources.items()
        if isinstance(s.get("mapping"), dict)
    ]


def _stage1_run(run: RunFolder) -> RunFolder | None:
    """The run folder of a local affective checkpoint (for its provenance and reproduce command), if found."""
    raw = load_run_record(run.path).models  # unscrubbed: the local path as recorded
    path = raw.get("affect_path")
    if not path or is_hub_id(raw.get("affect")):
        return None
    candidates = [Path(path)] + [root / raw.get("affect", "") for root in local_roots()]
    for candidate in candidates:
        if (candidate / "run_info.json").is_file() and (candidate / "all_results.json").is_file():
            return load_run_folder(candidate)
    return None


def _hub_link(name: str) -> str:
    return f"[`{name}`](https://huggingface.co/{name})"


def _backbones(run: RunFolder, stage1: RunFolder | None) -> dict[str, str]:
    """How the card names the two pathways: a Hub link, a local folder, or a from-scratch architecture."""
    models = run.record.models
    task = models.get("task")
    if task:
        task_text = _hub_link(task) if is_hub_id(task) else f"the local checkpoint `{task}`"
    else:
        arch = (models.get("task_config") or {}).get("model_type", "task")
        task_text = f"a `{arch}` backbone trained from scratch (built from its config, no pretraining)"
    affect = models.get("affect")
    if run.record.controls.get("no_pretraining"):
        affect_text = "a randomly initialised affective backbone (no-pretraining control)"
    elif affect and is_hub_id(affect):
        affect_text = _hub_link(affect)
    elif affect:
        affect_text = f"the stage-1 checkpoint from the local folder `{affect}` (not on the Hub"
        regulated = registry.METHODS[run.method].regulated  # the pathway is kept inside the model
        affect_text += "; its weights are part of this repository)" if regulated else ")"
        if stage1 is not None and stage1.record.synthetic_data:
            affect_text += ", itself trained on synthetic demo stimuli"
    else:
        affect_text = "an affective backbone"
    return {"task": task_text, "affect": affect_text}


def _caps(run: RunFolder) -> str | None:
    """A sentence when the run trained or evaluated on a subsample (`--max_train_samples` and the like)."""
    config = run.record.config
    parts = []
    if config.get("max_train_samples") is not None:
        used = run.results.get("train_samples", config["max_train_samples"])
        parts.append(
            f"training used a class-stratified sample of {used} images (`--max_train_samples {config['max_train_samples']}`)"
        )
    if config.get("max_eval_samples") is not None:
        parts.append(
            f"each evaluation split was capped at {config['max_eval_samples']} images (`--max_eval_samples`)"
        )
    return ("Subsampled run: " + "; ".join(parts) + ".") if parts else None


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
    from ..modeling_emoreg import REGULATIONS

    mode = (emoreg or {}).get("regulation")
    if mode not in REGULATIONS:
        raise ValueError(
            f"the run record names regulation mode {mode!r}, which this emoreg-hf does not know "
            f"(known: {', '.join(REGULATIONS)}); upgrade emoreg-hf to render its card"
        )
    return REGULATIONS[mode].card_formula(emoreg.get("rho_init"))


def card_context(
    runs: list[RunFolder],
    *,
    repo_id: str,
    plots: dict[str, str] | None = None,
    compare_dirs: Sequence[PathLike] = (),
    space_id: str | None = None,
) -> tuple[ModelCardData, dict[str, Any]]:
    """The card's metadata and the template's variables, from run folders of one configuration."""
    run, record = runs[0], runs[0].record
    method = registry.method(run.method)
    model_name = repo_id.split("/")[-1]
    statistics = seed_statistics(runs)
    metrics = reported_metrics(run)
    datasets = _datasets(run)
    hub_base_models = [m for m in record.base_models if is_hub_id(m)]
    uses_stage1 = method is not None and method.uses_affect
    stage1 = _stage1_run(run) if uses_stage1 and not record.controls.get("no_pretraining") else None
    card_data = ModelCardData(
        license="apache-2.0",
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
        "space_id": space_id,
        "model_name": model_name,
        "stage": run.stage,
        "method": _method_flags(method),
        "config": record.config,
        "emoreg": record.emoreg or {},
        "regulation_formula": _regulation_formula(record.emoreg) if method and method.regulated else None,
        "stage1_variant": dataclasses.asdict(registry.stage1_variant(record.controls))
        if run.stage == "pretrain"
        else None,
        "training": {
            k: v
            for k, v in record.hyperparameters.items()
            if v is not None and not (k == "max_steps" and isinstance(v, int) and v <= 0)
        },
        "datasets": datasets,
        "label_mappings": _label_mappings(run),
        "backbones": _backbones(run, stage1),
        "architecture": record.models.get("architecture"),
        "stage1": {"path": record.models.get("affect"), "command": stage1.record.command} if stage1 else None,
        "taxonomy": record.taxonomy or {},
        "label_names": record.label_names,
        "data_report": data_report_table(record.data_report),
        "data_report_json": json.dumps(record.data_report, indent=1) if record.data_report else None,
        "controls": {k: v for k, v in record.controls.items() if v},
        "synthetic_data": record.synthetic_data,
        "caps": _caps(run),
        "results": results_table(statistics, metrics),
        "regulation": regulation_tables(statistics),
        "n_runs": len(runs),
        "seeds": [r.record.seed for r in runs],
        "comparisons": comparisons(runs, compare_dirs),
        "plots": plots or {},
        "command": record.command,
        "train_loss": fmt(statistics.get("train_loss")),
        "train_loss_label": (
            f"mean training loss from step {record.results['train_loss_from_step']} (resumed run)"
            if "train_loss_from_step" in record.results
            else "mean training loss over the run"
        ),
        "epochs": fmt(statistics.get("epoch"), 2),
        "citation": CITATION,
    }
    return card_data, context


def build_model_card(
    run_dirs: RunDirs,
    *,
    repo_id: str | None = None,
    plots: dict[str, str] | None = None,
    compare_dirs: Sequence[PathLike] = (),
    space_id: str | None = None,
) -> ModelCard:
    """Render the stage's template from the run folders (several folders = seeds of one configuration)."""
    runs = [load_run_folder(d) for d in as_paths(run_dirs)]
    check_same_configuration(runs)
    repo_id = repo_id or f"your-org/{runs[0].path.resolve().name}"
    card_data, context = card_context(
        runs, repo_id=repo_id, plots=plots, compare_dirs=compare_dirs, space_id=space_id
    )
    return ModelCard.from_template(card_data, template_str=read_template(TEMPLATES[runs[0].stage]), **context)


def write_model_card(
    run_dirs: RunDirs,
    output_dir: PathLike | None = None,
    *,
    repo_id: str | None = None,
    compare_dirs: Sequence[PathLike] = (),
    space_id: str | None = None,
) -> Path:
    """Write README.md and its plots into `output_dir` (default: the first run folder); returns README's path."""
    dirs = as_paths(run_dirs)
    output_dir = Path(output_dir or dirs[0])
    plots = make_plots(dirs[0], output_dir)
    card = build_model_card(dirs, repo_id=repo_id, plots=plots, compare_dirs=compare_dirs, space_id=space_id)
    card.save(output_dir / CARD_NAME)
    return output_dir / CARD_NAME
