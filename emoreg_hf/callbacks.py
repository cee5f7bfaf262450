"""Trainer callbacks of the recipes: regulation details for the trackers, TensorBoard traces that can be
published, the model pushed at every save (`hub_strategy: every_save`), and a checkpoint when the run is
asked to stop (a scheduler's pre-emption warning)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from .preemption import STOP_FILE_ENV, STOP_SIGNAL, TrainingPreempted, stop_file_present

logger = logging.getLogger(__name__)

DETAILS = {"rho_class": "mean ρ per target class", "emotion_share": "share of each emotion in e(x)"}


def install_callbacks(trainer) -> None:
    """Swap Trainer's TensorBoard callback for the publishable one, and add the regulation details."""
    if any(type(cb) is TensorBoardCallback for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(TensorBoardCallback)
        trainer.add_callback(PublishableTensorBoardCallback())
    trainer.add_callback(RegulationDetailsCallback(trainer))
    trainer.add_callback(CheckpointOnStopRequest(trainer))


def summary_writer(log_dir: str):
    """A TensorBoard writer: PyTorch's (the `tensorboard` extra) or, without it, tensorboardX's; None when
    neither is installed (then Trainer adds no TensorBoard callback either)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(log_dir=log_dir)


class PublishableTensorBoardCallback(TensorBoardCallback):
    """TensorBoard traces in `<output_dir>/runs/<time>/` that can travel with the model: scalars and the
    regulation histograms, without the `args` / `model_config` texts Trainer writes (they hold local paths
    and the host name). The main process opens its own writer (`tb_writer`) when training begins."""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.tb_writer is None:
            log_dir = self.logging_dir or os.path.join(
                args.output_dir, "runs", time.strftime("%Y%m%d-%H%M%S")
            )
            self.tb_writer = summary_writer(log_dir)


class RegulationDetailsCallback(TrainerCallback):
    """At each evaluation, the per-class ρ and the emotion shares (kept off the console and the scalar
    plots) go to every TensorBoard writer as a histogram and a bar chart."""

    def __init__(self, trainer):
        self.trainer = trainer

    def _writers(self) -> list[Any]:
        return [
            cb.tb_writer
            for cb in self.trainer.callback_handler.callbacks
            if getattr(cb, "tb_writer", None) is not None
        ]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics:
            return
        writers = self._writers()
        if not writers:
            return
        for kind, title in DETAILS.items():
            for prefix in ("eval", "test"):
                values = {
                    k.split("/", 1)[1]: v for k, v in metrics.items() if k.startswith(f"{prefix}_{kind}/")
                }
                if not values:
                    continue
                figure = _bar_chart(values, title)
                for writer in writers:
                    writer.add_histogram(
                        f"{prefix}/{kind}", np.asarray(list(values.values())), state.global_step
                    )
                    writer.add_figure(f"{prefix}/{kind}", figure, state.global_step, close=False)
                    writer.flush()
                _close(figure)


def _bar_chart(values: dict[str, float], title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * len(values)), 3.0))
    ax.bar(range(len(values)), list(values.values()), color="tab:purple")
    ax.set_xticks(range(len(values)), list(values), rotation=90, fontsize=7)
    ax.set(title=title, ylim=(0, 1))
    fig.tight_layout()
    return fig


def _close(figure) -> None:
    import matplotlib.pyplot as plt

    plt.close(figure)


STOP_PUSH_WAIT_S = (
    180  # a run stopped short waits this long for its checkpoint's push (Slurm warns 300 s ahead)
)


class PushAtEverySave(TrainerCallback):
    """`hub_strategy: every_save`: after each checkpoint, its model (weights, config, code, processor; never
    optimizer states) goes to the Hub repo as a "training in progress" commit, uploaded in the background as
    Trainer's own push does, so training goes on meanwhile; the end of the run pushes the finished, carded
    folder. An upload still running when the next checkpoint is due is waited for first (rotating old
    checkpoints must not delete the folder it reads), and at the end of training.

    `hub_strategy: checkpoint` also pushes the whole checkpoint (optimizer states included) to the branch
    `last-checkpoint`, to resume from with `--resume_from_checkpoint org/name`: from a background worker and
    a snapshot rotation cannot delete (`publish.checkpoint_push`), so no step waits for it. The end of
    training waits for the last one and says if it failed; a run stopped short (a stop request: its machine
    is about to go) waits at most `STOP_PUSH_WAIT_S`, then leaves the branch at the checkpoint before."""

    def __init__(self, target):
        self.target = target
        self.pending = None  # the upload in flight: (its Future, the step it pushes)
        self.checkpoints = None  # BackgroundCheckpointPush, with hub_strategy: checkpoint

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            self.wait()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from .publish.push import push_checkpoint_model

        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(checkpoint):
            self.wait()
            self.pending = (
                push_checkpoint_model(checkpoint, self.target, step=state.global_step),
                state.global_step,
            )
            strategy = getattr(args, "hub_strategy", "every_save")
            if str(getattr(strategy, "value", strategy)) == "checkpoint":
                self.push_whole_checkpoint(checkpoint, args.output_dir, state.global_step)

    def push_whole_checkpoint(self, checkpoint: str, output_dir: str, step: int) -> None:
        from pathlib import Path

        from .publish.checkpoint_push import BackgroundCheckpointPush

        if self.checkpoints is None:
            self.checkpoints = BackgroundCheckpointPush(self.target, output_dir)
        self.checkpoints.submit(Path(checkpoint), step)

    def on_train_end(self, args, state, control, **kwargs):
        self.wait()
        if self.checkpoints is not None:
            stopped_short = bool(state.max_steps) and state.global_step < state.max_steps
            self.wait_for_checkpoint_push(STOP_PUSH_WAIT_S if stopped_short else None)

    def wait_for_checkpoint_push(self, timeout: float | None) -> None:
        """The run's end: the last checkpoint's push is done (or given up after `timeout`), and said so when
        it failed; the run on disk is unaffected either way."""
        pushes, branch = self.checkpoints, f"{self.target.repo_id}@last-checkpoint"
        if not pushes.wait(timeout):
            logger.warning(
                "the push of the last checkpoint to %s did not finish within %d s; the branch keeps the "
                "checkpoint pushed before (a commit is all or nothing); every checkpoint is saved locally",
                branch,
                timeout,
            )
        elif pushes.failed and max(pushes.failed) > max(pushes.pushed, default=-1):
            step = max(pushes.failed)
            logger.warning(
                "checkpoint-%d was not pushed to %s: %s. The run on disk is complete; the branch holds %s.",
                step,
                branch,
                pushes.failed[step].rstrip("."),
                f"checkpoint-{max(pushes.pushed)}" if pushes.pushed else "no checkpoint of this run",
            )

    def wait(self) -> None:
        """Wait for the upload in flight; a failed one is logged, not fatal (the final push reports)."""
        if self.pending is None:
            return
        from .publish.push import finish_checkpoint_push

        (future, step), self.pending = self.pending, None
        finish_checkpoint_push(future, self.target, step=step)


# -- stopping on request (pre-emption) --------------------------------------------------------------------

DISTRIBUTED_CHECK_STEPS = 10  # with several ranks they agree on stopping every this many steps


class CheckpointOnStopRequest(TrainerCallback):
    """Pre-emption: on SIGUSR1, or once the file named by `$EMOREG_STOP_FILE` exists, every rank saves a
    checkpoint at the end of the current optimizer step and training stops; the recipe then exits with status
    75 (`TrainingPreempted`) and the same command resumes from that checkpoint.

    A Slurm job learns of its end from a signal to its batch shell; `recipes/launch.slurm` turns it into the
    stop file, which every rank on every node sees. The ranks agree through `Accelerator.check_trigger` (every
    `DISTRIBUTED_CHECK_STEPS` steps, so a single process never waits on a collective), so all of them save the
    same step. Only the `control` flags of Trainer are used: the checkpoint is Trainer's own.
    """

    def __init__(self, trainer):
        self.trainer = trainer
        self.requested = False  # set by the signal handler
        self.stopped_at: int | None = None  # the step whose checkpoint was saved on request
        self._previous_handler = None

    def _on_signal(self, signum, frame) -> None:
        self.requested = True

    def on_train_begin(self, args, state, control, **kwargs):
        if stop_file_present():  # asked to stop before a step ran: the newest checkpoint is still the newest
            raise TrainingPreempted(
                f"a stop was requested ({os.environ[STOP_FILE_ENV]} exists) before training"
            )
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(STOP_SIGNAL, self._on_signal)

    def on_step_end(self, args, state, control, **kwargs):
        asked = self.requested or stop_file_present()
        if args.world_size > 1:
            if asked:
                self.trainer.accelerator.set_trigger()
            if state.global_step % DISTRIBUTED_CHECK_STEPS != 0:
                return control
            asked = self.trainer.accelerator.check_trigger()
        if asked:
            control.should_save = True
            control.should_training_stop = True
            self.stopped_at = state.global_step
            if state.is_world_process_zero:
                logger.warning("Stop requested: saving checkpoint-%d and stopping", state.global_step)
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stopped_at is not None:  # the checkpoint is saved; no end-of-epoch evaluation or second save
            control.should_evaluate = False
            control.should_save = False
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self._previous_handler is not None:
            signal.signal(STOP_SIGNAL, self._previous_handler)
            self._previous_handler = None

    def raise_if_stopped(self, output_dir: str) -> None:
        """After `trainer.train()`: a run stopped on request ends here, before the final save and evaluation."""
        if self.stopped_at is not None:
            raise TrainingPreempted(
                f"stopped on request at step {self.stopped_at}: checkpoint-{self.stopped_at} is saved in "
                f"{os.path.abspath(output_dir)}; run the same command to resume"
            )
