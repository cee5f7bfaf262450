"""Trainer callbacks of the recipes: regulation details for the trackers, TensorBoard traces that can be
published, and the model pushed at every save (`hub_strategy: every_save`)."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

logger = logging.getLogger(__name__)

DETAILS = {"rho_class": "mean ρ per target class", "emotion_share": "share of each emotion in e(x)"}


def install_callbacks(trainer) -> None:
    """Swap Trainer's TensorBoard callback for the publishable one, and add the regulation details."""
    if any(type(cb) is TensorBoardCallback for cb in trainer.callback_handler.callbacks):
        trainer.remove_callback(TensorBoardCallback)
        trainer.add_callback(PublishableTensorBoardCallback())
    trainer.add_callback(RegulationDetailsCallback(trainer))


class PublishableTensorBoardCallback(TensorBoardCallback):
    """TensorBoard traces in `<output_dir>/runs/<time>/` that can travel with the model: scalars and the
    regulation histograms, without the `args` / `model_config` texts Trainer writes (they hold local paths
    and the host name)."""

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.logging_dir is None:
            self.logging_dir = os.path.join(args.output_dir, "runs", time.strftime("%Y%m%d-%H%M%S"))
        if self.tb_writer is None:
            self._init_summary_writer(args)


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


class PushAtEverySave(TrainerCallback):
    """`hub_strategy: every_save`: after each checkpoint, its model (weights, config, code, processor; never
    optimizer states) goes to the Hub repo as a "training in progress" commit; the end of the run pushes
    the finished, carded folder. `hub_strategy: checkpoint` also pushes the whole checkpoint (optimizer
    states included) to the branch `last-checkpoint`, to resume from with `--resume_from_checkpoint org/name`."""

    def __init__(self, target):
        self.target = target

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from .publish.push import push_checkpoint, push_checkpoint_model

        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(checkpoint):
            push_checkpoint_model(checkpoint, self.target, step=state.global_step)
            strategy = getattr(args, "hub_strategy", "every_save")
            if str(getattr(strategy, "value", strategy)) == "checkpoint":
                push_checkpoint(checkpoint, self.target, step=state.global_step)
