"""What a run logs: scalars on the console and in the trackers' scalar plots; per-class ρ and emotion shares
as histograms and figures for TensorBoard, in the results and on the card; traces that can be published."""

from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForImageClassification, ResNetConfig, TrainingArguments

from emoreg_hf.callbacks import PublishableTensorBoardCallback, RegulationDetailsCallback
from emoreg_hf.evaluation import scalars
from emoreg_hf.trainer import EmoRegTrainer

EVAL = {
    "eval_loss": 1.0,
    "eval_accuracy": 0.5,
    "eval_rho_mean": 0.4,
    "eval_rho_class/cat": 0.3,
    "eval_rho_class/dog": 0.5,
    "eval_emotion_share/anger": 0.2,
    "eval_emotion_share/joy": 0.8,
}


class Writer:
    def __init__(self):
        self.histograms, self.figures = {}, {}

    def add_histogram(self, tag, values, step):
        self.histograms[tag] = (list(values), step)

    def add_figure(self, tag, figure, step, close=True):
        self.figures[tag] = step

    def flush(self):
        pass


def trainer(tmp_path, **args) -> EmoRegTrainer:
    model = AutoModelForImageClassification.from_config(
        ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=2)
    )
    arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **{"report_to": [], **args})
    return EmoRegTrainer(model=model, args=arguments, train_dataset=[{"pixel_values": torch.zeros(3, 8, 8)}])


def test_console_and_scalar_trackers_get_scalars_only(tmp_path):
    assert scalars(EVAL) == {"eval_loss": 1.0, "eval_accuracy": 0.5, "eval_rho_mean": 0.4}
    run = trainer(tmp_path)
    run.log(dict(EVAL))
    assert not [key for key in run.state.log_history[-1] if "/" in key]
    assert {"eval_loss", "eval_accuracy", "eval_rho_mean"} <= run.state.log_history[-1].keys()


def test_regulation_details_go_to_tensorboard_as_histograms_and_figures(tmp_path):
    run = trainer(tmp_path)
    writer = Writer()
    run.add_callback(SimpleNamespace(tb_writer=writer))  # any callback holding a TensorBoard writer
    details = next(cb for cb in run.callback_handler.callbacks if isinstance(cb, RegulationDetailsCallback))
    state = SimpleNamespace(is_world_process_zero=True, global_step=12)
    details.on_evaluate(run.args, state, None, metrics=EVAL)
    assert writer.histograms == {"eval/rho_class": ([0.3, 0.5], 12), "eval/emotion_share": ([0.2, 0.8], 12)}
    assert writer.figures == {"eval/rho_class": 12, "eval/emotion_share": 12}


@pytest.mark.slow  # spawns processes or trains
def test_tensorboard_traces_hold_no_local_paths(tmp_path):
    pytest.importorskip("tensorboardX")
    run = trainer(tmp_path / "out", report_to=["tensorboard"], max_steps=1, logging_steps=1)
    assert any(isinstance(cb, PublishableTensorBoardCallback) for cb in run.callback_handler.callbacks)
    run.args.remove_unused_columns = False
    run.train_dataset = [{"pixel_values": torch.zeros(3, 8, 8), "labels": 1}] * 2
    run.train()
    traces = list((tmp_path / "out" / "runs").glob("*/events.out.tfevents.*"))
    assert traces and str(tmp_path).encode() not in traces[0].read_bytes()
    assert b"train/loss" in traces[0].read_bytes()
