"""The run folder's lifecycle: resume or start fresh, clear an earlier run's outputs on overwrite, and, at
the end, write the run record, the model card and the summary line (and push when asked).

A run folder holds its own run only: overwriting removes every file an earlier run of the recipes wrote
(weights, results, predictions, card, plots, checkpoints, traces) before anything new is written, so a
card or an export can never mix two runs.

With several processes, the main process alone decides (`ranks.main_process_decides` around `begin_run`,
`prepare_output_dir` and `clear_earlier_run`); the others wait for its answer.
"""

from __future__ import annotations

import atexit
import contextlib
import fnmatch
import json
import logging
import os
import shlex
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import get_last_checkpoint

from .ranks import main_process_decides
from .run_record import RECORD_FILE, RunRecord, framework_versions, load_run_record

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
    "regulation_emoreg.py",
    "configuration_small_resnet.py",
    "modeling_small_resnet.py",
    "training_args.bin",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "trainer_state.json",
    "predictions_*.json",
    "data_report.json",  # DATA_REPORT_FILE
    RECORD_FILE,
    "README.md",
    "plots",
    "runs",
    "checkpoint-*",
    "last-checkpoint",  # downloaded by --resume_from_checkpoint org/name
)
DATA_REPORT_FILE = "data_report.json"
LOCK_FILE = ".emoreg-run.lock"  # held by the running process (claim_output_dir); it says who holds it
# What a launcher keeps in the run folder it starts a recipe in (the ablation runner: the run's YAML, its
# marker, its log). They are not an earlier run's outputs: a folder holding only these starts fresh.
LAUNCHER_FILES = ("ablation_run.yaml", "ablation_run.json", "ablation_stdout.log")
_LOCKS: list = []  # (FileLock held, its path, whether this run created the folder), until exit
atexit.register(lambda: release_output_dirs())


class RunDirError(ValueError):
    """An output_dir a run cannot use as asked; the message says why and what to do."""


def claim_output_dir(output_dir: str) -> None:
    """Create `output_dir`, prove it writable and hold its lock for the life of this process, before any
    work: a second run into the same folder refuses at once, naming the holder (an OS lock, `filelock`'s
    flock on Unix and msvcrt on Windows: it dies with the process that holds it)."""
    created = not os.path.isdir(output_dir)
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        with open(path, "a"):  # writable, or say so before anything else
            pass
    except OSError as error:
        raise RunDirError(
            f"output_dir {output_dir!r} is not a writable folder ({error.strerror or error}); nothing was "
            "loaded or trained. Choose another --output_dir."
        ) from None
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        try:
            owner = Path(path).read_text().strip()
        except OSError:
            owner = ""
        raise RunDirError(
            f"output_dir {output_dir!r} is in use by another run ({owner or 'another process'}); wait for it "
            "to end, or choose another --output_dir."
        ) from None
    with open(path, "w") as handle:  # who holds it, for the run that is refused
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
        )
    _LOCKS.append((lock, path, created))


def release_output_dirs() -> None:
    """Release every output folder this process holds (the recipes hold theirs until they exit)."""
    while _LOCKS:
        lock, path, created = _LOCKS.pop()
        _release(lock, path, created)


def _release(lock: FileLock, path: str, created: bool) -> None:
    """Unlock; a folder this run created and left empty (it stopped before writing anything) goes too."""
    with contextlib.suppress(OSError):
        os.remove(path)
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))  # only succeeds when empty
    with contextlib.suppress(OSError, ValueError):
        lock.release(force=True)


def comparable_settings(config: dict[str, Any], hyperparameters: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: the recipe arguments and the hyperparameters, as JSON would
    store them (the image size is left out: it is known only once the model is built)."""
    settings = {k: v for k, v in config.items() if k not in ("overwrite_output_dir",)}
    settings.update({f"hyperparameters.{k}": v for k, v in hyperparameters.items() if k != "image_size"})
    return json.loads(json.dumps(settings, default=str))


def finished_run(output_dir: str, settings: dict[str, Any]) -> RunRecord | None:
    """The record of a finished run of exactly `settings` in `output_dir` (nothing left to do), or None when
    the folder holds none. A finished run of other settings is refused, listing what differs."""
    if not os.path.isfile(os.path.join(output_dir, RECORD_FILE)):
        return None
    try:
        record = load_run_record(output_dir)
    except (ValueError, OSError) as error:
        raise RunDirError(
            f"output_dir {output_dir!r} holds a run record that cannot be read ({error}); pass "
            "--overwrite_output_dir true to replace that run, or choose another --output_dir."
        ) from None
    recorded = comparable_settings(record.config, record.hyperparameters)
    differing = [
        f"  {key}: {_short(recorded.get(key))} in the finished run, {_short(settings.get(key))} now"
        for key in sorted(set(recorded) | set(settings))
        if recorded.get(key) != settings.get(key)
    ]
    if differing:
        raise RunDirError(
            f"output_dir {output_dir!r} holds a finished run with other settings; nothing was loaded or "
            "trained:\n" + "\n".join(differing) + "\nChoose another --output_dir for this run, or pass "
            "--overwrite_output_dir true to replace the finished one."
        )
    return record


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why a checkpoint folder cannot be resumed (None when it can): Trainer writes `trainer_state.json`
    last, so a save cut short (a crash, a full disk) lacks it; truncated or corrupt weights are refused by
    `safetensors.safe_open`, which checks that the header's tensors cover the file exactly."""
    folder = Path(folder)
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError) as error:
        return f"trainer_state.json is missing or unreadable ({type(error).__name__})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return "it holds no *.safetensors weights"
    for path in weights:
        try:
            with safe_open(path, framework="numpy"):
                pass
        except OSError as error:
            return f"{path.name} is unreadable ({error.strerror or type(error).__name__})"
        except SafetensorError as error:
            return f"{path.name} is truncated or corrupt ({str(error).splitlines()[0]}, {path.stat().st_size} bytes)"
    return None


HUB_CHECKPOINT_DIR = (
    "last-checkpoint"  # where `--resume_from_checkpoint org/name` downloads to, in output_dir
)


def _is_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "~")) and not os.path.exists(value)


def resume_checkpoint(
    output_dir: str, *, resume_from_checkpoint: str | None, overwrite: bool, hub_api=None
) -> str | None:
    """The checkpoint to resume from, or None for a fresh run.

    An explicit `resume_from_checkpoint` wins: a checkpoint folder, or a Hub model id whose branch
    `last-checkpoint` a run with `hub_strategy: checkpoint` pushed (downloaded into
    `output_dir/last-checkpoint` first, with `hub_api` or the logged-in token); otherwise the newest valid
    `checkpoint-*` in `output_dir` (an incomplete or corrupt one is renamed `*.incomplete`, with a warning, so
    it is never mistaken for a valid one again). A non-empty `output_dir` without one is refused (it may hold
    a finished model) unless `overwrite`.
    """
    if resume_from_checkpoint and str(resume_from_checkpoint).lower() != "true":
        if not os.path.isdir(resume_from_checkpoint) and _is_hub_id(resume_from_checkpoint):
            from .publish.push import download_checkpoint

            local = os.path.join(output_dir, HUB_CHECKPOINT_DIR)
            logger.info("Downloading the last checkpoint of %s into %s", resume_from_checkpoint, local)
            download_checkpoint(resume_from_checkpoint, local, api=hub_api)
            problem = checkpoint_problem(local)
            if problem:
                raise RunDirError(
                    f"resume_from_checkpoint={resume_from_checkpoint!r}: the checkpoint downloaded into {local} "
                    f"cannot be resumed: {problem}"
                )
            return local
        if not os.path.isdir(resume_from_checkpoint):
            raise RunDirError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder")
        problem = checkpoint_problem(resume_from_checkpoint)
        if problem:
            raise RunDirError(
                f"resume_from_checkpoint={resume_from_checkpoint!r} cannot be resumed: {problem}"
            )
        return resume_from_checkpoint
    if overwrite or not os.path.isdir(output_dir):
        return None
    while (last := get_last_checkpoint(output_dir)) is not None:
        problem = checkpoint_problem(last)
        if problem is None:
            logger.info("Resuming from %s", last)
            return last
        os.replace(last, last + ".incomplete")
        logger.warning(
            "%s cannot be resumed (%s): renamed %s.incomplete", last, problem, os.path.basename(last)
        )
    ignored = (LOCK_FILE, *LAUNCHER_FILES)
    if [name for name in os.listdir(output_dir) if name not in ignored and not name.endswith(".incomplete")]:
        raise RunDirError(
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


@main_process_decides
def prepare_output_dir(training_args, *, overwrite: bool, hub=None) -> str | None:
    """Decide resume vs fresh start before any work (nothing is removed yet: see `clear_earlier_run`).
    `hub` (the push target, if any) holds the token a resume from the Hub downloads with (the main process
    downloads; the other processes of one machine read the same folder)."""
    return resume_checkpoint(
        training_args.output_dir,
        resume_from_checkpoint=training_args.resume_from_checkpoint,
        overwrite=overwrite,
        hub_api=getattr(hub, "api", None),
    )


@main_process_decides
def clear_earlier_run(training_args, *, overwrite: bool) -> None:
    """With `overwrite`, remove the earlier run's outputs (its checkpoints included, so they cannot be resumed
    later by mistake) just before training starts: a command that fails on its inputs removes nothing."""
    if overwrite and training_args.process_index == 0:
        removed = clear_run_outputs(training_args.output_dir)
        if removed:
            logger.info("--overwrite_output_dir: removed the earlier run's %s", ", ".join(removed))


@main_process_decides
def begin_run(training_args, script_args, *, headline: str) -> bool:
    """The output folder, before any data is loaded: hold its lock (a second run into it refuses), prove it
    writable, and report whether it already holds this very run, finished (then there is nothing to do and
    every file stays as it is); a finished run of other settings is refused, listing what differs."""
    output_dir = training_args.output_dir
    if training_args.process_index == 0:
        claim_output_dir(output_dir)
    if script_args.overwrite_output_dir:
        return False
    settings = comparable_settings(vars(script_args), training_summary(training_args, None))
    record = finished_run(output_dir, settings)
    if record is None:
        return False
    value = record.results.get(headline, record.results.get("eval_accuracy", float("nan")))
    print(
        f"{os.path.abspath(output_dir)} holds this run, finished ({headline}={value:.4f}); nothing to do. "
        "Pass --overwrite_output_dir true to train it again."
    )
    return True


def command_line() -> str:
    """How this run was started, for the model card's reproduce section."""
    launcher = (
        "accelerate launch"
        if "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_USE_CPU" in os.environ
        else "python"
    )
    return " ".join([launcher, *map(shlex.quote, sys.argv)])


def training_summary(training_args, image_size) -> dict[str, Any]:
    """The hyperparameters a card and a comparison need, from `TrainingArguments`.

    `world_size` counts the model replicas that train together: the processes, times the GPUs of each when
    one process drives several (Trainer's `nn.DataParallel`, when a plain `python` run sees many GPUs);
    `global_batch_size` is the images one optimizer step sees, as Trainer batches them."""
    replicas = training_args.world_size * max(1, training_args.n_gpu)
    return {
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": replicas,
        "global_batch_size": training_args.per_device_train_batch_size
        * replicas
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
    push,
    headline: str,
    **record_fields,
) -> RunRecord:
    """Main process, after training: the run record (`run_info.json`: what the card, the export and the
    ablation report read), the model card, the push if asked, and one summary line with the `headline`
    metric. `record_fields` are the stage's own `RunRecord` fields (stage, label names, data, models, ...)."""
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
        results=results,
        files=files,
        emoreg_hf_version=__version__,
        framework_versions=framework_versions(),
        **record_fields,
    )
    record.write(output_dir)
    run = load_run_folder(output_dir)  # read once, for the card and the push
    write_model_card(run, repo_id=training_args.hub_model_id)
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
