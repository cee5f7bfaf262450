"""The sequence both recipes (recipes/pretrain.py, recipes/finetune.py) share, from the parsed options to the
finished run's record: `RecipeRun`. Each recipe keeps what is its own: refusals, data, model, metrics, record."""

from __future__ import annotations

from collections.abc import Callable

from transformers import set_seed

from .balance import balanced_sampler, class_balance, loss_weights
from .callbacks import PushAtEverySave
from .ema import WeightEMA
from .finish import finish_run
from .run_dir import begin_run, begin_training, prepare_output_dir
from .trainer import EmoRegTrainer
from .training import input_pipeline, setup_logging, train_and_evaluate
from .training_options import (
    check_streaming,
    choose_intervals,
    known_rows,
    prepare_training,
    pushes_every_save,
    sharded_training,
)

HEADLINE = "test_accuracy"  # the result a run's record, console line and card lead with


class RecipeRun:
    """The steps both recipes take, in their order, from the parsed options to the finished run's record. A
    recipe adds what is its own between them: its refusals, its data, its model, its metrics, its record's
    fields. Refusals come before any data is loaded::

        run = RecipeRun(parser, args, training_args, config_path)
        if run.begin():
            return  # this very run is finished: nothing to do
        run.check_streaming(sources)  # then the stage's own refusals
        run.prepare_output_dir()
        ...  # load the splits
        run.class_balance(splits["train"], label_names)
        ...  # build the model
        run.build_trainer(model, model_geometry, splits, label_names, compute_metrics=...)
        run.train_and_evaluate(extra_results=...)
        run.finish(lambda: stage_fields(...))
    """

    def __init__(self, parser, args, training_args, config_path):
        self.parser, self.args = parser, args
        self.training_args, self.config_path = training_args, config_path
        self.hub = None  # where the run pushes (`prepare_training`), or None
        self.checkpoint: str | None = None  # the checkpoint it resumes from
        self.balance = None  # `balance.class_balance`: the loss weights or sampler of training, or None
        self.prepared: dict | None = None  # the splits as the trainer reads them (`input_pipeline`)
        self.label_names, self.image_size = None, None  # the model's classes and input size
        self.trainer: EmoRegTrainer | None = None
        self.results, self.files = None, None  # `train_and_evaluate`'s results and result files

    def begin(self) -> bool:
        """Set up logging; True when this very run is already finished (nothing to do). Otherwise check and
        complete the training options."""
        setup_logging(self.training_args)
        if begin_run(self.training_args, self.args, headline=HEADLINE):
            return True
        self.hub = prepare_training(self.training_args, self.parser.given_keys)
        sharded = sharded_training(self.training_args)
        if self.args.ema_decay is not None and sharded:
            raise ValueError(
                f"--ema_decay: the EMA of the weights averages the whole model on every rank, and {sharded} "
                "shards it; train without --ema_decay, or with DDP (recipes/accelerate_configs/ddp.yaml)"
            )
        return False

    def check_streaming(self, sources, **kwargs) -> None:
        """`training_options.check_streaming` for these sources, told whether the run balances classes."""
        balancing = self.args.class_weighting != "none" or self.args.class_balanced_sampler
        check_streaming(self.training_args, sources, class_balance=balancing, **kwargs)

    def prepare_output_dir(self) -> None:
        """The output folder (and the checkpoint to resume from, if any), then the seed."""
        self.checkpoint = prepare_output_dir(
            self.training_args, overwrite=self.args.overwrite_output_dir, hub=self.hub
        )
        set_seed(self.training_args.seed)

    def class_balance(self, train, label_names):
        """The class balance of the training split (`balance.class_balance`), kept for the trainer and record."""
        self.balance = class_balance(self.args, train, label_names)
        return self.balance

    def build_trainer(
        self, model, model_geometry: dict, splits, label_names, **trainer_kwargs
    ) -> EmoRegTrainer:
        """The input pipeline, the run's start in its folder, the logging and evaluation intervals, then the
        trainer (`trainer_kwargs`: `compute_metrics`, ...), which pushes at every save when asked to."""
        args, training_args = self.args, self.training_args
        self.prepared, collator, processor, finisher = input_pipeline(
            splits, model_geometry, args, len(label_names)
        )
        self.image_size, self.label_names = model_geometry["size"], label_names
        begin_training(training_args, args, overwrite=args.overwrite_output_dir, checkpoint=self.checkpoint)
        choose_intervals(
            training_args, self.parser.given_keys, train_rows=known_rows(splits["train"]), has_validation=True
        )
        self.trainer = EmoRegTrainer(
            model=model,
            args=training_args,
            train_dataset=self.prepared["train"],
            eval_dataset=self.prepared["validation"],
            data_collator=collator,
            processing_class=processor,
            finisher=finisher,
            class_weights=loss_weights(self.balance),
            train_sampler=balanced_sampler(self.balance, splits["train"], training_args.seed),
            channels_last=args.channels_last,
            **trainer_kwargs,
        )
        if args.ema_decay is not None:  # after every optimizer step, on the unwrapped model of every rank
            self.trainer.add_callback(WeightEMA(args.ema_decay, warmup=args.ema_warmup))
        if pushes_every_save(training_args, self.hub):
            self.trainer.add_callback(PushAtEverySave(self.hub))
        return self.trainer

    def train_and_evaluate(self, extra_results: dict | None = None) -> tuple[dict, dict[str, str]]:
        """`train_and_evaluate` from the checkpoint found; the results and result files are kept for `finish`."""
        self.results, self.files = train_and_evaluate(
            self.trainer,
            self.prepared,
            checkpoint=self.checkpoint,
            label_names=self.label_names,
            extra_results=extra_results,
            tta=self.args.tta,
            ema_save=self.args.ema_save,
        )
        return self.results, self.files

    def finish(self, record_fields: Callable[[], dict]) -> None:
        """On the main process: the run record with the stage's own fields (`record_fields()`, read only
        there), the card and the push (`finish.finish_run`)."""
        if not self.trainer.is_world_process_zero():
            return
        finish_run(
            self.training_args,
            self.args,
            config_path=self.config_path,
            image_size=self.image_size,
            results=self.results,
            files=self.files,
            push=self.hub,
            class_balance=self.balance,
            headline=HEADLINE,
            **record_fields(),
        )
