r"""Run the ablation matrix (methods x seeds) through the pretrain/finetune recipes, then aggregate it.

    python recipes/ablate.py [CONFIG.yaml] [--key value ...]

With no CONFIG it runs the embedded demo matrix (recipes/ablations/demo.yaml: synthetic data, CPU, offline).
Each run is a subprocess `python recipes/{pretrain,finetune}.py <run>/ablation_run.yaml`, so the matrix
runs the same code as users. Stage-1 models are trained once per (variant, seed) and shared; a finished
run is skipped when the command is repeated, so an interrupted matrix resumes where it stopped.

Config keys: `pretrain` and `finetune` (recipe keys for each stage; `config: <recipe YAML>` as the base,
or just the YAML's path), `methods` (entries of the matrix: `--methods` below lists the default ones
and the optional ones, from emoreg_hf.registry), `seeds` (a count or a list; default 3 = seeds 0, 1, 2),
`stage1_seeds`, `output_dir`, `title`, `notes`, `analysis`.

Overrides: `--STAGE.KEY VALUE` sets a recipe key of one stage; `--seeds`, `--methods`, `--output_dir`
set the matrix. Values are YAML, so lists and dicts work (quote them for the shell):

    python recipes/ablate.py recipes/ablations/real_small.yaml \
        --pretrain.affective_sources '[{path: imagefolder, data_dir: /path/to/fer2013}]' \
        --finetune.dataset '{path: /path/to/cifar10}' \
        --seeds 3 --methods baseline,emoreg_adaptive,shuffled_emotion

Output: `<output_dir>/{pretrain,finetune}/<variant or method>/seed<N>/` (one recipe run each, with its
YAML and log), `ablation.log`, `records/` (each run's record, results and log history and the study's
`study.yaml`, local paths replaced) and `results.md`, `results.json`, `results.png`.

    python recipes/ablate.py --report STUDY_DIR [STUDY_DIR ...] [--cards DIR]

trains nothing: it writes a finished study's `results.json` again from its `records/` (when it has them)
and `results.md` / `results.png` from `results.json`, e.g. `--report benchmarks/results/real_small`;
`--cards DIR` also renders the model card of each method (over its seeds) and of each stage-1 variant from
`records/`, as `recipes/push.py` would publish them, into `DIR/<study>/<stage>/<name>/` (`make results`:
the published studies' into `model_cards/reference/`).
"""

from pathlib import Path

from emoreg_hf.ablation.cli import main

HERE = Path(__file__).parent

if __name__ == "__main__":
    main(recipes_dir=HERE, default_config=HERE / "ablations" / "demo.yaml", description=__doc__)
