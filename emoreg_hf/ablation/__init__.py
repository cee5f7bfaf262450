"""The ablation matrix: EmoReg's variants and their controls × seeds, run through the recipes, reported
with intervals and paired differences. `config` reads the matrix, `runner` plans and tracks its runs,
`launch` executes them (here, several at once, or on Slurm), `report` writes `results.md` / `results.json` /
`results.png`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import registry
from ..config_reading import read_overrides, split_config_argument, yaml_value
from .config import AblationConfig, load_config, matrix_keys, parse_overrides
from .launch import LocalLauncher, SlurmLauncher
from .report import collect_records, plot_results, render_markdown, render_report, summarize, write_report
from .runner import Logger, MatrixFailed, PlannedRun, check_replaced_runs, plan_runs, run_matrix

# Where the runs execute; not part of the matrix (they change no result, and the report does not name them).
LAUNCH_KEYS = {
    "launcher": ("local", "slurm"),
    "parallel": ("local",),
    "threads": ("local",),
    "devices": ("local",),
    "wait": ("slurm",),
    "accelerate_config": ("slurm",),
}


def methods_help() -> str:
    """`--methods`' help, from the registry: how many entries the matrix has, the default ones, the others."""
    default = registry.default_arms()
    optional = [f"{name} – {arm.description}" for name, arm in registry.MATRIX.items() if name not in default]
    return (
        f"methods to run, of the {len(registry.MATRIX)} the matrix knows; default the {len(default)} of "
        f"{', '.join(default)}; optional: {'; '.join(optional)}"
    )


def help_parser(description: str = "") -> argparse.ArgumentParser:
    """The `-h` of `ablate.py`: the matrix keys and the per-stage recipe keys."""
    parser = argparse.ArgumentParser(
        prog="ablate.py",
        usage="%(prog)s [CONFIG.yaml | --config CONFIG.yaml] [--key value ...]\n"
        "       %(prog)s --report STUDY_DIR [STUDY_DIR ...] [--cards DIR]",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="CONFIG.yaml", help="the config file, the same as giving it first"
    )
    parser.add_argument(
        "--report",
        metavar="STUDY_DIR",
        nargs="+",
        help="train nothing: render results.md / .json / .png of finished studies again from their records/ "
        "(e.g. benchmarks/results/real_small)",
    )
    parser.add_argument(
        "--cards",
        metavar="DIR",
        help="with --report: also render each study's model cards from its records/, as recipes/push.py "
        "would publish them, into DIR/<study>/<stage>/<name>/ (the project's: model_cards/reference)",
    )
    matrix = parser.add_argument_group("the matrix (also keys of CONFIG.yaml)")
    matrix.add_argument("--methods", metavar="A,B", help=methods_help())
    matrix.add_argument(
        "--seeds", metavar="N | A,B", help="a count (3 = seeds 0, 1, 2; the default) or a list"
    )
    matrix.add_argument(
        "--stage1_seeds",
        metavar="N | A,B",
        help="train stage 1 for these seeds only (a count or a list), each read by several stage-2 seeds; "
        "default: one stage 1 per stage-2 seed",
    )
    matrix.add_argument("--output_dir", metavar="DIR", help="where the runs and the report go")
    matrix.add_argument("--title", metavar="TEXT", help="the report's title")
    matrix.add_argument("--notes", metavar="TEXT", help="a paragraph added to the report")
    matrix.add_argument(
        "--overwrite",
        action="store_true",
        help="replace finished runs of another configuration in --output_dir (refused otherwise)",
    )
    owned = {stage: ", ".join(sorted(matrix_keys(stage))) for stage in ("pretrain", "finetune")}
    stages = parser.add_argument_group(
        "recipe keys of one stage (every key `recipes/pretrain.py -h` / `recipes/finetune.py -h` lists; "
        f"values are YAML), but those the matrix sets in each run (pretrain: {owned['pretrain']}; finetune: "
        f"{owned['finetune']})"
    )
    stages.add_argument("--pretrain.KEY", metavar="VALUE", help="e.g. --pretrain.num_train_epochs 5")
    stages.add_argument(
        "--finetune.KEY", metavar="VALUE", help="e.g. --finetune.dataset '{path: /path/to/cifar10}'"
    )
    where = parser.add_argument_group("where the runs execute (results do not depend on it; docs/cluster.md)")
    where.add_argument(
        "--launcher", choices=("local", "slurm"), help="this machine (the default) or Slurm job arrays"
    )
    where.add_argument(
        "--parallel",
        metavar="N",
        help="local: runs at once (default 1); GPUs are shared evenly between them, without GPUs the CPU cores",
    )
    where.add_argument(
        "--threads", metavar="N", help="local: CPU threads per run (default: cores / parallel)"
    )
    where.add_argument(
        "--devices",
        metavar="0,1,..|cpu",
        help="local: the GPUs to use (default: every visible one); `cpu` trains on the CPU",
    )
    where.add_argument(
        "--sbatch.KEY",
        metavar="VALUE",
        help="slurm: an sbatch option for every run, e.g. --sbatch.partition gpu --sbatch.gres gpu:1 "
        "--sbatch.time 04:00:00 --sbatch.cpus_per_task 8",
    )
    where.add_argument(
        "--accelerate_config",
        metavar="NAME",
        help="slurm: recipes/launch.slurm's accelerate config per run (default auto: ddp over the job's GPUs, "
        "cpu without)",
    )
    where.add_argument(
        "--wait",
        metavar="BOOL",
        help="slurm: wait for the jobs and write the report (default true); false submits and returns, and "
        "the same command collects later",
    )
    return parser


def split_launch_options(argv: Sequence[str]) -> tuple[dict, dict, list[str]]:
    """`--launcher`, `--parallel`, ..., `--sbatch.KEY` out of an ablate.py command line:
    `(launch options, sbatch options, the rest)`; the rest defines the matrix."""
    rest: list[str] = []
    launch: dict = {}
    sbatch: dict = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        key = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else None
        if key is None or not (key in LAUNCH_KEYS or key.startswith("sbatch.")):
            rest.append(token)
            i += 1
            continue
        taken = (
            1 if "=" in token else (2 if i + 1 < len(tokens) and not tokens[i + 1].startswith("--") else 1)
        )
        (value,) = read_overrides(tokens[i : i + taken]).values()
        if key.startswith("sbatch."):
            sbatch[key.split(".", 1)[1]] = yaml_value(value)
        else:
            launch[key] = value
        i += taken
    return launch, sbatch, rest


def build_launcher(launch: dict, sbatch: dict):
    """The launcher the options ask for; options of the other launcher are refused by name."""
    kind = launch.get("launcher", "local")
    if kind not in ("local", "slurm"):
        raise ValueError(f"--launcher must be local or slurm, got {kind!r}")
    wrong = [k for k in launch if k != "launcher" and kind not in LAUNCH_KEYS[k]]
    if kind == "local" and sbatch:
        wrong.append("sbatch." + next(iter(sbatch)))
    if wrong:
        raise ValueError(f"--{wrong[0]} does not apply to --launcher {kind}")

    def integer(name: str) -> int | None:
        if name not in launch:
            return None
        try:
            return int(launch[name])
        except ValueError:
            raise ValueError(f"--{name}: expected a whole number, got {launch[name]!r}") from None

    if kind == "local":
        devices = launch.get("devices")
        if devices is not None:
            devices = (
                [] if devices.strip().lower() in ("cpu", "none", "") else devices.replace(" ", "").split(",")
            )
        parallel = integer("parallel")
        return LocalLauncher(1 if parallel is None else parallel, threads=integer("threads"), devices=devices)
    wait = str(launch.get("wait", "true")).lower()
    if wait not in ("true", "false"):
        raise ValueError(f"--wait must be true or false, got {launch['wait']!r}")
    return SlurmLauncher(
        sbatch, wait=wait == "true", accelerate_config=launch.get("accelerate_config", "auto")
    )


def report_only(argv: Sequence[str], *, log=print) -> dict:
    """`--report STUDY_DIR ... [--cards DIR]`: each study's report again from its records (or results.json),
    and with `--cards` its reference cards from its records; a study without records gets a line saying it
    has none, not an error (its report still renders from results.json)."""
    from .cards import NoRecordsError, write_reference_cards

    argv = list(argv)
    cards = None
    if "--cards" in argv:
        at = argv.index("--cards")
        if at + 1 >= len(argv) or argv[at + 1].startswith("--"):
            raise ValueError("--cards needs the folder to write the cards into")
        cards = argv[at + 1]
        del argv[at : at + 2]
    if not argv:
        raise ValueError("--report needs at least one study folder")
    unknown = [a for a in argv if a.startswith("--")]
    if unknown:
        raise ValueError(f"--report takes study folders and --cards DIR only, got {unknown[0]}")
    if cards is not None:
        from ..publish.export import check_folder_target

        check_folder_target(cards, "--cards")  # a file there: said now, not as a traceback after the reports
    out: dict = {"results": {}, "cards": {}}
    for folder in argv:
        out["results"][folder] = render_report(folder, log=log)
        if cards is not None:
            try:
                out["cards"][folder] = write_reference_cards(folder, cards, log=log)
            except NoRecordsError as error:
                log(f"cards: none for {folder}: {error}")
                out["cards"][folder] = []
    return out


def main(
    argv: Sequence[str] | None = None,
    *,
    recipes_dir: str | Path,
    default_config: str | Path,
    description: str = "",
) -> dict:
    """`ablate.py [CONFIG.yaml] [--key value ...]`: run the matrix, then write its report.
    `ablate.py --report STUDY_DIR ...`: render the reports of finished studies again from their records."""
    as_script = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        help_parser(description).print_help()
        raise SystemExit(0)
    if argv and argv[0] == "--report":
        try:
            return report_only(argv[1:], log=print)
        except (ValueError, FileNotFoundError) as error:
            if not as_script:
                raise
            help_parser(description).error(str(error))
    for option in ("--cards", "--report"):
        if any(a == option or a.startswith(f"{option}=") for a in argv):
            error = (
                "--report comes first: ablate.py --report STUDY_DIR [STUDY_DIR ...] [--cards DIR]"
                if option == "--report"
                else "--cards needs --report: ablate.py --report STUDY_DIR [STUDY_DIR ...] --cards DIR renders "
                "finished studies' cards (running a matrix writes none; publish a run with recipes/push.py)"
            )
            if not as_script:
                raise ValueError(error)
            help_parser(description).error(error)
    overwrite = "--overwrite" in argv
    argv = [a for a in argv if a != "--overwrite"]
    try:
        path, argv = split_config_argument(argv)
        path = path or str(default_config)
        launch, sbatch, argv = split_launch_options(argv)
        launcher = build_launcher(launch, sbatch)
        config = load_config(path, argv, repo_root=Path(recipes_dir).parent)
        check_replaced_runs(config, plan_runs(config), overwrite=overwrite)
    except (ValueError, FileNotFoundError) as error:
        if not as_script:
            raise
        help_parser(description).error(str(error))
    log = Logger(Path(config.output_dir) / "ablation.log")
    log(f"config {path}" + (f" with overrides {' '.join(argv)}" if argv else ""))
    try:
        summary = run_matrix(config, recipes_dir=recipes_dir, log=log, launcher=launcher, overwrite=overwrite)
    except (MatrixFailed, ValueError) as error:
        if not as_script:
            raise
        print(f"ablate.py: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    if summary["waiting"]:  # submitted to a scheduler, not waited for: the same command collects later
        return {"runs": summary, "results": None}
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    command = shlex.join(["python", "recipes/ablate.py", shown, *argv])
    result = write_report(config, command=command, log=log)
    print((Path(config.output_dir) / "results.md").read_text())
    return {"runs": summary, "results": result}


__all__ = [
    "AblationConfig",
    "LocalLauncher",
    "Logger",
    "MatrixFailed",
    "PlannedRun",
    "SlurmLauncher",
    "collect_records",
    "load_config",
    "main",
    "parse_overrides",
    "plan_runs",
    "plot_results",
    "render_markdown",
    "render_report",
    "run_matrix",
    "split_launch_options",
    "summarize",
    "write_report",
]
