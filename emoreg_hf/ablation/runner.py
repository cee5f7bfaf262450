"""Running the matrix: every (stage, method or variant, seed) as a subprocess of the recipes.

Each run gets a YAML written into its own folder and is `python recipes/{pretrain,finetune}.py <yaml>`,
so the matrix runs exactly the code users run. Stage-1 models are trained once per (variant, seed) and
shared. A finished run (its record exists and its fingerprint matches) is skipped on restart; an unfinished
one resumes from its last checkpoint, or starts over when its configuration changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import registry
from ..run_record import RECORD_FILE, load_run_record
from .analysis import register_plan
from .config import AblationConfig, stage1_seed


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
        for variant in [v for v in registry.STAGE1_VARIANTS if v in variants]:
            if f"pretrain/{variant}/seed{first}" in planned:
                continue
            planned.add(f"pretrain/{variant}/seed{first}")
            run_dir = out_root / "pretrain" / variant / f"seed{first}"
            switches = {
                key: _from_finetune(config.finetune, value)
                if isinstance(value, registry.FromFinetune)
                else value
                for key, value in registry.STAGE1_VARIANTS[variant].switches.items()
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


MARKER = "ablation_run.json"
RUN_CONFIG = "ablation_run.yaml"


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


def run_matrix(
    config: AblationConfig,
    *,
    recipes_dir: str | Path,
    python: str = sys.executable,
    env: dict | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run every planned run not finished yet. Returns `{"ran": [...], "skipped": [...], "seconds": {...}}`."""
    out_root = Path(config.output_dir)
    out_root.mkdir(parents=True, exist_ok=True)
    log = log or Logger(out_root / "ablation.log")
    (out_root / "ablation_config.yaml").write_text(
        yaml.safe_dump(
            {
                "title": config.title,
                "methods": config.methods,
                "seeds": config.seeds,
                "output_dir": config.output_dir,
                "pretrain": config.pretrain,
                "finetune": config.finetune,
                "analysis": config.analysis,
            },
            sort_keys=False,
        )
    )
    if config.analysis is not None:  # pre-registered: recorded before the first run, never rewritten
        register_plan(out_root, config.analysis)
    runs = plan_runs(config)
    fingerprints: dict[str, str] = {}
    summary: dict[str, Any] = {"ran": [], "skipped": [], "seconds": {}}
    log(
        f"{len(runs)} runs: methods {', '.join(config.methods)} x seeds {config.seeds} -> {out_root}"
        f" (stage 1 once per variant and seed)"
    )
    started = time.time()
    for index, run in enumerate(runs, 1):
        fingerprint = _fingerprint(run.values, fingerprints.get(run.needs) if run.needs else None, out_root)
        fingerprints[run.key] = fingerprint
        tag = f"[{index}/{len(runs)}] {run.key}"
        marker = _read_json(run.output_dir / MARKER) or {}
        if (run.output_dir / RECORD_FILE).is_file() and marker.get("fingerprint") == fingerprint:
            log(f"{tag}: finished before, skipped")
            summary["skipped"].append(run.key)
            continue
        seconds = _execute(run, fingerprint, marker, recipes_dir, python, env, log, tag)
        summary["ran"].append(run.key)
        summary["seconds"][run.key] = seconds
    log(
        f"matrix complete: {len(summary['ran'])} run(s) executed, {len(summary['skipped'])} skipped, "
        f"{time.time() - started:.0f} s"
    )
    return summary


def _execute(run: PlannedRun, fingerprint: str, marker: dict, recipes_dir, python, env, log, tag) -> float:
    run.output_dir.mkdir(parents=True, exist_ok=True)
    has_checkpoint = any(p.name.startswith("checkpoint-") for p in run.output_dir.iterdir())
    resume = has_checkpoint and marker.get("fingerprint") == fingerprint
    if has_checkpoint and not resume:
        log(f"{tag}: configuration changed since its checkpoint was written; starting over")
    elif (run.output_dir / RECORD_FILE).is_file():
        log(f"{tag}: results from another configuration; rerunning")
    for name in (RECORD_FILE, "all_results.json"):  # never mistake old results for new
        (run.output_dir / name).unlink(missing_ok=True)
    config_file = run.output_dir / RUN_CONFIG
    config_file.write_text(
        "# Written by emoreg_hf.ablation; rerun alone with:\n"
        f"#   python recipes/{run.stage}.py {config_file}\n" + yaml.safe_dump(run.values, sort_keys=False)
    )
    (run.output_dir / MARKER).write_text(
        json.dumps({"fingerprint": fingerprint, "key": run.key, "status": "running"}, indent=2)
    )
    command = [
        python,
        str(Path(recipes_dir) / f"{run.stage}.py"),
        str(config_file),
        "--overwrite_output_dir",
        "false" if resume else "true",
    ]
    log(f"{tag}: {'resuming' if resume else 'running'}  ({shlex.join(command[1:])})")
    started = time.time()
    with open(run.output_dir / "ablation_stdout.log", "a") as out:
        out.write(f"\n$ {shlex.join(command)}\n")
        out.flush()
        code = subprocess.call(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    seconds = time.time() - started
    record = _read_json(run.output_dir / RECORD_FILE)
    if code != 0 or record is None:
        tail = (run.output_dir / "ablation_stdout.log").read_text().splitlines()[-25:]
        raise RuntimeError(
            f"{run.key} failed (exit code {code}) after {seconds:.0f} s; last lines of "
            f"{run.output_dir / 'ablation_stdout.log'}:\n" + "\n".join(tail)
        )
    (run.output_dir / MARKER).write_text(
        json.dumps(
            {"fingerprint": fingerprint, "key": run.key, "status": "done", "seconds": seconds}, indent=2
        )
    )
    results = load_run_record(run.output_dir).results
    metric = "test_accuracy" if "test_accuracy" in results else "eval_accuracy"
    log(f"{tag}: done in {seconds:.0f} s, {metric}={results.get(metric, float('nan')):.4f}")
    return seconds
