"""Running the matrix: its planned runs not finished yet, handed to the caller's launcher (`local.py`,
`slurm.py`). A finished run (its record exists and its fingerprint matches) is skipped on restart, finished runs
of another configuration are never replaced silently, and each finished run's record, results and log history
are copied into `<output_dir>/records/` (`records.store_run`), where the report reads them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..run_dir import run_files
from ..run_folder import LAUNCHER_FILES, LOCK_FILE
from ..run_record import RECORD_FILE
from .analysis import register_plan
from .cell import MARKER, RUN_CONFIG, Cell, _read_json, _resumable
from .config import AblationConfig
from .plan import PlannedRun, plan_runs
from .records import RECORDS, store_run

CONFIG_FILE = "ablation_config.yaml"


def _stored_config(config: AblationConfig) -> dict:
    """What `ablation_config.yaml` holds: the matrix as it was last run in its folder."""
    return {
        "title": config.title,
        "methods": config.methods,
        "seeds": config.seeds,
        "output_dir": config.output_dir,
        "pretrain": config.pretrain,
        "finetune": config.finetune,
        "analysis": config.analysis,
    }


def _flat(values: Any, prefix: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}.{key}"))
    return out


def check_replaced_runs(config: AblationConfig, runs: list[PlannedRun], *, overwrite: bool) -> None:
    """Refuse (`ValueError`) a matrix that would replace finished runs of another configuration in its folder,
    listing the stage keys that differ from the configuration they were run with, unless `overwrite`. New
    methods or seeds in a folder are fine: they add runs, and the finished ones of this configuration stay."""
    root = Path(config.output_dir)
    fingerprints: dict[str, str] = {}
    replaced, blocked = [], []
    for run in runs:
        fingerprint = _fingerprint(run.values, fingerprints.get(run.needs) if run.needs else None, root)
        fingerprints[run.key] = fingerprint
        marker = _read_json(run.output_dir / MARKER) or {}
        finished = (run.output_dir / RECORD_FILE).is_file()
        if finished and marker.get("fingerprint") == fingerprint:
            continue  # this configuration's, finished: skipped
        # A record under a marker of another fingerprint (or none) is a finished run of another
        # configuration: a started run of this one has its earlier outputs cleared before it is marked.
        if finished:
            replaced.append(run)
        kept = [] if _resumable(run.output_dir, fingerprint) else _kept_files(run.output_dir)
        if kept:
            blocked.append(f"  {run.output_dir}: {', '.join(kept[:5])}" + (", ..." if len(kept) > 5 else ""))
    if blocked and (overwrite or not replaced):
        raise ValueError(
            f"{len(blocked)} run folder(s) of the matrix hold files that are not a run's, so the recipe would "
            "refuse to start over there; nothing was run or replaced:\n" + "\n".join(blocked) + "\nMove "
            "those files elsewhere, or choose another --output_dir."
        )
    if not replaced or overwrite:
        return
    earlier: dict = {}
    stored = root / CONFIG_FILE
    if stored.is_file():
        earlier = yaml.safe_load(stored.read_text()) or {}
    now = _stored_config(config)
    old_values = {
        **_flat(earlier.get("pretrain") or {}, "pretrain"),
        **_flat(earlier.get("finetune") or {}, "finetune"),
    }
    new_values = {**_flat(now["pretrain"], "pretrain"), **_flat(now["finetune"], "finetune")}
    if not earlier:  # a folder from before the matrix kept its config: the first run's own YAML
        first = replaced[0]
        written = first.output_dir / RUN_CONFIG  # absent: a run the matrix did not start
        old_values = _flat(
            (yaml.safe_load(written.read_text()) if written.is_file() else {}) or {}, first.stage
        )
        new_values = _flat(first.values, first.stage)
    differing = [
        f"  {key}: {json.dumps(old_values.get(key))} in the earlier matrix, {json.dumps(new_values.get(key))} now"
        for key in sorted(set(old_values) | set(new_values))
        if old_values.get(key) != new_values.get(key)
    ] or ["  (the stage-1 runs these runs read differ)"]
    shown = ", ".join(run.key for run in replaced[:4]) + (", ..." if len(replaced) > 4 else "")
    raise ValueError(
        f"{root} holds {len(replaced)} finished run(s) of another configuration ({shown}), which this matrix "
        "would replace; nothing was run. What differs:\n" + "\n".join(differing) + "\nChoose another "
        "--output_dir, or pass --overwrite to replace them."
    )


def _kept_files(folder: Path) -> list[str]:
    """What starting a run over in `folder` keeps: all but the earlier run's files (`run_files`; none in a
    folder that holds no run), the launcher's and set-aside `*.incomplete` checkpoints; someone's notes, say,
    which the recipe refuses."""
    if not folder.is_dir():
        return []
    own = {*run_files(folder), *LAUNCHER_FILES, LOCK_FILE}
    return sorted(n for n in os.listdir(folder) if n not in own and not n.endswith(".incomplete"))


def _fingerprint(values: dict, upstream: str | None, root: Path) -> str:
    """What a run computes: its recipe keys (paths inside the matrix folder made relative, so a moved
    folder still counts as finished) and the fingerprint of the stage-1 run it reads."""
    blob = json.dumps({"values": values, "upstream": upstream}, sort_keys=True, default=str)
    blob = blob.replace(json.dumps(str(root))[1:-1], "<output_dir>")
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Logger:
    """Progress lines to stdout and `<output_dir>/ablation.log`."""

    def __init__(self, path: Path | None, stream=None):
        self.path, self.stream = path, stream or sys.stdout

    def __call__(self, message: str) -> None:
        line = f"[ablate {time.strftime('%H:%M:%S')}] {message}"
        print(line, file=self.stream, flush=True)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")


class MatrixFailed(RuntimeError):
    """Runs of the matrix failed; the message names each with its log. Rerunning the command retries them
    (finished runs are kept)."""


def run_matrix(
    config: AblationConfig,
    *,
    recipes_dir: str | Path,
    python: str = sys.executable,
    env: dict | None = None,
    log: Callable[[str], None] | None = None,
    launcher,
    overwrite: bool = False,
) -> dict:
    """Run every planned run not finished yet, with `launcher` (the caller's: `LocalLauncher`, `SlurmLauncher`,
    any object with `describe()` and `execute(cells, ...)` returning an `Outcome`).

    Returns `{"ran": [...], "skipped": [...], "seconds": {...}, "waiting": [...]}`; `waiting` lists runs a
    scheduler still holds when the launcher does not wait for them. Raises `MatrixFailed` naming each failed run.
    Finished runs of another configuration in the same folder are never replaced silently: without `overwrite`
    the matrix is refused before anything runs, listing what differs.
    """
    out_root = Path(config.output_dir)
    runs = plan_runs(config)
    check_replaced_runs(config, runs, overwrite=overwrite)
    out_root.mkdir(parents=True, exist_ok=True)
    log = log or Logger(out_root / "ablation.log")
    (out_root / CONFIG_FILE).write_text(yaml.safe_dump(_stored_config(config), sort_keys=False))
    if config.analysis is not None:  # pre-registered: recorded before the first run, never rewritten
        register_plan(out_root, config.analysis)
    fingerprints: dict[str, str] = {}
    summary: dict[str, Any] = {"ran": [], "skipped": [], "seconds": {}, "waiting": []}
    log(
        f"{len(runs)} runs: methods {', '.join(config.methods)} x seeds {config.seeds} -> {out_root}"
        f" (stage 1 once per variant and seed; {launcher.describe()})"
    )
    started = time.time()
    cells = []
    for index, run in enumerate(runs, 1):
        fingerprint = _fingerprint(run.values, fingerprints.get(run.needs) if run.needs else None, out_root)
        fingerprints[run.key] = fingerprint
        tag = f"[{index}/{len(runs)}] {run.key}"
        marker = _read_json(run.output_dir / MARKER) or {}
        if (run.output_dir / RECORD_FILE).is_file() and marker.get("fingerprint") == fingerprint:
            if marker.get("status") != "done":  # finished while nobody waited (a scheduler's job)
                Cell(run, fingerprint, tag).write_marker("done")
            log(f"{tag}: finished before, skipped")
            store_run(run.output_dir, run.key, out_root)
            summary["skipped"].append(run.key)
            continue
        shutil.rmtree(out_root / RECORDS / run.key, ignore_errors=True)  # never old results for new
        cells.append(Cell(run, fingerprint, tag))
    outcome = launcher.execute(
        cells, root=out_root, recipes_dir=Path(recipes_dir), python=python, env=env or {}, log=log
    )
    folders = {cell.key: cell.run.output_dir for cell in cells}
    for key in outcome.finished:
        store_run(folders[key], key, out_root)
    summary["ran"] = outcome.finished
    summary["seconds"] = outcome.seconds
    summary["waiting"] = outcome.waiting
    if outcome.failures:
        waiting = (
            f"; {len(outcome.waiting)} run(s) still queued or running, collected by the same command"
            if outcome.waiting
            else ""
        )
        raise MatrixFailed(
            f"{len(outcome.failures)} run(s) of the matrix failed (finished runs are kept; the same command "
            f"runs the others again{waiting}):\n\n" + "\n\n".join(outcome.failures)
        )
    log(
        f"matrix {'complete' if not outcome.waiting else 'submitted'}: {len(summary['ran'])} run(s) executed, "
        f"{len(summary['skipped'])} skipped"
        + (f", {len(outcome.waiting)} queued or running" if outcome.waiting else "")
        + f", {time.time() - started:.0f} s"
    )
    return summary
