"""The ablation matrix: EmoReg's variants and their controls × seeds, run through the recipes, reported
with intervals and paired differences. `config` reads the matrix, `runner` runs it, `report` writes
`results.md` / `results.json` / `results.png`."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import registry
from ..cli import split_config_argument
from .config import AblationConfig, load_config, parse_overrides
from .report import collect_records, plot_results, render_markdown, summarize, write_report
from .runner import Logger, PlannedRun, plan_runs, run_matrix


def help_parser(description: str = "") -> argparse.ArgumentParser:
    """The `-h` of `ablate.py`: the matrix keys and the per-stage recipe keys."""
    parser = argparse.ArgumentParser(
        prog="ablate.py",
        usage="%(prog)s [CONFIG.yaml | --config CONFIG.yaml] [--key value ...]",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", metavar="CONFIG.yaml", help="the config file, the same as giving it first"
    )
    matrix = parser.add_argument_group("the matrix (also keys of CONFIG.yaml)")
    matrix.add_argument(
        "--methods",
        metavar="A,B",
        help=f"methods to run (default: {', '.join(registry.default_arms())}); available: "
        f"{', '.join(registry.MATRIX)}",
    )
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
    stages = parser.add_argument_group(
        "recipe keys of one stage (every key `recipes/pretrain.py -h` / `recipes/finetune.py -h` lists; "
        "values are YAML)"
    )
    stages.add_argument("--pretrain.KEY", metavar="VALUE", help="e.g. --pretrain.num_train_epochs 5")
    stages.add_argument(
        "--finetune.KEY", metavar="VALUE", help="e.g. --finetune.dataset '{path: /path/to/cifar10}'"
    )
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    recipes_dir: str | Path,
    default_config: str | Path,
    description: str = "",
) -> dict:
    """`ablate.py [CONFIG.yaml] [--key value ...]`: run the matrix, then write its report."""
    as_script = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        help_parser(description).print_help()
        raise SystemExit(0)
    try:
        path, argv = split_config_argument(argv)
        path = path or str(default_config)
        config = load_config(path, argv, repo_root=Path(recipes_dir).parent)
    except (ValueError, FileNotFoundError) as error:
        if not as_script:
            raise
        help_parser(description).error(str(error))
    log = Logger(Path(config.output_dir) / "ablation.log")
    log(f"config {path}" + (f" with overrides {' '.join(argv)}" if argv else ""))
    summary = run_matrix(config, recipes_dir=recipes_dir, log=log)
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    command = "Reproduce: `" + shlex.join(["python", "recipes/ablate.py", shown, *argv]) + "`"
    result = write_report(config, command=command, log=log)
    print((Path(config.output_dir) / "results.md").read_text())
    return {"runs": summary, "results": result}


__all__ = [
    "AblationConfig",
    "Logger",
    "PlannedRun",
    "collect_records",
    "load_config",
    "main",
    "parse_overrides",
    "plan_runs",
    "plot_results",
    "render_markdown",
    "run_matrix",
    "summarize",
    "write_report",
]
