"""`hub_strategy: checkpoint` without waiting on the Hub: each save's whole checkpoint goes to the branch
`last-checkpoint` from one background worker, so training steps go on while it uploads.

Rotation (`save_total_limit`) deletes old `checkpoint-*` folders at the next save, which may come while an
upload still reads one; so the upload reads a snapshot in `<output_dir>/.hub-staging/step-N`, made of hard
links (no copy of the optimizer state, just new names for the same files; a copy only where the filesystem
cannot link), which rotation never touches, and which is removed once uploaded. At most one upload is in
flight: a save while one uploads replaces the one waiting, if any (only the newest checkpoint is worth
pushing), so uploads never pile up. A commit is all or nothing, so the branch always holds a complete
checkpoint, the previous one until the next upload finishes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from .hub import HubPushError, hub_errors
from .push import CHECKPOINT_BRANCH, HubTarget

logger = logging.getLogger(__name__)

STAGING_DIR = ".hub-staging"  # in output_dir; a run output (`run_dir.RUN_OUTPUTS`)
# Not needed to resume, and a pickle of the arguments with local paths in it: never uploaded.
CHECKPOINT_FILES_KEPT_LOCAL = ("training_args.bin",)


def _link_or_copy(source: str, destination: str) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem, or one without hard links
        shutil.copy2(source, destination)


def stage_checkpoint(checkpoint: Path, staged: Path) -> Path:
    """A snapshot of `checkpoint` (less the files kept local) that deleting the checkpoint cannot change."""
    shutil.rmtree(staged, ignore_errors=True)  # left by a run that was killed mid-upload
    shutil.copytree(
        checkpoint,
        staged,
        ignore=lambda folder, names: [n for n in names if n in CHECKPOINT_FILES_KEPT_LOCAL],
        copy_function=_link_or_copy,
    )
    return staged


def upload_checkpoint(folder: Path, target: HubTarget, *, step: int) -> None:
    """The whole checkpoint (weights, optimizer, scheduler and RNG states, trainer state) as one commit to
    the branch `last-checkpoint`, replacing the one before; a pre-empted run resumes from it on any machine
    with `--resume_from_checkpoint org/name`. Raises `HubPushError` (or what the client raised)."""
    with hub_errors(target.repo_id):
        target.api.create_branch(target.repo_id, branch=CHECKPOINT_BRANCH, exist_ok=True, repo_type="model")
        target.api.upload_folder(
            repo_id=target.repo_id,
            folder_path=str(folder),
            repo_type="model",
            revision=CHECKPOINT_BRANCH,
            commit_message=f"Checkpoint at step {step} (resume: --resume_from_checkpoint {target.repo_id})",
        )


class BackgroundCheckpointPush:
    """One worker thread uploading the newest staged checkpoint; `submit` returns at once, `wait` blocks
    until nothing is queued or in flight. A failed upload is logged (training goes on) and kept in
    `failed` for the run's end to report."""

    def __init__(self, target: HubTarget, output_dir: str):
        self.target, self.staging = target, Path(output_dir) / STAGING_DIR
        shutil.rmtree(self.staging, ignore_errors=True)  # snapshots of a run killed mid-upload, now stale
        self.changed = threading.Condition()
        self.queued: tuple[Path, int] | None = None  # (snapshot, step) waiting for the upload in flight
        self.uploading: int | None = None  # the step being uploaded
        self.pushed: list[int] = []
        self.failed: dict[int, str] = {}  # step: why

    def submit(self, checkpoint: Path, step: int) -> None:
        staged = stage_checkpoint(checkpoint, self.staging / f"step-{step}")
        with self.changed:
            replaced, self.queued = self.queued, (staged, step)
            if self.uploading is None:
                self.uploading = -1  # claimed: the worker takes the queue
                threading.Thread(target=self._work, name="emoreg-checkpoint-push", daemon=True).start()
        if replaced is not None:
            shutil.rmtree(replaced[0], ignore_errors=True)
            logger.info("checkpoint push of step %d skipped: step %d is newer", replaced[1], step)

    def _work(self) -> None:
        while True:
            with self.changed:
                if self.queued is None:
                    self.uploading = None
                    self.changed.notify_all()
                    return
                (staged, step), self.queued = self.queued, None
                self.uploading = step
            try:
                upload_checkpoint(staged, self.target, step=step)
                self.pushed.append(step)
            except HubPushError as error:
                self._failed(step, str(error))
            except Exception as error:  # whatever the Hub client raised
                self._failed(step, f"{type(error).__name__}: {error}")
            finally:
                shutil.rmtree(staged, ignore_errors=True)

    def _failed(self, step: int, why: str) -> None:
        self.failed[step] = why
        logger.warning("checkpoint push at step %d failed, training goes on: %s", step, why)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the queue is empty and no upload is in flight (or `timeout` seconds passed: False);
        an empty staging folder is removed."""
        with self.changed:
            done = self.changed.wait_for(lambda: self.queued is None and self.uploading is None, timeout)
        if done:
            try:
                self.staging.rmdir()
            except OSError:
                pass
        return done
