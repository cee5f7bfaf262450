"""Stage 2: fine-tune EmoReg (or one of its controls) on a target image-classification data set.

    accelerate launch recipes/finetune.py [CONFIG.yaml] [--key value ...]

`--method emoreg` (default) builds the two-pathway model from a stage-1 checkpoint and a task backbone;
`baseline` trains the task backbone alone; `transfer` fine-tunes the affective backbone directly. With no
CONFIG it runs the embedded synthetic demo (recipes/demo/finetune.yaml) on the output of the demo pretrain.
"""

from pathlib import Path

from emoreg_hf.cli import RecipeArgumentParser, run_script
from emoreg_hf.configs import FinetuneArguments

DEMO_CONFIG = Path(__file__).parent / "demo" / "finetune.yaml"


def main() -> None:
    parser = RecipeArgumentParser(FinetuneArguments, DEMO_CONFIG, description=__doc__)
    args, training_args, config_path = parser.parse()
    # The training stack is imported only now: --help and a bad option answer in the parser's time.
    from transformers import set_seed

    from emoreg_hf.balance import balanced_sampler, class_balance, loss_weights
    from emoreg_hf.callbacks import PushAtEverySave
    from emoreg_hf.data import load_target_dataset, resolve_target_spec
    from emoreg_hf.data.splits import rows_before_cap
    from emoreg_hf.evaluation import build_compute_metrics, keep_logits_for_metrics
    from emoreg_hf.models import build_finetune_model, check_checkpoints, emotion_labels
    from emoreg_hf.recording import finetune_fields
    from emoreg_hf.run_dir import begin_run, begin_training, finish_run, prepare_output_dir
    from emoreg_hf.trainer import EmoRegTrainer
    from emoreg_hf.training import cap, input_pipeline, setup_logging, train_and_evaluate
    from emoreg_hf.training_options import (
        check_streaming,
        choose_intervals,
        known_rows,
        prepare_training,
        pushes_every_save,
    )

    setup_logging(training_args)
    if begin_run(training_args, args, headline="test_accuracy"):
        return  # this very run is finished: nothing to do
    hub = prepare_training(training_args, parser.given_keys)
    balancing = args.class_weighting != "none" or args.class_balanced_sampler
    check_streaming(training_args, [resolve_target_spec(args.dataset)], class_balance=balancing)
    check_checkpoints(args, from_demo_config=parser.from_demo_config)
    checkpoint = prepare_output_dir(training_args, overwrite=args.overwrite_output_dir, hub=hub)
    set_seed(training_args.seed)

    target = resolve_target_spec(args.dataset)
    with training_args.main_process_first(desc="loading the target data set"):
        splits = load_target_dataset(
            target,
            validation_split_size=args.validation_split_size,
            seed=training_args.seed,
            on_bad_image=args.on_bad_image,
        )
    rows_dropped = splits.rows_dropped  # drop_unseen_classes, drop_unlabeled, ...: the record says them
    label_names = splits["validation"].features["label"].names  # map-style, also when train streams
    uncapped = rows_before_cap(splits)
    splits = {
        name: cap(
            split, args.max_train_samples if name == "train" else args.max_eval_samples, training_args.seed
        )
        for name, split in splits.items()
    }

    balance = class_balance(args, splits["train"], label_names)
    model, model_geometry = build_finetune_model(args, label_names)
    prepared, collator, processor, finisher = input_pipeline(splits, model_geometry, args, len(label_names))

    begin_training(training_args, args, overwrite=args.overwrite_output_dir, checkpoint=checkpoint)
    choose_intervals(
        training_args, parser.given_keys, train_rows=known_rows(splits["train"]), has_validation=True
    )
    trainer = EmoRegTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared["train"],
        eval_dataset=prepared["validation"],
        data_collator=collator,
        processing_class=processor,
        compute_metrics=build_compute_metrics(
            label_names, emotion_labels(model), model if emotion_labels(model) else None
        ),
        preprocess_logits_for_metrics=keep_logits_for_metrics,
        finisher=finisher,
        class_weights=loss_weights(balance),
        train_sampler=balanced_sampler(balance, splits["train"], training_args.seed),
    )
    if pushes_every_save(training_args, hub):
        trainer.add_callback(PushAtEverySave(hub))
    results, files = train_and_evaluate(
        trainer, prepared, checkpoint=checkpoint, label_names=label_names, extra_results=uncapped
    )

    if trainer.is_world_process_zero():
        finish_run(
            training_args,
            args,
            config_path=config_path,
            image_size=model_geometry["size"],
            results=results,
            files=files,
            push=hub,
            class_balance=balance,
            headline="test_accuracy",
            **finetune_fields(
                args, model, target, prepared, rows_dropped
            ),  # a streamed split: rows trained on
        )


if __name__ == "__main__":
    run_script(main)
