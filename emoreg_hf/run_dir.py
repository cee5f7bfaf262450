"""The run folder's lifecycle: resume or start fresh, clear an earlier run's outputs on overwrite, and, at
the end, write the run record, the model card and the summary line (and push when asked).

A run folder holds its own run only: overwriting removes every file an earlier run of the recipes wrote
(weights, results, predictions, card, plots, checkpoints, traces) before anything new is written, so a
card or an export can never mix two runs.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

from transformers.trainer_utils import get_last_checkpoint

from .run_record import RECORD_FILE, RunRecord

logger = logging.getLogger(__name__)

# Everything the recipes (and Trainer) write into an output_dir; a user's own files there are never touched.
RUN_OUTPUTS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "configuration_emoreg.py",
    "modeling_emoreg.py",
    "backbones.py",
    "pipeline_emoreg.py",
    "training_args.bin",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "trainer_state.json",
    "predictions_*.json",
    "data_report.json",
    RECORD_FILE,
    "README.md",
    "plots",
    "runs",
    "checkpoint-*",
)


def resume_checkpoint(output_dir: str, *, resume_from_checkpoint: str | None, overwrite: bool) -> str | None:
    """The checkpoint to resume from, or None for a fresh run.

    An explicit `resume_from_checkpoint` path wins; otherwise the last `checkpoint-*` in `output_dir` is
    resumed. A non-empty `output_dir` without one is refused (it may hold a finished model) unless `overwrite`.
    """
    if resume_from_checkpoint and str(resume_from_checkpoint).lower() != "true":
        if not os.path.isdir(resume_from_checkpoint):
            raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder")
        return resume_from_checkpoint
    if overwrite or not os.path.isdir(output_dir):
        return None
    last = get_last_checkpoint(output_dir)
    if last is not None:
        logger.info("Resuming from %s", last)
        return last
    if os.listdir(output_dir):
        raise ValueError(
            f"output_dir {output_dir!r} is not empty and holds no checkpoint to resume from; "
            "pass --overwrite_output_dir true to replace its contents, or choose another output_dir"
        )
    return None


def clear_run_outputs(output_dir: str | os.PathLike) -> list[str]:
    """Remove what an earlier run wrote into `output_dir` (see `RUN_OUTPUTS`); returns the removed names."""
    folder = Path(output_dir)
    removed = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in RUN_OUTPUTS):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(path.name)
    return removed


def prepare_output_dir(training_args, *, overwrite: bool) -> str | None:
    """Decide resume vs fresh start before any work. With `overwrite`, the earlier run's outputs (its
    checkpoints included, so they cannot be resumed later by mistake) are removed first."""
    checkpoint = resume_checkpoint(
        training_args.output_dir,
        resume_from_checkpoint=training_args.resume_from_checkpoint,
        overwrite=overwrite,
    )
    if overwrite and training_args.process_index == 0:
        removed = clear_run_outputs(training_args.output_dir)
        if removed:
            logger.info("--overwrite_output_dir: removed the earlier run's %s", ", ".join(removed))
    return checkpoint


def command_line() -> str:
    """How this run was started, for the model card's reproduce section."""
    launcher = (
        "accelerate launch"
        if "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_USE_CPU" in os.environ
        else "python"
    )
    return " ".join([launcher, *map(shlex.quote, sys.argv)])


def training_summary(training_args, image_size) -> dict[str, Any]:
    """The hyperparameters a card and a comparison need, from `TrainingArguments`."""
    world = training_args.world_size
    return {
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": world,
        "global_batch_size": training_args.per_device_train_batch_size
        * world
        * training_args.gradient_accumulation_steps,
        "weight_decay": training_args.weight_decay,
        "warmup_ratio": getattr(training_args, "warmup_ratio", None),
        "warmup_steps": training_args.warmup_steps,
        "lr_scheduler_type": str(
            getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
        ),
        "optim": str(getattr(training_args.optim, "value", training_args.optim)),
        "label_smoothing_factor": training_args.label_smoothing_factor,
        "seed": training_args.seed,
        "bf16": training_args.bf16,
        "fp16": training_args.fp16,
        "image_size": image_size,
    }


def finish_run(
    training_args,
    script_args,
    *,
    config_path: str | None,
    image_size,
    results: dict,
    files: dict[str, str],
    push: bool,
    headline: str,
    **record_fields,
) -> RunRecord:
    """Main process, after training: the run record (`run_info.json`: what the card, the export and the
    ablation report read), the model card, the push if asked, and one summary line with the `headline`
    metric. `record_fields` are the stage's own `RunRecord` fields (stage, label names, data, models, ...)."""
    from . import __version__
    from .publish import push_from_training_args, write_model_card

    output_dir = training_args.output_dir
    record = RunRecord(
        seed=training_args.seed,
        command=command_line(),
        config=vars(script_args),
        config_file=config_path,
        hyperparameters=training_summary(training_args, image_size),
        results=results,
        files=files,
        emoreg_hf_version=__version__,
        **record_fields,
    )
    record.write(output_dir)
    write_model_card(output_dir, repo_id=training_args.hub_model_id)
    if push:
        push_from_training_args(output_dir, training_args)
    print(f"{headline}={results.get(headline, float('nan')):.4f} -> {os.path.abspath(output_dir)}")
    return record
