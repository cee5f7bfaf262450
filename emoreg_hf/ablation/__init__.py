"""The ablation matrix: EmoReg's variants and their controls × seeds, run through the recipes, reported
with intervals and paired differences. `config` reads the matrix, `runner` runs it, `report` writes
`results.md` / `results.json` / `results.png`."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import (
    CONTROL_PAIRS,
    DEFAULT_METHODS,
    DESCRIPTIONS,
    METHODS,
    PRETRAIN_VARIANTS,
    AblationConfig,
    load_config,
    parse_overrides,
)
from .report import collect_records, plot_results, render_markdown, summarize, write_report
from .runner import Logger, PlannedRun, plan_runs, run_matrix


def main(argv: Sequence[str] | None = None, *, recipes_dir: str | Path, default_config: str | Path) -> dict:
    """`ablate.py [CONFIG.yaml] [--key value ...]`: run the matrix, then write its report."""
    argv = list(sys.argv[1:] if argv is None else argv)
    path = argv.pop(0) if argv and not argv[0].startswith("--") else str(default_config)
    config = load_config(path, argv, repo_root=Path(recipes_dir).parent)
    log = Logger(Path(config.output_dir) / "ablation.log")
    log(f"config {path}" + (f" with overrides {' '.join(argv)}" if argv else ""))
    summary = run_matrix(config, recipes_dir=recipes_dir, log=log)
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    command = "Reproduce: `" + shlex.join(["python", "recipes/ablate.py", shown, *argv]) + "`"
    result = write_report(config, command=command, log=log)
    print((Path(config.output_dir) / "results.md").read_text())
    return {"runs": summary, "results": result}


__all__ = [
    "CONTROL_PAIRS",
    "DEFAULT_METHODS",
    "DESCRIPTIONS",
    "METHODS",
    "PRETRAIN_VARIANTS",
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
