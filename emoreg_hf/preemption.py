"""Stopping a run on request (a scheduler's pre-emption warning): the stop file, the signal, the exit status.
Standard library only, so a recipe checks for a standing request before it imports the training stack; the
Trainer side is `callbacks.CheckpointOnStopRequest`."""

from __future__ import annotations

import os
import signal

STOP_FILE_ENV = "EMOREG_STOP_FILE"  # a path; when that file exists, the run checkpoints and stops
STOP_SIGNAL = signal.SIGUSR1  # what Slurm's `--signal=USR1@T` sends before a job's time runs out
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped with a checkpoint, the same command resumes


class TrainingPreempted(Exception):
    """The run stopped on request after saving a checkpoint; `cli.run_script` exits with `PREEMPTED_EXIT`."""


def stop_file_present() -> bool:
    """Whether the file named by `$EMOREG_STOP_FILE` exists (launch.slurm creates it on the warning signal)."""
    path = os.environ.get(STOP_FILE_ENV)
    return bool(path) and os.path.exists(path)
