"""Whether a run folder records a run of these recipes, read without changing anything: its run record, or
the `run_started.json` of a run that started training there and has not finished; which names in it are
someone's files, and whether `--overwrite_output_dir` may clear it. `run_dir` acts on the folder and
`checkpoints` decides a resume from what this reads."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .run_record import RECORD_FILE

LOCK_FILE = ".emoreg-run.lock"  # held by the running process (claim_output_dir); it says who holds it
STARTED_FILE = "run_started.json"  # written just before training, removed when the run is recorded
# Files a launcher keeps beside the run it starts (the ablation runner's per-run config, marker and log):
# they are written before the recipe runs, so they are neither the user's nor the run's.
LAUNCHER_FILES = ("ablation_run.yaml", "ablation_run.json", "ablation_stdout.log")


class RunDirError(ValueError):
    """An output_dir a run cannot use as asked; the message says why and what to do."""


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


def _names(folder: str | os.PathLike) -> list[str]:
    """The entries of a run folder that are someone's files: not the lock, not a launcher's own files."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if n != LOCK_FILE and n not in LAUNCHER_FILES)


def holds_a_run(output_dir: str | os.PathLike) -> bool:
    """Whether the folder records a run of these recipes: a record, or a started run. `checkpoint-*` folders
    alone are not a record: any Trainer writes them (and an emoreg-hf older than `run_started.json`, whose
    checkpoints `legacy_checkpoint_differences` compares with the command that resumes them)."""
    names = _names(output_dir)
    return RECORD_FILE in names or STARTED_FILE in names


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
