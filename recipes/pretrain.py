"""Stage 1: train an image-classification backbone on emotion labels from a mixture of affective data sets.

    accelerate launch recipes/pretrain.py [CONFIG.yaml] [--key value ...]

With no CONFIG it runs the embedded synthetic demo (recipes/demo/pretrain.yaml).
"""

from pathlib import Path

from emoreg_hf.cli import RecipeArgumentParser, run_script
from emoreg_hf.configs import PretrainArguments

DEMO_CONFIG = Path(__file__).parent / "demo" / "pretrain.yaml"


def main() -> None:
    parser = RecipeArgumentParser(PretrainArguments, DEMO_CONFIG, description=__doc__)
    args, training_args, config_path = parser.parse()
    # The training stack is imported only now: --help and a bad option answer in the parser's time.
    from transformers import set_seed

    from emoreg_hf.balance import balanced_sampler, class_balance, loss_weights
    from emoreg_hf.callbacks import PushAtEverySave
    from emoreg_hf.data import (
        check_sources_available,
        infer_color_mode,
        load_stage1_data,
        resolve_target_spec,
    )
    from emoreg_hf.data.streaming import with_streamed_counts
    from emoreg_hf.evaluation import build_compute_metrics, stage1_label_statistics
    from emoreg_hf.models import build_pretrain_model, check_checkpoints
    from emoreg_hf.recording import pretrain_fields
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
    stage1_sources = args.affective_sources or [resolve_target_spec(args.target_dataset)]
    balancing = args.class_weighting != "none" or args.class_balanced_sampler
    check_streaming(training_args, stage1_sources, kmeans_labels=args.kmeans_labels, class_balance=balancing)
    check_sources_available(stage1_sources)
    check_checkpoints(args)
    checkpoint = prepare_output_dir(training_args, overwrite=args.overwrite_output_dir, hub=hub)
    set_seed(training_args.seed)

    with training_args.main_process_first(desc="loading the stage-1 data"):
        data = load_stage1_data(args, training_args.seed, cap)
    splits, data_report, names = data["splits"], data["report"], data["names"]

    balance = class_balance(args, splits["train"], names)
    color_mode = args.color_mode if args.color_mode != "auto" else infer_color_mode(splits["train"])
    model, model_geometry = build_pretrain_model(args, names, color_mode, taxonomy=data["taxonomy"])
    prepared, collator, processor, finisher = input_pipeline(splits, model_geometry, args, len(names))

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
        compute_metrics=build_compute_metrics(names),
        finisher=finisher,
        class_weights=loss_weights(balance),
        train_sampler=balanced_sampler(balance, splits["train"], training_args.seed),
    )
    if pushes_every_save(training_args, hub):
        trainer.add_callback(PushAtEverySave(hub))
    results, files = train_and_evaluate(
        trainer,
        prepared,
        checkpoint=checkpoint,
        label_names=names,
        extra_results={**stage1_label_statistics(data_report), **data["rows_before_cap"]},
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
            **pretrain_fields(
                args,
                model,
                splits,
                with_streamed_counts(data_report, prepared["train"]),
                specs=data["specs"],
                taxonomy=data["taxonomy"],
            ),
        )


if __name__ == "__main__":
    run_script(main)
