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
    from emoreg_hf.data import load_target_dataset, resolve_target_spec
    from emoreg_hf.data.splits import rows_before_cap
    from emoreg_hf.evaluation import build_compute_metrics, keep_logits_for_metrics
    from emoreg_hf.finish import finetune_fields
    from emoreg_hf.models import build_finetune_model, check_checkpoints, emotion_labels
    from emoreg_hf.recipe import RecipeRun
    from emoreg_hf.training import cap

    # Setup: refusals come before any data is loaded.
    run = RecipeRun(parser, args, training_args, config_path)
    if run.begin():
        return  # this very run is finished: nothing to do
    run.check_streaming([resolve_target_spec(args.dataset)])
    check_checkpoints(args, from_demo_config=parser.from_demo_config)
    run.prepare_output_dir()

    # Data
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
    run.class_balance(splits["train"], label_names)

    # Model
    model, model_geometry = build_finetune_model(args, label_names)

    # Trainer, results, then the record, card and push
    emotions = emotion_labels(model)
    run.build_trainer(
        model,
        model_geometry,
        splits,
        label_names,
        compute_metrics=build_compute_metrics(label_names, emotions, model if emotions else None),
        preprocess_logits_for_metrics=keep_logits_for_metrics,
    )
    run.train_and_evaluate(extra_results=uncapped)
    # a streamed training split: the rows trained on
    run.finish(lambda: finetune_fields(args, model, target, run.prepared, rows_dropped))


if __name__ == "__main__":
    run_script(main)
