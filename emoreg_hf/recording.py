"""What a finished run's record says about it, built by the library from the stage, the recipe arguments,
the model, the splits and the data sources; methods and controls through `registry`. The recipes hand
these over at the end of a run (`run_dir.finish_run`) and hold no record logic of their own; the fields
are documented in docs/run-record.md."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from . import registry
from .configuration_emoreg import emoreg_options
from .data import SourceSpec, is_synthetic
from .models import emotion_labels
from .run_record import DatasetRecord
from .taxonomy import taxonomy_name


def _label_names(model) -> list[str]:
    id2label = model.config.id2label
    return [id2label[i] for i in range(len(id2label))]


def pretrain_fields(
    args, model, splits, data_report: dict[str, Any], *, specs=None, taxonomy: dict | None = None
) -> dict[str, Any]:
    """The stage-1 fields of `RunRecord`: the classes, each source with the rows it gave per split (after
    caps), the backbone, the taxonomy, the stage-1 variant's switches and the data report. `specs` and
    `taxonomy`: what `data.load_stage1_data` read (by default the affective sources and their taxonomy)."""
    from .evaluation import rows_per_source
    from .taxonomy import get_label_space

    if taxonomy is None:
        space = get_label_space(args.taxonomy)
        taxonomy = {"name": space.name, "names": list(space.names)}
    specs = specs if specs is not None else [SourceSpec.from_any(s) for s in args.affective_sources]
    used = rows_per_source(splits, data_report)
    dropped = {name: s.get("rows_dropped") for name, s in data_report["sources"].items()}
    return {
        "stage": "pretrain",
        "label_names": _label_names(model),
        "datasets": [
            DatasetRecord(s.path, s.display_name, used[s.display_name], dropped.get(s.display_name) or {})
            for s in specs
        ],
        "synthetic_data": any(is_synthetic(s) for s in specs),
        "models": {
            "model": args.model_name_or_path,
            "model_config": args.model_config,
            "architecture": model.config.model_type,
        },
        "base_models": [args.model_name_or_path] if args.model_name_or_path else [],
        "taxonomy": taxonomy,
        "controls": registry.stage1_controls(args),
        "data_report": data_report,
    }


def finetune_fields(
    args, model, target: SourceSpec, splits, rows_dropped: dict | None = None
) -> dict[str, Any]:
    """The stage-2 fields of `RunRecord`: the method, the pathways' checkpoints (only those the method
    has), the target data set, the emotion taxonomy and EmoReg's options (regulated methods), and the
    control flags (`registry.control_flags`: from the arguments and the affective checkpoint's variant).
    `rows_dropped`: what loading the target left out, by split and reason (`load_target_dataset`'s)."""
    from .evaluation import rows_per_split

    method = registry.METHODS[args.method]
    task = args.task_model_name_or_path if method.uses_task else None
    affect = args.affect_model_name_or_path if method.uses_affect else None
    # The affective checkpoint's config: inside EmoReg's, or the model itself when it is that checkpoint.
    affect_config = getattr(model.config, "affect_config", model.config) if method.uses_affect else None
    emotions = emotion_labels(model)
    return {
        "stage": "finetune",
        "method": method.name,
        "label_names": _label_names(model),
        "datasets": [
            DatasetRecord(target.path, target.display_name, rows_per_split(splits), rows_dropped or {})
        ],
        "synthetic_data": is_synthetic(target),
        "models": {
            "task": task,
            "task_config": args.task_model_config if method.uses_task else None,
            "affect": affect,
            "affect_path": os.path.abspath(affect) if affect and os.path.isdir(affect) else None,
            "architecture": model.config.model_type,
        },
        "base_models": [m for m in (task, affect) if m],
        "taxonomy": {
            "name": taxonomy_name(getattr(affect_config, "emotion_taxonomy", None)),
            "names": list(emotions),
        }
        if emotions
        else None,
        "emoreg": dataclasses.asdict(emoreg_options(args)) if method.regulated else None,
        "controls": registry.control_flags(vars(args), registry.stage1_variant_of(affect_config)),
    }


__all__ = ["finetune_fields", "pretrain_fields"]
