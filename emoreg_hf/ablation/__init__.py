"""The ablation matrix: EmoReg's variants and their controls × seeds, run through the recipes, reported
with intervals and paired differences. `config` reads the matrix, `plan` lists its runs, `runner` runs those
not finished yet through a launcher (`local`: here, several at once; `slurm`: job arrays), `summary` /
`render` / `report` write `results.json` / `results.md` / `results.png`, `cli` is `recipes/ablate.py`."""

from __future__ import annotations

from .cli import build_launcher, help_parser, main, split_launch_options
from .config import AblationConfig, load_config, parse_overrides
from .local import LocalLauncher
from .plan import PlannedRun, plan_runs
from .render import plot_results, render_markdown
from .report import render_report, write_report
from .runner import Logger, MatrixFailed, run_matrix
from .slurm import SlurmLauncher
from .summary import collect_records, summarize

__all__ = [
    "AblationConfig",
    "LocalLauncher",
    "Logger",
    "MatrixFailed",
    "PlannedRun",
    "SlurmLauncher",
    "build_launcher",
    "collect_records",
    "help_parser",
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
