"""An exponential moving average (EMA) of the weights, timm's habit (`timm.utils.ModelEmaV3`): updated after
every optimizer step through Trainer's `on_step_end`, saved into each checkpoint (`ema.safetensors`) so a
resumed run keeps its average, evaluated beside the trained weights after training, and optionally the
weights the run saves (`--ema_save ema`). Buffers are averaged too (timm's default): the EMA's BatchNorm
statistics follow its weights; with several ranks, rank 0's average is used everywhere (`synchronize`)."""

from __future__ import annotations

import contextlib
import logging
import os

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)

EMA_FILE = "ema.safetensors"  # in each checkpoint folder; never a model file of the run folder or the Hub
EMA_SAVES = ("raw", "ema")  # configs.EMA_SAVES holds the same words (parsing stays torch-free)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model)


class WeightEMA(TrainerCallback):
    """The EMA of a Trainer's model. Made from the model when training begins (on the unwrapped model: every
    DDP rank holds the same weights, so every rank holds the same average); restored from `resume_from`
    (a checkpoint folder) when one is set. `decay`: the EMA's decay; `warmup`: timm's warmup of the decay,
    `1 - (1 + step)^-2/3` until it reaches `decay`, for short runs where a fixed decay would still hold the
    initial weights. Either way the first step's update copies the weights (timm's `get_decay`)."""

    def __init__(self, decay: float, warmup: bool = False):
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay!r}")
        self.decay, self.warmup = float(decay), bool(warmup)
        self.ema = None  # timm.utils.ModelEmaV3, once attached
        self.resume_from: str | None = None  # the checkpoint whose EMA a resumed run starts from

    def attach(self, model: torch.nn.Module, checkpoint: str | None = None) -> None:
        """Start the average at `model`'s weights, or at the EMA saved in `checkpoint`."""
        from timm.utils import ModelEmaV3

        self.ema = ModelEmaV3(_unwrapped(model), decay=self.decay, use_warmup=self.warmup)
        self.ema.requires_grad_(False)
        if checkpoint is not None:
            self.load(checkpoint)

    @property
    def module(self) -> torch.nn.Module:
        if self.ema is None:
            raise RuntimeError("the weight EMA is not attached to a model yet (training has not begun)")
        return self.ema.module

    def load(self, checkpoint: str) -> None:
        from safetensors.torch import load_model

        path = os.path.join(checkpoint, EMA_FILE)
        if not os.path.isfile(path):
            logger.warning(
                "%s holds no %s (saved without --ema_decay, or cut short after the weights were written): the "
                "weight EMA starts again from the resumed weights",
                checkpoint,
                EMA_FILE,
            )
            return
        load_model(self.module, path, strict=True, device=str(next(self.module.parameters()).device))
        logger.info("Weight EMA restored from %s", path)

    def save(self, folder: str) -> None:
        from safetensors.torch import save_model

        save_model(self.module, os.path.join(folder, EMA_FILE), metadata={"decay": str(self.decay)})

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.ema is None:
            self.attach(model, self.resume_from)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.ema.update(_unwrapped(model), step=state.global_step)

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if args.should_save and os.path.isdir(folder):
            self.save(folder)

    def synchronize(self) -> None:
        """Every rank takes rank 0's average. The weights are the same on every rank already (DDP keeps them
        so), but a BatchNorm's running statistics are updated by each rank's own batches after DDP has
        broadcast them, so their averages drift apart; rank 0's is the one a checkpoint saves."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for value in self.module.state_dict().values():
                dist.broadcast(value, src=0)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module):
        """`model` holds the EMA's weights and buffers inside the block (rank 0's, on every rank: every rank
        must enter the block), its own again after it."""
        model = _unwrapped(model)
        self.synchronize()
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.module.state_dict())
        try:
            yield model
        finally:
            model.load_state_dict(own)


def weight_ema(trainer) -> WeightEMA | None:
    """The trainer's `WeightEMA` callback, or None when the run keeps no EMA."""
    handler = getattr(trainer, "callback_handler", None)  # a stand-in trainer may have none
    return next((cb for cb in getattr(handler, "callbacks", ()) if isinstance(cb, WeightEMA)), None)
