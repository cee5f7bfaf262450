"""The run folder's lifecycle: resume or start fresh, clear an earlier run's outputs on overwrite, and, at
the end, write the run record, the model card and the summary line (and push when asked).

A run folder holds its own run only. Just before training a run writes `run_started.json` (the settings it
was started with and the files that were in the folder before it); its record (`run_info.json`) lists at the
end every file the run wrote. Overwriting removes exactly those files, so a card or an export can never mix
two runs, and no file of yours is ever taken for a run's.

With several processes, the main process alone decides (`ranks.main_process_decides` around `begin_run`,
`prepare_output_dir` and `begin_training`); the others wait for its answer.
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
from transformers.trainer_utils import get_last_checkpoint

from .checkpoints import (  # noqa: F401 - checkpoint_problem and its helpers are used from here too
    checkpoint_problem,
    sharded_checkpoint_problem,
    torch_file_problem,
)
from .ranks import main_process_decides
from .run_record import RECORD_FILE, RunRecord, framework_versions, load_run_record
from .run_settings import (
    comparable_settings,
    legacy_checkpoint_differences,
    run_settings,
    setting_defaults,
    settings_differences,
    training_arguments,
    training_summary,
)

logger = logging.getLogger(__name__)

# Every name the recipes (and Trainer) write into an output_dir: a run's files are those of these names that
# were not in its folder before it started (a file of another name is never a run's, whenever it appeared).
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
    "influence_emoreg.py",
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
STARTED_FILE = "run_started.json"  # written just before training, removed when the run is recorded
# Files a launcher keeps beside the run it starts (the ablation runner's per-run config, marker and log):
# they are written before the recipe runs, so they are neither the user's nor the run's.
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


# -- a finished run ------------------------------------------------------------------------------------


def finished_run(
    output_dir: str, settings: dict[str, Any], defaults: dict[str, Any] | None = None
) -> RunRecord | None:
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
    recorded = comparable_settings(record.config, record.hyperparameters, record.training_arguments)
    differing = settings_differences(recorded, settings, "finished run", defaults)
    if differing:
        raise RunDirError(
            f"output_dir {output_dir!r} holds a finished run with other settings; nothing was loaded or "
            "trained:\n" + "\n".join(differing) + "\nChoose another --output_dir for this run, or pass "
            "--overwrite_output_dir true to replace the finished one."
        )
    return record


# -- a run that started and has not finished --------------------------------------------------------------


def started_run(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """`run_started.json` of a run that started training in `output_dir` and has not been recorded yet
    (`{"settings": ..., "preexisting": [...]}`), or None."""
    path = Path(output_dir) / STARTED_FILE
    if not path.is_file():
        return None
    try:
        started = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(started, dict) or not isinstance(started.get("settings"), dict):
            raise ValueError("no settings")
    except (OSError, ValueError) as error:
        raise RunDirError(
            f"output_dir {str(output_dir)!r} holds a {STARTED_FILE} that cannot be read ({error}); pass "
            "--overwrite_output_dir true to replace that run, or choose another --output_dir."
        ) from None
    return started


def check_interrupted_run(
    output_dir: str, settings: dict[str, Any], defaults: dict[str, Any] | None = None
) -> None:
    """A run that started in `output_dir` with other settings and did not finish is refused, listing what
    differs: resuming it with these would make one model of two runs, and record only the second."""
    started = started_run(output_dir)
    if started is None:
        return
    differing = settings_differences(started["settings"], settings, "interrupted run", defaults)
    if differing:
        raise RunDirError(
            f"output_dir {output_dir!r} holds an interrupted run with other settings; resuming it with these "
            "would mix two runs, so nothing was loaded or trained:\n" + "\n".join(differing) + "\nRun the "
            "command it was started with to resume it, choose another --output_dir, or pass "
            "--overwrite_output_dir true to start over."
        )


def _names(folder: str | os.PathLike) -> list[str]:
    """The entries of a run folder that are someone's files: not the lock, not a launcher's own files."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n != LOCK_FILE and n not in LAUNCHER_FILES)


def _legacy_run_files(names: list[str]) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in RUN_OUTPUTS)]


def holds_a_run(output_dir: str | os.PathLike) -> bool:
    """Whether the folder records a run of these recipes: a record, or a started run. `checkpoint-*` folders
    alone are not a record: any Trainer writes them (and an emoreg-hf older than `run_started.json`, whose
    checkpoints `legacy_checkpoint_differences` compares with the command that resumes them)."""
    names = _names(output_dir)
    return RECORD_FILE in names or STARTED_FILE in names


def run_files(output_dir: str | os.PathLike) -> list[str]:
    """The files in `output_dir` that belong to the run recorded there: the record's `outputs`; for a run
    that started and did not finish, the names the recipes write (`RUN_OUTPUTS`) that were not there before
    it; for a record written before records listed their files, the names the recipes write. A folder
    without a record or a started run holds no run's files."""
    names = _names(output_dir)
    started = started_run(output_dir)
    if RECORD_FILE in names:
        with contextlib.suppress(ValueError, OSError):
            outputs = load_run_record(output_dir).outputs
            if outputs:
                return sorted(set(names) & {*outputs, STARTED_FILE})
    if started is not None:
        before = set(started.get("preexisting") or [])
        return [n for n in _legacy_run_files(names) if n not in before] + [STARTED_FILE]
    return _legacy_run_files(names) if RECORD_FILE in names else []


def clear_run_outputs(output_dir: str | os.PathLike) -> list[str]:
    """Remove the files of the run recorded in `output_dir` (see `run_files`); returns the removed names.
    Nothing else in the folder is touched."""
    removed = []
    for name in run_files(output_dir):
        path = Path(output_dir) / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
        removed.append(name)
    return removed


# -- resume or start over ---------------------------------------------------------------------------------


HUB_CHECKPOINT_DIR = (
    "last-checkpoint"  # where `--resume_from_checkpoint org/name` downloads to, in output_dir
)


def _is_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "~")) and not os.path.exists(value)


def resume_checkpoint(
    output_dir: str, *, resume_from_checkpoint: str | None, overwrite: bool, hub_api=None, training_args=None
) -> str | None:
    """The checkpoint to resume from, or None for a fresh run.

    An explicit `resume_from_checkpoint` wins: a checkpoint folder, or a Hub model id whose branch
    `last-checkpoint` a run with `hub_strategy: checkpoint` pushed (downloaded into
    `output_dir/last-checkpoint` first, with `hub_api` or the logged-in token); otherwise the newest valid
    `checkpoint-*` in `output_dir` (an incomplete or corrupt one is renamed `*.incomplete`, with a warning, so
    it is never mistaken for a valid one again). A run that started here and stopped before its first
    checkpoint starts again. A folder holding anything else without a checkpoint is refused (it may hold a
    finished model, or your files); with `overwrite`, only a folder that records a run (or is empty) is
    accepted, since overwriting removes only what a run recorded. In a folder with checkpoints but no
    record of a run, nothing is renamed: its newest checkpoint resumes only when it is complete and the
    settings it was saved with (its own `training_args.bin`) are those of `training_args`.
    """
    explicit = resume_from_checkpoint and str(resume_from_checkpoint).lower() != "true"
    from_hub = explicit and not os.path.isdir(resume_from_checkpoint) and _is_hub_id(resume_from_checkpoint)
    if (
        explicit
        and overwrite
        and (from_hub or Path(resume_from_checkpoint).resolve().is_relative_to(Path(output_dir).resolve()))
    ):
        raise RunDirError(
            f"resume_from_checkpoint={resume_from_checkpoint!r} is (or would be downloaded) in output_dir "
            f"{output_dir!r}, which --overwrite_output_dir true clears first: resume without overwriting, or "
            "start over without --resume_from_checkpoint"
        )
    if from_hub:
        from .publish.push import download_checkpoint

        check_resumable_into(output_dir, resume_from_checkpoint)
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
    if explicit:
        if not os.path.isdir(resume_from_checkpoint):
            raise RunDirError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder")
        problem = checkpoint_problem(resume_from_checkpoint)
        if problem:
            raise RunDirError(
                f"resume_from_checkpoint={resume_from_checkpoint!r} cannot be resumed: {problem}"
            )
    if not os.path.isdir(output_dir):
        return resume_from_checkpoint if explicit else None
    if overwrite:
        check_overwritable(output_dir)
        return resume_from_checkpoint if explicit else None
    if explicit:
        check_resumable_into(output_dir, resume_from_checkpoint)
        return resume_from_checkpoint
    ours = holds_a_run(output_dir)
    while (last := get_last_checkpoint(output_dir)) is not None:
        problem = checkpoint_problem(last)
        if problem is None and not ours:
            check_legacy_checkpoint(output_dir, last, training_args)
        if problem is None:
            logger.info("Resuming from %s", last)
            return last
        if not ours:
            raise RunDirError(
                f"output_dir {output_dir!r}: {os.path.basename(last)} cannot be resumed ({problem}), and the "
                f"folder holds no record of a run ({STARTED_FILE} or {RECORD_FILE}), so nothing in it is "
                "renamed or removed; nothing was loaded or trained. Choose another --output_dir, or pass "
                "--resume_from_checkpoint with a complete checkpoint."
            )
        os.replace(last, last + ".incomplete")
        logger.warning(
            "%s cannot be resumed (%s): renamed %s.incomplete", last, problem, os.path.basename(last)
        )
    if started_run(output_dir) is not None:
        logger.info("%s holds a run that stopped before its first checkpoint: starting it again", output_dir)
        return None
    if [name for name in _names(output_dir) if not name.endswith(".incomplete")]:
        raise RunDirError(
            f"output_dir {output_dir!r} is not empty and holds no checkpoint to resume from; "
            "pass --overwrite_output_dir true to replace the run it holds, or choose another output_dir"
        )
    return None


def check_resumable_into(output_dir: str, checkpoint: str) -> None:
    """`--resume_from_checkpoint` writes the run's model, card and results into `output_dir`, over any file of
    the same name: the folder must be new or empty, record a run of these recipes, or hold only checkpoints."""
    if holds_a_run(output_dir):
        return
    yours = [n for n in _names(output_dir) if not n.startswith("checkpoint-") and n != HUB_CHECKPOINT_DIR]
    if yours:
        shown = ", ".join(yours[:8]) + (", ..." if len(yours) > 8 else "")
        raise RunDirError(
            f"output_dir {output_dir!r} holds files ({shown}) but no record of a run: resuming "
            f"{checkpoint} there would write this run's model, card and results over them, so nothing was "
            "loaded or trained. Choose a new or empty --output_dir."
        )


def check_overwritable(output_dir: str) -> None:
    """`--overwrite_output_dir true` removes only the files a run recorded in the folder: a folder with no
    record of a run and anything in it (your README.md, config.json, a project, any Trainer's
    `checkpoint-*`) is refused."""
    names = _names(output_dir)
    if names and not holds_a_run(output_dir):
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        checkpoints = any(n.startswith("checkpoint-") for n in names)
        raise RunDirError(
            f"output_dir {output_dir!r} holds files ({shown}) but no record of a run, so "
            "--overwrite_output_dir true has nothing of a run to replace and removes nothing there; nothing "
            "was loaded or trained. "
            + (
                f"Its checkpoint-* carry no {STARTED_FILE} or {RECORD_FILE}: a run of these recipes writes one "
                "before its first step. To resume a checkpoint saved with this command's settings, run without "
                "--overwrite_output_dir. "
                if checkpoints
                else ""
            )
            + "Choose a new or empty --output_dir."
        )


def check_legacy_checkpoint(output_dir: str, checkpoint: str, training_args) -> None:
    """A checkpoint in a folder with no record of its run (an emoreg-hf older than `run_started.json`, or
    another Trainer's) resumes only when the settings it was saved with are this command's; otherwise, or
    when they cannot be known, it is refused, and nothing in the folder is touched."""
    name = os.path.basename(checkpoint)
    try:
        differing = legacy_checkpoint_differences(checkpoint, training_args)
    except ValueError as error:
        raise RunDirError(
            f"output_dir {output_dir!r} holds {name} but no record of the run it belongs to ({STARTED_FILE} or "
            f"{RECORD_FILE}), and the settings it was saved with cannot be known ({error}); resuming it could "
            "mix two runs, so nothing was loaded or trained. Choose another --output_dir, or pass "
            f"--resume_from_checkpoint {checkpoint} to resume it with this command's settings."
        ) from None
    if differing:
        raise RunDirError(
            f"output_dir {output_dir!r} holds {name}, saved with other settings and with no record of its run "
            f"({STARTED_FILE} or {RECORD_FILE}); resuming it with these would mix two runs, so nothing was "
            "loaded or trained:\n" + "\n".join(differing) + "\nRun the command it was started with to resume "
            "it, or choose another --output_dir."
        )
    logger.warning(
        "%s has no record of its run (no %s: an older emoreg-hf): the TrainingArguments it was saved with "
        "are this command's, so it is resumed; the recipe's own arguments (data, method, models) are not "
        "stored in a checkpoint and are taken from this command",
        checkpoint,
        STARTED_FILE,
    )


@main_process_decides
def prepare_output_dir(training_args, *, overwrite: bool, hub=None) -> str | None:
    """Decide resume vs fresh start before any work (nothing is removed yet: see `begin_training`).
    `hub` (the push target, if any) holds the token a resume from the Hub downloads with (the main process
    downloads; the other processes of one machine read the same folder)."""
    return resume_checkpoint(
        training_args.output_dir,
        resume_from_checkpoint=training_args.resume_from_checkpoint,
        overwrite=overwrite,
        hub_api=getattr(hub, "api", None),
        training_args=training_args,
    )


@main_process_decides
def begin_training(training_args, script_args, *, overwrite: bool, checkpoint: str | None) -> None:
    """Just before training (a command that fails on its inputs removes and writes nothing): a fresh start
    removes the files of the run the folder recorded (with `overwrite`, or a run that stopped before its
    first checkpoint), then `run_started.json` records this run's settings and the files that were there
    before it, so a later command can tell whether it is this run, and overwriting removes only its files."""
    if training_args.process_index != 0:
        return
    output_dir = training_args.output_dir
    if overwrite or checkpoint is None:
        removed = clear_run_outputs(output_dir)
        if removed:
            logger.info("Starting over: removed the earlier run's %s", ", ".join(removed))
    if checkpoint is None or started_run(output_dir) is None:
        names = _names(output_dir)
        before = [n for n in names if n not in _legacy_run_files(names)] if checkpoint else names
        started = {
            "settings": run_settings(script_args, training_args),
            "preexisting": sorted({*before, *(n for n in LAUNCHER_FILES if n in os.listdir(output_dir))}),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        (Path(output_dir) / STARTED_FILE).write_text(json.dumps(started, indent=2) + "\n", encoding="utf-8")


@main_process_decides
def begin_run(training_args, script_args, *, headline: str) -> bool:
    """The output folder, before any data is loaded: hold its lock (a second run into it refuses), prove it
    writable, and report whether it already holds this very run, finished (then there is nothing to do and
    every file stays as it is); a finished or interrupted run of other settings is refused, listing what
    differs."""
    output_dir = training_args.output_dir
    if training_args.process_index == 0:
        claim_output_dir(output_dir)
    if script_args.overwrite_output_dir:
        return False
    settings, defaults = run_settings(script_args, training_args), setting_defaults(script_args)
    record = finished_run(output_dir, settings, defaults)
    if record is None:
        check_interrupted_run(output_dir, settings, defaults)
        return False
    shown = headline if headline in record.results else "eval_accuracy"  # no test split: say which figure
    value = record.results.get(shown, float("nan"))
    print(
        f"{os.path.abspath(output_dir)} holds this run, finished ({shown}={value:.4f}); nothing to do. "
        "Pass --overwrite_output_dir true to train it again."
    )
    return True


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
