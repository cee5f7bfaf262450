"""`recipes/ablate.py`'s command line: its options and `-h`, the launcher chosen from `LAUNCHERS`, then the
matrix run (`runner.run_matrix`) and its report written, or finished studies' reports and cards again."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import registry
from ..config_reading import read_overrides, split_config_argument, yaml_value
from .config import load_config, matrix_keys
from .local import LocalLauncher
from .plan import plan_runs
from .report import render_report, write_report
from .runner import Logger, MatrixFailed, check_replaced_runs, run_matrix
from .slurm import SlurmLauncher

# Where the runs execute, by name (`--launcher NAME`): each launcher class declares its `name`, its `summary`,
# its options (`arguments`) and how it is built from them (`from_options`); a new launcher is one entry here.
LAUNCHERS = {launcher.name: launcher for launcher in (LocalLauncher, SlurmLauncher)}
# The launchers' options, not part of the matrix (they change no result, and the report does not name them):
# option -> the launchers that take it (`--sbatch.KEY`, a family of options, is read apart).
LAUNCH_KEYS = {
    "launcher": tuple(LAUNCHERS),
    **{
        key: tuple(name for name, other in LAUNCHERS.items() if key in other.arguments)
        for launcher in LAUNCHERS.values()
        for key in launcher.arguments
        if "." not in key
    },
}
DEFAULT_LAUNCHER = LocalLauncher.name


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
        "--launcher",
        choices=tuple(LAUNCHERS),
        help=" or ".join(launcher.summary for launcher in LAUNCHERS.values()),
    )
    for launcher in LAUNCHERS.values():
        for key, (metavar, text) in launcher.arguments.items():
            where.add_argument(f"--{key}", metavar=metavar, help=f"{launcher.name}: {text}")
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
    kind = launch.get("launcher", DEFAULT_LAUNCHER)
    if kind not in LAUNCHERS:
        raise ValueError(f"--launcher must be {' or '.join(LAUNCHERS)}, got {kind!r}")
    launcher = LAUNCHERS[kind]
    wrong = [k for k in launch if k != "launcher" and kind not in LAUNCH_KEYS[k]]
    if sbatch and "sbatch.KEY" not in launcher.arguments:
        wrong.append("sbatch." + next(iter(sbatch)))
    if wrong:
        raise ValueError(f"--{wrong[0]} does not apply to --launcher {kind}")
    return launcher.from_options(launch, sbatch)


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
