"""A study's records: the small files of every run of the matrix (run record, results, log history, the
predictions file the card draws from) and the study's configuration, copied into `<output_dir>/records/` with
local paths replaced by placeholders. The report and the runs' model cards are rendered from them alone, so a
study folder that keeps only its report and `records/` (the run folders hold weights and are never shipped)
renders the same report and cards again: `python recipes/ablate.py --report STUDY_DIR --cards DIR`."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from ..publish.scrub import PLACEHOLDER, PROJECT
from ..run_record import RECORD_FILE
from .config import AblationConfig

RECORDS = "records"
STUDY_FILE = "study.yaml"
RESULTS_FILE = "all_results.json"
STATE_FILE = "trainer_state.json"
# What a report or a card reads of a run, besides its record: the Trainer's logs, not its resume state.
STATE_KEYS = ("global_step", "max_steps", "num_train_epochs", "train_batch_size", "log_history")
# The predictions file keeps what a card draws (labels, predictions, ρ per image) to this many decimals,
# so a CIFAR-10 test split's stays about 100 KB; the card's text reads only its integers.
PREDICTION_DECIMALS = 4
# An absolute path not glued to a word, a URL or another path (as publish.scrub finds them).
ABS_PATH_RE = re.compile(r"(?<![\w.:/~-])/[^\s\"'`,;()\[\]{}<>|]+")


def placeholders(obj: Any, root: Path) -> Any:
    """`obj` with every absolute local path rewritten: inside the project relative to it
    (`recipes/finetune.py`), elsewhere `/path/to/<name>` with its place in the study kept
    (`/path/to/real_small/pretrain/normal/seed0`), so nothing names this machine's folders."""
    anchors = [(Path(root).resolve(), Path(root).resolve().parent)]

    def replace(match: re.Match) -> str:
        path = Path(match.group(0))
        try:
            return path.resolve().relative_to(PROJECT).as_posix()
        except ValueError:
            pass
        for inside, parent in anchors:
            if path.resolve().is_relative_to(inside):
                return PLACEHOLDER + path.resolve().relative_to(parent).as_posix()
        return PLACEHOLDER + (path.name or "data")

    if isinstance(obj, dict):
        return {key: placeholders(value, root) for key, value in obj.items()}
    if isinstance(obj, list):
        return [placeholders(value, root) for value in obj]
    if isinstance(obj, str):
        return ABS_PATH_RE.sub(replace, obj)
    return obj


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def compact(obj: Any, decimals: int = PREDICTION_DECIMALS) -> Any:
    """`obj` with every float rounded to `decimals` (integers, names and flags as they are)."""
    if isinstance(obj, dict):
        return {key: compact(value, decimals) for key, value in obj.items()}
    if isinstance(obj, list):
        return [compact(value, decimals) for value in obj]
    if isinstance(obj, float):
        return round(obj, decimals)
    return obj


def store_run(run_dir: str | Path, key: str, root: str | Path) -> Path:
    """Copy a finished run's record, results, log history and predictions file (the one its record lists,
    floats rounded: `compact`) to `<root>/records/<key>/` (`key`: `pretrain/normal/seed0`,
    `finetune/baseline/seed0`), paths replaced (the predictions file holds labels and numbers only)."""
    run_dir, root = Path(run_dir), Path(root)
    target = root / RECORDS / key
    if target.exists():
        shutil.rmtree(target)
    record = None
    for name in (RECORD_FILE, RESULTS_FILE):
        if (run_dir / name).is_file():
            data = json.loads((run_dir / name).read_text(encoding="utf-8"))
            record = data if name == RECORD_FILE else record
            _write_json(target / name, placeholders(data, root))
    if (run_dir / STATE_FILE).is_file():
        state = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
        _write_json(target / STATE_FILE, placeholders({k: state[k] for k in STATE_KEYS if k in state}, root))
    predictions = ((record or {}).get("files") or {}).get("predictions")
    if predictions and (run_dir / predictions).is_file():
        data = json.loads((run_dir / predictions).read_text(encoding="utf-8"))
        text = json.dumps(compact(data), separators=(",", ":"))
        (target / predictions).write_text(text + "\n", encoding="utf-8")
    return target


def store_study(config: AblationConfig, command: str, root: str | Path) -> Path:
    """Write `<root>/records/study.yaml`: the matrix as it ran and the command that ran it, paths replaced,
    and copy the pre-registered analysis plan the runner recorded before the first run (`analysis_plan.json`)."""
    from .analysis import PLAN_FILE

    root = Path(root)
    study = {"command": command, **dataclasses.asdict(config)}
    study.pop("output_dir")  # the study folder is wherever records/ is now
    path = root / RECORDS / STUDY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    if (root / PLAN_FILE).is_file():
        shutil.copy(root / PLAN_FILE, root / RECORDS / PLAN_FILE)
    path.write_text(yaml.safe_dump(placeholders(study, root), sort_keys=False), encoding="utf-8")
    return path


def load_study(root: str | Path) -> tuple[AblationConfig, str]:
    """The matrix and the command of the study in `root` (from `records/study.yaml`), its output_dir `root`."""
    root = Path(root)
    path = root / RECORDS / STUDY_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: {str(root)!r} is not a study folder with records (recipes/ablate.py writes "
            f"{RECORDS}/ next to results.md since emoreg-hf 0.1; rerun the matrix to write them)."
        )
    study = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(study, dict):
        raise ValueError(f"{path} must hold a mapping, got {type(study).__name__}")
    command = str(study.pop("command", "") or "")
    known = {f.name for f in dataclasses.fields(AblationConfig)}
    unknown = sorted(set(study) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    return AblationConfig(**study, output_dir=str(root)), command
