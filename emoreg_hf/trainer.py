"""The Trainer subclass of both recipes: device-side input finishing, EmoReg's loss (or cross-entropy with
soft targets), the run's sampler and optimizer groups, running training statistics and the whole-run loss."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState

from .evaluation import _entropy, scalars
from .modeling_emoreg import present_no_split_modules
from .tta import averaged_log_probs, averaged_loss, check_mode, enlarged_size


class EmoRegRunLoss(TrainerCallback, ExportableState):
    """The training loss summed over every step of the run, saved in each checkpoint's `trainer_state.json`
    (`stateful_callbacks`, under this class's name), so a resumed run can report the mean training loss over
    the whole run, not over the steps after the resume. The trainer adds each step's loss (`add`, as a
    device tensor: no host sync per step); `before` is the sum of the steps before a resumed checkpoint."""

    def __init__(self):
        self.before = 0.0
        self.global_step = 0
        self._sum: torch.Tensor | None = None

    def add(self, step_loss: torch.Tensor) -> None:
        step_loss = step_loss.detach().float()
        if torch.isfinite(
            step_loss
        ).all():  # as Trainer's logging_nan_inf_filter, a diverged step is left out
            self._sum = step_loss if self._sum is None else self._sum + step_loss

    @property
    def loss_sum(self) -> float:
        return self.before + (float(self._sum.item()) if self._sum is not None else 0.0)

    def on_step_end(self, args, state, control, **kwargs):
        self.global_step = state.global_step

    def state(self) -> dict:
        return {"args": {}, "attributes": {"loss_sum": self.loss_sum, "global_step": self.global_step}}


RUN_LOSS = EmoRegRunLoss.__name__  # its key in trainer_state.json's stateful_callbacks


class EmoRegTrainer(Trainer):
    """`Trainer` whose batches arrive as uint8 at the loader's working size.

    `finisher` (resize to the model's input + normalise) runs on the device as the first step of every
    training and evaluation step, so the host never builds float full-size tensors. The loss is
    EmoReg's own (docs/method.md) or, for a plain classifier, cross-entropy that also takes soft targets
    (mixup's, and FER+'s `crossentropy` mode: docs/data-sources.md). During training it keeps running regulation statistics and logs them with the loss; the
    console and the trackers get scalars, while per-class ρ and emotion shares go to the results and, as
    histograms and figures, to TensorBoard (`callbacks.RegulationDetailsCallback`).
    """

    def __init__(
        self,
        *args,
        finisher: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_weights: torch.Tensor | None = None,
        train_sampler: torch.utils.data.Sampler | None = None,
        channels_last: bool = False,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # channels-last (NHWC): the model's 4-D weights here, each finished batch in `finish_batch`; the
        # optimizer is built later, on these parameters, and a resumed checkpoint loads into them in place.
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # FSDP's transformer-based wrapping shards each `_no_split_modules` class and refuses one the model
        # lacks (transformers' timm wrapper lists one its classifier does not contain): keep those it has.
        self.model._no_split_modules = present_no_split_modules(self.model)
        self.finisher = finisher
        self.class_weights = class_weights  # per-class loss weights of training (`balance`), or None
        self.train_sampler = train_sampler  # e.g. `balance.ClassBalancedSampler`; None: Trainer's own
        self.model_accepts_loss_kwargs = False  # losses are per-batch means
        self._training_sums: dict[str, torch.Tensor] = {}
        self.tta = "none"  # the prediction steps' test-time augmentation (`test_time_augmentation`)
        self.run_loss = EmoRegRunLoss()
        self.add_callback(self.run_loss)
        from .callbacks import install_callbacks

        install_callbacks(self)

    @property
    def loss_before_resume(self) -> float:
        """The training loss summed over the steps before a resumed checkpoint (kept by `run_loss`)."""
        return self.run_loss.before

    @loss_before_resume.setter
    def loss_before_resume(self, value: float) -> None:
        self.run_loss.before = float(value)

    @contextlib.contextmanager
    def _unmixed(self):
        """Evaluation batches are never mixed: mixup/cutmix belong to training only."""
        collator = self.data_collator
        if not getattr(collator, "mixes", False):
            yield
            return
        self.data_collator = collator.without_mixing()
        try:
            yield
        finally:
            self.data_collator = collator

    def get_eval_dataloader(self, eval_dataset=None):
        with self._unmixed():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        with self._unmixed():
            return super().get_test_dataloader(test_dataset)

    def _get_train_sampler(self, train_dataset=None):
        """The run's own training sampler when it has one (the override point TRL's trainers use too)."""
        if self.train_sampler is not None and (train_dataset is None or train_dataset is self.train_dataset):
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """Each micro-batch is finished on the device first (`finish_batch`), then trained on as Trainer does."""
        loss = super().training_step(model, self.finish_batch(inputs), num_items_in_batch)
        self.run_loss.add(loss)  # the step's loss as Trainer sums it, for the whole-run mean after a resume
        return loss

    def get_train_dataloader(self):
        """A streamed training split is split by rank here, with `datasets.distributed.split_dataset_by_node`
        (data/streaming.py), so accelerate must not split it again: its loader is prepared as one process's
        (device placement, nothing sharded). Map-style splits take Trainer's own path."""
        from .data.streaming import KeepSources, StreamedTrainSplit

        if not isinstance(self.train_dataset, StreamedTrainSplit):
            return super().get_train_dataloader()
        from accelerate.data_loader import prepare_data_loader
        from torch.utils.data import DataLoader

        args = self.args
        stream = self.train_dataset.assign(args.process_index, args.world_size, args.dataloader_num_workers)
        workers = args.dataloader_num_workers
        self.rows_per_source = torch.zeros(len(stream.sources), dtype=torch.int64)
        loader = DataLoader(
            stream,
            batch_size=args.train_batch_size,
            collate_fn=KeepSources(self.data_collator),
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers if workers else False,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
            multiprocessing_context=args.dataloader_multiprocessing_context if workers else None,
        )
        return prepare_data_loader(
            loader, self.accelerator.device, num_processes=1, process_index=0, dispatch_batches=False
        )

    def finish_batch(self, inputs: dict, finisher: Callable | None = None) -> dict:
        """The batch on the device (`accelerate.utils.send_to_device`, as Trainer would move it) with its uint8
        `pixel_values` finished by `finisher` (channels-last when the run asks); a new mapping, the loader's batch is left as it was. The
        training and prediction steps call it before Trainer's own input preparation, which then has
        nothing left to move; a batch finished twice is refused (`DeviceFinisher` takes uint8 only)."""
        from accelerate.utils import send_to_device

        inputs = send_to_device(dict(inputs), self.args.device)
        finisher = finisher or self.finisher
        if finisher is not None and inputs.get("pixel_values") is not None:
            pixels = finisher(inputs["pixel_values"])
            if self.channels_last and pixels.ndim == 4:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            inputs["pixel_values"] = (
                pixels.to(self.model.dtype) if self.model.dtype.is_floating_point else pixels
            )
        return inputs

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Evaluation and predict: the batch is finished on the device first (`finish_batch`); inside
        `test_time_augmentation`, the prediction averages its views (`tta_prediction_step`)."""
        if self.tta != "none":
            return self.tta_prediction_step(model, inputs, prediction_loss_only)
        return super().prediction_step(model, self.finish_batch(inputs), prediction_loss_only, ignore_keys)

    @contextlib.contextmanager
    def test_time_augmentation(self, mode: str):
        """Evaluations and predictions inside the block average the softmax over `mode`'s views (`tta`)."""
        check_mode(mode)
        previous, self.tta = self.tta, mode
        try:
            yield
        finally:
            self.tta = previous

    def tta_prediction_step(self, model, inputs, prediction_loss_only: bool):
        """One batch's prediction averaged over its test-time views, as (loss, logits, labels): the logits
        are the log of the averaged softmax, the loss its cross-entropy. Views go through the model in
        batches of at most the evaluation batch size. EmoReg's other outputs (ρ, e(x), features) are not
        averaged, so TTA reports classification metrics only (and no loss: see below)."""
        size = (
            tuple(self.finisher.size)
            if self.finisher is not None
            else tuple(inputs["pixel_values"].shape[-2:])
        )
        finisher = self.finisher
        if finisher is not None and self.tta == "ten_crop":  # finished once, straight at the larger size
            from .data import DeviceFinisher

            finisher = DeviceFinisher(enlarged_size(size), finisher.mean, finisher.std, finisher.rescale)
        batch = self.finish_batch(inputs, finisher)
        labels = batch.get("labels")
        layout = torch.channels_last if self.channels_last else torch.contiguous_format  # views are copies

        def logits_of(views: torch.Tensor) -> torch.Tensor:
            return model(pixel_values=views.contiguous(memory_format=layout)).logits

        with torch.no_grad(), self.compute_loss_context_manager():
            log_probs = averaged_log_probs(
                logits_of,
                batch["pixel_values"],
                self.tta,
                size,
                self.args.eval_batch_size,
            )
        # EmoReg's evaluation loss adds its responses' auxiliary terms: a plain cross-entropy beside it would
        # read as a better loss, so its TTA reports none.
        is_emoreg = hasattr(self.accelerator.unwrap_model(model), "optimizer_param_groups")
        loss = averaged_loss(log_probs, labels).detach() if labels is not None and not is_emoreg else None
        if prediction_loss_only:
            return loss, None, None
        return loss, log_probs, labels

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        sources = inputs.pop("source", None)  # a streamed split's rows: counted per source
        if sources is not None:
            counted = torch.bincount(sources, minlength=len(self.rows_per_source))
            self.rows_per_source = self.rows_per_source.to(counted.device) + counted
        labels = inputs.get("labels")
        is_emoreg = hasattr(self.accelerator.unwrap_model(model), "optimizer_param_groups")
        # Class weights shape the training objective only: evaluation losses stay plain cross-entropy, so
        # runs with and without them compare.
        weights = self.class_weights if model.training else None
        if weights is not None:
            weights = weights.to(self.accelerator.device)
        if is_emoreg:
            outputs = model(**inputs, label_smoothing=self.args.label_smoothing_factor, class_weights=weights)
            loss = outputs.loss
        else:
            outputs = model(pixel_values=inputs["pixel_values"])
            loss = None
            if labels is not None:
                smoothing = self.args.label_smoothing_factor
                loss = F.cross_entropy(
                    outputs.logits.float(), labels, weight=weights, label_smoothing=smoothing
                )
            outputs["loss"] = loss
        if model.training and labels is not None:
            self._accumulate_training_stats(outputs, labels)
        return (loss, outputs) if return_outputs else loss

    def _accumulate_training_stats(self, outputs, labels: torch.Tensor) -> None:
        """Running means over the logging window: accuracy on the (augmented) training batches and, for
        EmoReg, ρ and the emotion entropy; logged with the loss, so they land in trainer_state.json."""
        targets = labels.argmax(-1) if labels.ndim > 1 else labels  # mixup/cutmix: the dominant class
        step = {
            "accuracy": (outputs.logits.detach().argmax(-1) == targets).float().mean(),
            "steps": torch.ones((), device=labels.device),
        }
        if getattr(outputs, "regulation", None) is not None:
            rho = outputs.regulation.detach().float()
            step["rho_mean"] = rho.mean()
            step["rho_std"] = rho.std(unbiased=False)
            step["emotion_entropy"] = _entropy(outputs.emotion_probs.detach().float()).mean()
        for key, value in step.items():
            self._training_sums[key] = self._training_sums.get(key, 0) + value

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._training_sums:
            keys = sorted(self._training_sums)
            sums = torch.stack([torch.as_tensor(self._training_sums[k]).float() for k in keys])
            sums = self.accelerator.reduce(sums, reduction="sum")
            steps = sums[keys.index("steps")]
            for key, value in zip(keys, sums):
                if key != "steps":
                    logs[key] = round((value / steps).item(), 4)
            self._training_sums = {}
        super().log(scalars(logs), start_time)

    def create_optimizer(self, model=None):
        """EmoReg trains its affective pathway (when not frozen) at `learning_rate * affect_lr_scale`."""
        opt_model = self.accelerator.unwrap_model(self.model if model is None else model)
        if self.optimizer is None and hasattr(opt_model, "optimizer_param_groups"):
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = opt_model.optimizer_param_groups(self.args.learning_rate, self.args.weight_decay)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
            return self.optimizer
        return super().create_optimizer(model)
