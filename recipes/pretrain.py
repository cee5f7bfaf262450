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
    from emoreg_hf.data import (
        check_sources_available,
        infer_color_mode,
        load_stage1_data,
        resolve_target_spec,
    )
    from emoreg_hf.data.streaming import with_streamed_counts
    from emoreg_hf.evaluation import build_compute_metrics, stage1_label_statistics
    from emoreg_hf.finish import pretrain_fields
    from emoreg_hf.models import build_pretrain_model, check_checkpoints
    from emoreg_hf.recipe import RecipeRun
    from emoreg_hf.training import cap

    # Setup: refusals come before any data is loaded.
    run = RecipeRun(parser, args, training_args, config_path)
    if run.begin():
        return  # this very run is finished: nothing to do
    stage1_sources = args.affective_sources or [resolve_target_spec(args.target_dataset)]
    run.check_streaming(stage1_sources, kmeans_labels=args.kmeans_labels)
    check_sources_available(stage1_sources)
    check_checkpoints(args)
    run.prepare_output_dir()

    # Data
    with training_args.main_process_first(desc="loading the stage-1 data"):
        data = load_stage1_data(args, training_args.seed, cap)
    splits, data_report, names = data["splits"], data["report"], data["names"]
    run.class_balance(splits["train"], names)

    # Model
    color_mode = (
        args.color_mode
        if args.color_mode != "auto"
        else infer_color_mode(splits["train"], on_bad_image=args.on_bad_image)
    )
    model, model_geometry = build_pretrain_model(args, names, color_mode, taxonomy=data["taxonomy"])

    # Trainer, results, then the record, card and push
    run.build_trainer(model, model_geometry, splits, names, compute_metrics=build_compute_metrics(names))
    run.train_and_evaluate(extra_results={**stage1_label_statistics(data_report), **data["rows_before_cap"]})
    run.finish(
        lambda: pretrain_fields(
            args,
            model,
            splits,
            with_streamed_counts(data_report, run.prepared["train"]),
            specs=data["specs"],
            taxonomy=data["taxonomy"],
        )
    )


if __name__ == "__main__":
    run_script(main)
