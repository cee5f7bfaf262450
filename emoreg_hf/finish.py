"""The one hand-over after training: the stage's run-record fields, built by the library from the stage, the
recipe arguments, the model, the splits and the data sources (methods and controls through `registry`), then
`finish_run`: the run record, the model card, the push when asked and the summary line. The recipes hold no
record logic of their own; the fields are documented in docs/run-record.md."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from . import registry, stage1_variants
from .configuration_emoreg import emoreg_options
from .data import SourceSpec, is_synthetic
from .models import emotion_labels
from .run_dir import DATA_REPORT_FILE, run_files
from .run_folder import STARTED_FILE, started_run
from .run_record import RECORD_FILE, DatasetRecord, RunRecord, framework_versions, machine_info, utc_now
from .run_settings import training_arguments, training_summary
from .taxonomy import taxonomy_name

# -- the stage's record fields ---------------------------------------------------------------------------


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
        "controls": stage1_variants.stage1_controls(args),
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
        "controls": registry.control_flags(vars(args), stage1_variants.stage1_variant_of(affect_config)),
    }


# -- the end of a run --------------------------------------------------------------------------------------


def command_line() -> str:
    """How this run was started, for the model card's reproduce section."""
    launcher = (
        "accelerate launch"
        if "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_USE_CPU" in os.environ
        else "python"
    )
    return " ".join([launcher, *map(shlex.quote, sys.argv)])


def started_training_arguments(output_dir: str, training_args) -> dict[str, Any]:
    """The TrainingArguments values the run in `output_dir` was started with (`run_started.json`)."""
    started = started_run(output_dir)
    if started is None:
        return training_arguments(training_args)
    prefix = "training_args."
    return {k.removeprefix(prefix): v for k, v in started["settings"].items() if k.startswith(prefix)}


def run_times(output_dir: str) -> dict[str, Any]:
    """The record's `started` (run_started.json's, kept across resumes; one written before it was UTC holds
    this machine's local time, converted), `finished` (now) and `resumed_from_step`, all UTC ISO."""
    import datetime

    started = started_run(output_dir) or {}
    start = started.get("started")
    if isinstance(start, str) and not start.endswith("Z"):
        with contextlib.suppress(ValueError):
            local = datetime.datetime.strptime(start, "%Y-%m-%d %H:%M:%S").astimezone()
            start = local.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "started": start if isinstance(start, str) and start.endswith("Z") else None,
        "finished": utc_now(),
        "resumed_from_step": started.get("resumed_from_step"),
    }


def finish_run(
    training_args,
    script_args,
    *,
    config_path: str | None,
    image_size,
    results: dict,
    files: dict[str, str],
    push,
    headline: str,
    **record_fields,
) -> RunRecord:
    """Main process, after training: the run record (`run_info.json`: what the card, the export and the
    ablation report read, and every file this run wrote), the model card, the push if asked, and one summary
    line with the `headline` metric. `record_fields` are the stage's own `RunRecord` fields (stage, label
    names, data, models, ...)."""
    from . import __version__
    from .publish import load_run_folder, push_from_training_args, write_model_card

    output_dir = training_args.output_dir
    files = dict(files)
    if record_fields.get("data_report") is not None:  # stage 1's per-source counts, also as a file of its own
        Path(output_dir, DATA_REPORT_FILE).write_text(json.dumps(record_fields["data_report"], indent=2))
        files["data_report"] = DATA_REPORT_FILE
    record = RunRecord(
        seed=training_args.seed,
        command=command_line(),
        config=vars(script_args),
        config_file=config_path,
        hyperparameters=training_summary(training_args, image_size),
        training_arguments=started_training_arguments(output_dir, training_args),
        results=results,
        files=files,
        emoreg_hf_version=__version__,
        framework_versions=framework_versions(),
        machine=machine_info(world_size=getattr(training_args, "world_size", None)),
        **run_times(output_dir),
        **record_fields,
    )
    record.write(output_dir)
    run = load_run_folder(output_dir)  # read once, for the card and the push
    write_model_card(run, repo_id=training_args.hub_model_id)
    record.outputs = sorted({*(n for n in run_files(output_dir) if n != STARTED_FILE), RECORD_FILE})
    record.write(output_dir)
    for recorded in (run.record, run.recorded):
        if recorded is not None:
            recorded.outputs = list(record.outputs)
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(output_dir, STARTED_FILE))
    if push:  # the HubTarget checked before training (or True)
        push_from_training_args(run, training_args, None if push is True else push)
    if headline in results:
        print(f"{headline}={results[headline]:.4f} -> {os.path.abspath(output_dir)}")
    else:  # e.g. a target without a test split: say so, with the figure there is
        split = headline.split("_")[0]
        print(
            f"no {split} split, so no {headline}; eval_accuracy={results.get('eval_accuracy', float('nan')):.4f} "
            f"(validation) -> {os.path.abspath(output_dir)}"
        )
    return record
