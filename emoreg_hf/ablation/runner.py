"""Running the matrix: every (stage, method or variant, seed) as a process of the recipes.

Each run gets a YAML written into its own folder and is `python recipes/{pretrain,finetune}.py <yaml>`
(or `accelerate launch ...` when it trains on several GPUs), so the matrix runs exactly the code users run.
Stage-1 models are trained once per (variant, seed) and shared. A finished run (its record exists and its
fingerprint matches) is skipped on restart; an unfinished one resumes from its newest valid checkpoint, or
starts over when its configuration changed. Where the runs execute (one after another here, several at
once here, or as Slurm job arrays) is the launcher's business (`launch.py`). Each finished run's record,
results and log history are copied into `<output_dir>/records/` (`records.store_run`), where the report
reads them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import registry, stage1_variants
from ..checkpoints import checkpoint_problem
from ..run_dir import clear_run_outputs, run_files
from ..run_folder import LAUNCHER_FILES, LOCK_FILE, holds_a_run
from ..run_record import RECORD_FILE, load_run_record
from .analysis import register_plan
from .config import AblationConfig, stage1_seed
from .records import RECORDS, store_run


@dataclass
class PlannedRun:
    """One recipe run of the matrix: a stage-1 variant or a stage-2 method, for one seed."""

    stage: str  # pretrain | finetune
    key: str  # e.g. pretrain/normal/seed0, finetune/baseline/seed0
    method: str | None
    seed: int
    output_dir: Path
    values: dict
    needs: str | None = None  # key of the stage-1 run this one reads


def _from_finetune(finetune: dict, key: str):
    """The finetune stage's value of `key`: the config's, else the recipe's default."""
    if key in finetune:
        return finetune[key]
    from ..configs import FinetuneArguments

    return {f.name: f.default for f in dataclasses.fields(FinetuneArguments)}[str(key)]


def plan_runs(config: AblationConfig) -> list[PlannedRun]:
    """All runs in execution order: seed by seed (a paired set is complete early), stage 1 first (with
    `stage1_seeds`, each stage-1 run before the first stage-2 seed that reads it)."""
    out_root = Path(config.output_dir)
    runs: list[PlannedRun] = []
    planned: set[str] = set()
    for seed in config.seeds:
        variants = {registry.MATRIX[method].stage1 for method in config.methods} - {None}
        first = stage1_seed(config, seed)
        for variant in [v for v in stage1_variants.STAGE1_VARIANTS if v in variants]:
            if f"pretrain/{variant}/seed{first}" in planned:
                continue
            planned.add(f"pretrain/{variant}/seed{first}")
            run_dir = out_root / "pretrain" / variant / f"seed{first}"
            switches = {
                key: _from_finetune(config.finetune, value)
                if isinstance(value, stage1_variants.FromFinetune)
                else value
                for key, value in stage1_variants.STAGE1_VARIANTS[variant].switches.items()
            }
            values = {**config.pretrain, **switches, "seed": first, "output_dir": str(run_dir)}
            runs.append(
                PlannedRun("pretrain", f"pretrain/{variant}/seed{first}", None, first, run_dir, values)
            )
        for method in config.methods:
            arm = registry.MATRIX[method]
            variant, switches = arm.stage1, arm.switches
            run_dir = out_root / "finetune" / method / f"seed{seed}"
            values = {**config.finetune, **switches, "seed": seed, "output_dir": str(run_dir)}
            needs = None
            if variant is not None:
                needs = f"pretrain/{variant}/seed{first}"
                values["affect_model_name_or_path"] = str(out_root / "pretrain" / variant / f"seed{first}")
            else:
                values.pop("affect_model_name_or_path", None)
            runs.append(
                PlannedRun("finetune", f"finetune/{method}/seed{seed}", method, seed, run_dir, values, needs)
            )
    return runs


RUN_CONFIG, MARKER, RUN_LOG = LAUNCHER_FILES  # per run: its YAML, its marker, its log (run_dir knows them)
CHECKPOINT = re.compile(r"checkpoint-\d+")  # Trainer's; `checkpoint-N.incomplete` is one set aside


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


def _resumable(folder: Path, fingerprint: str) -> bool:
    """A started run of this configuration with a valid checkpoint: it resumes, and nothing is removed."""
    if (_read_json(folder / MARKER) or {}).get("fingerprint") != fingerprint:
        return False
    checkpoints = [c for c in folder.glob("checkpoint-*") if c.is_dir() and CHECKPOINT.fullmatch(c.name)]
    return any(checkpoint_problem(c) is None for c in checkpoints)


def _kept_files(folder: Path) -> list[str]:
    """What starting a run over in `folder` keeps: all but the earlier run's files (`run_files`; none in a
    folder that holds no run), the launcher's and set-aside `*.incomplete` checkpoints; someone's notes, say,
    which the recipe refuses."""
    if not folder.is_dir():
        return []
    own = {*(run_files(folder) if holds_a_run(folder) else []), *LAUNCHER_FILES, LOCK_FILE}
    return sorted(n for n in os.listdir(folder) if n not in own and not n.endswith(".incomplete"))


def _fingerprint(values: dict, upstream: str | None, root: Path) -> str:
    """What a run computes: its recipe keys (paths inside the matrix folder made relative, so a moved
    folder still counts as finished) and the fingerprint of the stage-1 run it reads."""
    blob = json.dumps({"values": values, "upstream": upstream}, sort_keys=True, default=str)
    blob = blob.replace(json.dumps(str(root))[1:-1], "<output_dir>")
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


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


@dataclass
class Cell:
    """A planned run that is not finished yet: what a launcher starts, and how its outcome is read."""

    run: PlannedRun
    fingerprint: str
    tag: str  # "[3/6] finetune/baseline/seed0", for progress lines
    resuming: bool = False  # set by `prepare`: a valid checkpoint of this configuration is there

    @property
    def key(self) -> str:
        return self.run.key

    @property
    def config_file(self) -> Path:
        return self.run.output_dir / RUN_CONFIG

    @property
    def log_file(self) -> Path:
        return self.run.output_dir / RUN_LOG

    def recipe_args(self, recipes_dir: str | Path) -> list[str]:
        """The recipe and its arguments; the same whether the run starts fresh, resumes or is requeued."""
        script = Path(recipes_dir).resolve() / f"{self.run.stage}.py"
        return [str(script), str(self.config_file.resolve()), "--overwrite_output_dir", "false"]

    def prepare(self, log: Callable[[str], None]) -> None:
        """Write the run's YAML and marker. A run resumes from its newest valid checkpoint when its
        configuration is unchanged; otherwise what an earlier attempt wrote is removed (the launcher's files
        and anything else stay), so the recipe starts fresh with `--overwrite_output_dir false`, the one
        command that is right for a first start, a resume and a scheduler's requeue alike."""
        folder = self.run.output_dir
        folder.mkdir(parents=True, exist_ok=True)
        same = (_read_json(folder / MARKER) or {}).get("fingerprint") == self.fingerprint
        resumable = _resumable(folder, self.fingerprint)
        if not resumable:
            removed = clear_run_outputs(folder)
            if removed and not same:
                log(
                    f"{self.tag}: configuration changed since it ran; its earlier outputs are removed, starting over"
                )
            elif removed:
                log(f"{self.tag}: an unfinished earlier attempt left no checkpoint to resume; starting over")
        self.config_file.write_text(
            "# Written by emoreg_hf.ablation; rerun alone with:\n"
            f"#   python recipes/{self.run.stage}.py {self.config_file}\n"
            + yaml.safe_dump(self.run.values, sort_keys=False)
        )
        self.write_marker("ready")
        self.resuming = resumable

    def status(self) -> str | None:
        """The marker's status: ready, running, submitted, done or failed (None before the first start)."""
        return (_read_json(self.run.output_dir / MARKER) or {}).get("status")

    def write_marker(self, status: str, **extra: Any) -> None:
        payload = {"fingerprint": self.fingerprint, "key": self.key, "status": status, **extra}
        (self.run.output_dir / MARKER).write_text(json.dumps(payload, indent=2))

    def collect(self, log: Callable[[str], None], seconds: float | None = None) -> bool:
        """Whether the run finished (its record exists); marks it done and logs its headline metric."""
        if not (self.run.output_dir / RECORD_FILE).is_file():
            return False
        results = load_run_record(self.run.output_dir).results
        self.write_marker("done", **({"seconds": seconds} if seconds is not None else {}))
        metric = "test_accuracy" if "test_accuracy" in results else "eval_accuracy"
        if seconds is not None:
            took = f" in {seconds:.0f} s"
        else:  # run elsewhere (a scheduler): the training time the run recorded
            took = f", trained {results.get('train_runtime', float('nan')):.0f} s"
        log(f"{self.tag}: done{took}, {metric}={results.get(metric, float('nan')):.4f}")
        return True

    def failure(self, reason: str) -> str:
        """A failed run, named, with its log and the log's last lines."""
        return f"{self.key} {reason}; last lines of {self.log_file}:\n{log_tail(self.log_file)}"


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
    launcher=None,
    overwrite: bool = False,
) -> dict:
    """Run every planned run not finished yet, with `launcher` (default: here, one at a time).

    Returns `{"ran": [...], "skipped": [...], "seconds": {...}, "waiting": [...]}`; `waiting` lists runs a
    scheduler still holds when the launcher does not wait for them. Raises `MatrixFailed` naming each failed run.
    Finished runs of another configuration in the same folder are never replaced silently: without `overwrite`
    the matrix is refused before anything runs, listing what differs.
    """
    from .launch import LocalLauncher

    out_root = Path(config.output_dir)
    runs = plan_runs(config)
    check_replaced_runs(config, runs, overwrite=overwrite)
    out_root.mkdir(parents=True, exist_ok=True)
    log = log or Logger(out_root / "ablation.log")
    (out_root / CONFIG_FILE).write_text(yaml.safe_dump(_stored_config(config), sort_keys=False))
    if config.analysis is not None:  # pre-registered: recorded before the first run, never rewritten
        register_plan(out_root, config.analysis)
    launcher = launcher or LocalLauncher()
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
