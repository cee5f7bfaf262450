"""The run folder itself: its lock, the finished or interrupted run it may hold, the run's own files and the
overwrite that clears them, and the recipes' steps on it (`begin_run`, `prepare_output_dir`, `begin_training`).

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
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .checkpoints import resume_checkpoint
from .ranks import main_process_decides
from .run_folder import LAUNCHER_FILES, LOCK_FILE, STARTED_FILE, RunDirError, _names, started_run
from .run_record import RECORD_FILE, RunRecord, load_run_record, utc_now
from .run_settings import comparable_settings, run_settings, setting_defaults, settings_differences

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
    ".hub-staging",  # checkpoint snapshots uploading to the Hub (publish/checkpoint_push.py)
)
DATA_REPORT_FILE = "data_report.json"
_LOCKS: list = []  # (FileLock held, its path, whether this run created the folder), until exit
atexit.register(lambda: release_output_dirs())


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


# -- a run that started and has not finished, and the files of a run ---------------------------------------


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


def _legacy_run_files(names: list[str]) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in RUN_OUTPUTS)]


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


# -- the recipes' steps on the folder ----------------------------------------------------------------------


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
    started = None if checkpoint is None else started_run(output_dir)
    if started is None:
        names = _names(output_dir)
        before = [n for n in names if n not in _legacy_run_files(names)] if checkpoint else names
        started = {
            "settings": run_settings(script_args, training_args),
            "preexisting": sorted({*before, *(n for n in LAUNCHER_FILES if n in os.listdir(output_dir))}),
            "started": utc_now(),
        }
    if checkpoint is not None:  # a resume keeps the first start and says from where it went on
        started["resumed_from_step"] = checkpoint_step(checkpoint)
    (Path(output_dir) / STARTED_FILE).write_text(json.dumps(started, indent=2) + "\n", encoding="utf-8")


def checkpoint_step(checkpoint: str) -> int | None:
    """The training step a checkpoint folder was saved at: its trainer_state.json, else its name."""
    try:
        return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        tail = Path(checkpoint).name.rpartition("-")[2]
        return int(tail) if tail.isdigit() else None


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
