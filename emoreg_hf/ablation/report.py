"""The study's report files: `results.json` summarised from its `records/` (`summary.py`), then `results.md`
and `results.png` rendered from `results.json` alone (`render.py`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .config import AblationConfig
from .records import RECORDS, STUDY_FILE, store_study
from .render import plot_results, render_markdown
from .summary import summarize_study


def render_results(study_dir: str | Path, *, log: Callable[[str], None] | None = None) -> dict:
    """Write `results.md` and `results.png` of the study in `study_dir` from its `results.json` alone."""
    root = Path(study_dir)
    path = root / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {str(root)!r} is not the folder of a finished study.")
    summary = json.loads(path.read_text())
    (root / "results.md").write_text(render_markdown(summary))
    if summary["methods"]:
        plot_results(summary, root / "results.png")
    if log:
        log(f"results: {root / 'results.md'}, {path}, {root / 'results.png'}")
    return summary


def render_report(study_dir: str | Path, *, log: Callable[[str], None] | None = None) -> dict:
    """The report of the study in `study_dir` again, training nothing: `results.json` from its `records/`
    (when it keeps them), then `results.md` and `results.png` from `results.json`."""
    root = Path(study_dir)
    if (root / RECORDS / STUDY_FILE).is_file():
        (root / "results.json").write_text(json.dumps(summarize_study(root), indent=2))
    return render_results(root, log=log)


def write_report(
    config: AblationConfig, *, command: str = "", log: Callable[[str], None] | None = None
) -> dict:
    """Keep the study's configuration and `command` with its runs' records (`records/study.yaml`), then
    write `results.json`, `results.md` and `results.png` from them (`render_report`)."""
    store_study(config, command, config.output_dir)
    return render_report(config.output_dir, log=log)
