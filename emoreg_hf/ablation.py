"""The ablation matrix (DESIGN §1 controls): methods × seeds through the recipes, and its statistics.

Every run is a subprocess of `recipes/pretrain.py` / `recipes/finetune.py` with a YAML written into its
own folder, so the matrix runs exactly the code users run. Stage-1 models are trained once per
(pretraining variant, seed) and shared by the methods that need them. A finished run (its
`all_results.json` exists and its recorded configuration matches) is skipped on restart; an unfinished
one resumes from its last checkpoint, or starts over when its configuration changed.

Aggregation reports, per method, mean ± std over seeds, a Student-t 95% interval, the paired difference
to the baseline over the same seeds with its interval, and says in words which differences are noise.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .configs import read_overrides

# -- the matrix ---------------------------------------------------------------------------------------

#: method -> (stage-1 variant it needs or None, finetune keys that define it). One switch each.
METHODS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "baseline": (None, {"method": "baseline"}),
    "transfer": ("normal", {"method": "transfer"}),
    "emoreg_fixed": ("normal", {"method": "emoreg", "regulation": "fixed"}),
    "emoreg_learned": ("normal", {"method": "emoreg", "regulation": "learned"}),
    "emoreg_adaptive": ("normal", {"method": "emoreg", "regulation": "adaptive"}),
    "shuffled_emotion": ("shuffled", {"method": "emoreg", "regulation": "adaptive"}),
    "no_pretraining": ("normal", {"method": "emoreg", "regulation": "adaptive", "affect_init": "random"}),
    # Optional, not in the default seven: the shuffled-label control for `transfer`.
    "transfer_shuffled": ("shuffled", {"method": "transfer"}),
}
#: the seven methods run when a config names none (DESIGN §1).
DEFAULT_METHODS = [m for m in METHODS if m != "transfer_shuffled"]
#: (method, its control): "is it the emotion?" comparisons reported when both ran.
CONTROL_PAIRS = (
    ("emoreg_adaptive", "shuffled_emotion"),
    ("emoreg_adaptive", "no_pretraining"),
    ("transfer", "transfer_shuffled"),
)
#: stage-1 variant -> pretrain keys. `shuffled`: same pixels and compute, permuted emotion labels.
PRETRAIN_VARIANTS: dict[str, dict[str, Any]] = {
    "normal": {"shuffle_labels": False},
    "shuffled": {"shuffle_labels": True},
}
DESCRIPTIONS = {
    "baseline": "task pathway alone (ρ = 0)",
    "transfer": "fine-tune the affective backbone directly",
    "emoreg_fixed": "EmoReg, constant ρ",
    "emoreg_learned": "EmoReg, one learned ρ",
    "emoreg_adaptive": "EmoReg, ρ(x) per image",
    "shuffled_emotion": "EmoReg adaptive on a shuffled-label stage 1",
    "no_pretraining": "EmoReg adaptive, random affective pathway",
    "transfer_shuffled": "transfer from a shuffled-label stage 1",
}
# Recipe keys that the runner sets itself; a stage config may not pin them.
RUNNER_KEYS = ("output_dir", "seed", "overwrite_output_dir")


@dataclass
class AblationConfig:
    """`pretrain` / `finetune`: recipe keys for each stage (a `config:` key names a recipe YAML to start
    from); `methods`: names from `METHODS`; `seeds`: the training seeds (stage 1 and 2 use the same)."""

    pretrain: dict
    finetune: dict
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    output_dir: str = "outputs/ablations/run"
    title: str | None = None
    notes: str = ""

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; available: {list(METHODS)}")
        if not self.seeds:
            raise ValueError("seeds must be a positive count or a non-empty list")


def _seeds(value: Any) -> list[int]:
    if isinstance(value, bool):
        raise ValueError(f"seeds: expected a count or a list, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"seeds: a count must be >= 1, got {value}")
        return list(range(value))
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split()]
    return [int(v) for v in value]


def _methods(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.replace(",", " ").split()]
    return [str(v) for v in value]


def _find_file(name: str, bases: Sequence[Path]) -> Path:
    path = Path(name)
    if path.is_absolute():
        candidates = [path]
    else:
        candidates = [Path.cwd() / path, *(base / path for base in bases)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"config file {name!r} not found (looked in {[str(c) for c in candidates]})")


def _stage_values(value: Any, bases: Sequence[Path], stage: str) -> dict:
    """A stage's recipe keys: a YAML path, or a dict whose optional `config:` YAML is the base."""
    if value is None:
        value = {}
    if isinstance(value, (str, Path)):
        value = {"config": str(value)}
    if not isinstance(value, dict):
        raise ValueError(f"{stage}: expected a mapping of recipe keys or a YAML path, got {value!r}")
    values = dict(value)
    base: dict = {}
    if "config" in values:
        path = _find_file(str(values.pop("config")), bases)
        base = yaml.safe_load(path.read_text()) or {}
        if not isinstance(base, dict):
            raise ValueError(f"{path} must hold a mapping of recipe keys")
    return {**base, **values}


def parse_overrides(argv: Sequence[str]) -> dict:
    """`--a.b.c VALUE` / `--a.b.c=VALUE` -> nested dict; values are YAML (numbers, lists, dicts)."""
    out: dict = {}
    for key, raw in read_overrides(list(argv)).items():
        node = out
        *parents, last = key.replace("-", "_").split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--{key}: {part!r} is set to a value and cannot also hold keys")
        value = yaml.safe_load(raw)
        if isinstance(value, bool) and raw.lower() not in ("true", "false"):
            value = raw  # YAML 1.1 reads `no` / `on` as booleans; `--eval_strategy no` means the string
        node[last] = value
    return out


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("dataset",):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] | dict = (),
    *,
    repo_root: str | Path | None = None,
) -> AblationConfig:
    """Read an ablation YAML (or a dict), apply `--key value` overrides, resolve stage YAML paths.

    Stage YAML paths are looked up relative to the working directory, the ablation YAML's folder and
    `repo_root`, in that order. `--pretrain.KEY` / `--finetune.KEY` override a stage's recipe key (after
    its `config:` file is read); `--seeds`, `--methods`, `--output_dir` the matrix itself.
    """
    raw: dict = {}
    bases: list[Path] = []
    if isinstance(path, dict):
        raw = copy.deepcopy(path)
    elif path is not None:
        file = Path(path)
        raw = yaml.safe_load(file.read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a mapping (pretrain, finetune, methods, seeds, output_dir)")
        bases.append(file.resolve().parent)
    if repo_root is not None:
        bases.append(Path(repo_root))
    extra = parse_overrides(overrides) if not isinstance(overrides, dict) else copy.deepcopy(overrides)
    allowed = {"pretrain", "finetune", "methods", "seeds", "output_dir", "title", "notes"}
    unknown = sorted(set(raw) - allowed) + sorted(set(extra) - allowed)
    if unknown:
        raise ValueError(f"unknown ablation key(s) {unknown}; allowed: {sorted(allowed)}")
    stages = {}
    for stage in ("pretrain", "finetune"):
        values = _stage_values(raw.get(stage), bases, stage)
        stage_extra = extra.get(stage) or {}
        if not isinstance(stage_extra, dict):
            raise ValueError(f"--{stage} takes keys: --{stage}.KEY VALUE")
        if "config" in stage_extra:
            values = _stage_values({"config": stage_extra.pop("config")}, bases, stage)
        stages[stage] = _merge(values, stage_extra)
        pinned = [k for k in RUNNER_KEYS if k in stages[stage]]
        for key in pinned:  # the runner owns these; drop silently (a recipe YAML usually names output_dir)
            stages[stage].pop(key)
    merged = {k: v for k, v in raw.items() if k not in ("pretrain", "finetune")}
    merged.update({k: v for k, v in extra.items() if k not in ("pretrain", "finetune")})
    return AblationConfig(
        pretrain=stages["pretrain"],
        finetune=stages["finetune"],
        methods=_methods(merged.get("methods", list(DEFAULT_METHODS))),
        seeds=_seeds(merged.get("seeds", 3)),
        output_dir=str(merged.get("output_dir", "outputs/ablations/run")),
        title=merged.get("title"),
        notes=str(merged.get("notes") or ""),
    )


@dataclass
class Run:
    stage: str  # pretrain | finetune
    key: str  # e.g. pretrain/normal/seed0, finetune/baseline/seed0
    method: str | None
    seed: int
    output_dir: Path
    values: dict
    needs: str | None = None  # key of the stage-1 run this one reads


def plan_runs(config: AblationConfig) -> list[Run]:
    """All runs in execution order: seed by seed (a paired set is complete early), stage 1 first."""
    out_root = Path(config.output_dir)
    runs: list[Run] = []
    for seed in config.seeds:
        variants = []
        for method in config.methods:
            variant = METHODS[method][0]
            if variant is not None and variant not in variants:
                variants.append(variant)
        for variant in sorted(variants, key=list(PRETRAIN_VARIANTS).index):
            run_dir = out_root / "pretrain" / variant / f"seed{seed}"
            values = {
                **config.pretrain,
                **PRETRAIN_VARIANTS[variant],
                "seed": seed,
                "output_dir": str(run_dir),
            }
            runs.append(Run("pretrain", f"pretrain/{variant}/seed{seed}", None, seed, run_dir, values))
        for method in config.methods:
            variant, switches = METHODS[method]
            run_dir = out_root / "finetune" / method / f"seed{seed}"
            values = {**config.finetune, **switches, "seed": seed, "output_dir": str(run_dir)}
            needs = None
            if variant is not None:
                needs = f"pretrain/{variant}/seed{seed}"
                values["affect_model_name_or_path"] = str(out_root / "pretrain" / variant / f"seed{seed}")
            else:
                values.pop("affect_model_name_or_path", None)
            runs.append(
                Run("finetune", f"finetune/{method}/seed{seed}", method, seed, run_dir, values, needs)
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
            },
            sort_keys=False,
        )
    )
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
        results_file = run.output_dir / "all_results.json"
        if results_file.is_file() and marker.get("fingerprint") == fingerprint:
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


def _execute(run: Run, fingerprint: str, marker: dict, recipes_dir, python, env, log, tag) -> float:
    run.output_dir.mkdir(parents=True, exist_ok=True)
    has_checkpoint = any(p.name.startswith("checkpoint-") for p in run.output_dir.iterdir())
    resume = has_checkpoint and marker.get("fingerprint") == fingerprint
    if has_checkpoint and not resume:
        log(f"{tag}: configuration changed since its checkpoint was written; starting over")
    elif (run.output_dir / "all_results.json").is_file():
        log(f"{tag}: results from another configuration; rerunning")
    (run.output_dir / "all_results.json").unlink(missing_ok=True)  # never mistake old results for new
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
    results = _read_json(run.output_dir / "all_results.json")
    if code != 0 or results is None:
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
    metric = "test_accuracy" if "test_accuracy" in results else "eval_accuracy"
    log(f"{tag}: done in {seconds:.0f} s, {metric}={results.get(metric, float('nan')):.4f}")
    return seconds


# -- statistics ---------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student-t cumulative distribution function."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile (exact to ~1e-12, by bisection on `t_cdf`; no scipy needed)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def describe(values: Sequence[float], confidence: float = 0.95) -> dict:
    """n, mean, std (ddof=1), standard error and the Student-t interval of the mean."""
    values = [float(v) for v in values]
    n = len(values)
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "sem": None, "ci_low": None, "ci_high": None}
    if n == 0:
        return out
    mean = sum(values) / n
    out["mean"] = mean
    if n >= 2:
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        sem = std / math.sqrt(n)
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * sem
        out.update(std=std, sem=sem, ci_low=mean - half, ci_high=mean + half)
    return out


def paired_difference(a: dict, b: dict, confidence: float = 0.95) -> dict:
    """`a - b` over the seeds both have: the mean difference, its std and Student-t interval."""
    seeds = sorted(set(a) & set(b))
    stats = describe([a[s] - b[s] for s in seeds], confidence)
    stats["seeds"] = seeds
    stats["verdict"] = verdict(stats)
    return stats


def verdict(stats: dict) -> str:
    """`higher` / `lower` when the interval excludes 0, `noise` when it contains it, `unknown` (n < 2)."""
    if stats.get("ci_low") is None:
        return "unknown"
    if stats["ci_low"] > 0:
        return "higher"
    if stats["ci_high"] < 0:
        return "lower"
    return "noise"


# -- aggregation --------------------------------------------------------------------------------------

METRICS = ("accuracy", "top5_accuracy", "macro_f1", "balanced_accuracy", "ece")
METRIC_LABELS = {
    "accuracy": "top-1 (%)",
    "top5_accuracy": "top-5 (%)",
    "macro_f1": "macro-F1 (%)",
    "balanced_accuracy": "bal. acc. (%)",
    "ece": "ECE",
}


def collect_results(output_dir: str | Path, methods: Sequence[str], seeds: Sequence[int]) -> dict:
    """`{method: {seed: all_results}}` for the finished finetune runs, plus stage-1 results per variant."""
    root = Path(output_dir)
    records: dict[str, dict[int, dict]] = {}
    for method in methods:
        for seed in seeds:
            results = _read_json(root / "finetune" / method / f"seed{seed}" / "all_results.json")
            if results is not None:
                records.setdefault(method, {})[seed] = results
    stage1: dict[str, dict[int, dict]] = {}
    for variant in PRETRAIN_VARIANTS:
        for seed in seeds:
            results = _read_json(root / "pretrain" / variant / f"seed{seed}" / "all_results.json")
            if results is not None:
                stage1.setdefault(variant, {})[seed] = results
    return {"finetune": records, "pretrain": stage1}


def summarize(
    records: dict[str, dict[int, dict]],
    *,
    baseline: str = "baseline",
    pairs: Sequence[tuple[str, str]] = CONTROL_PAIRS,
    split: str | None = None,
    confidence: float = 0.95,
) -> dict:
    """Statistics per method over seeds, paired differences to `baseline`, and each (method, control) pair of `pairs` that ran.

    `records`: `{method: {seed: all_results}}`. `split`: `test` (default when present) or `eval`.
    """
    if split is None:
        split = (
            "test"
            if any("test_accuracy" in r for runs in records.values() for r in runs.values())
            else "eval"
        )

    def series(method: str, key: str) -> dict[int, float]:
        return {
            s: float(r[key])
            for s, r in records.get(method, {}).items()
            if r.get(key) is not None and math.isfinite(float(r[key]))
        }

    methods: dict[str, Any] = {}
    for method, runs in records.items():
        if not runs:
            continue
        entry: dict[str, Any] = {
            "description": DESCRIPTIONS.get(method, method),
            "seeds": sorted(runs),
            "n": len(runs),
            "metrics": {},
        }
        for metric in METRICS:
            values = series(method, f"{split}_{metric}")
            if values:
                entry["metrics"][metric] = describe(list(values.values()), confidence)
                entry["metrics"][metric]["values"] = {str(s): v for s, v in sorted(values.items())}
        validation = series(method, "eval_accuracy")
        if validation:
            entry["validation_accuracy"] = describe(list(validation.values()), confidence)
        rho = series(method, f"{split}_rho_mean")
        entry["rho_mean"] = describe(list(rho.values()), confidence) if rho else None
        runtime = series(method, "train_runtime")
        entry["train_runtime"] = describe(list(runtime.values()), confidence) if runtime else None
        speed = series(method, "train_samples_per_second")
        entry["train_samples_per_second"] = describe(list(speed.values()), confidence) if speed else None
        if method != baseline and baseline in records:
            entry["vs_baseline"] = paired_difference(
                series(method, f"{split}_accuracy"), series(baseline, f"{split}_accuracy"), confidence
            )
        methods[method] = entry
    comparisons = []
    for reference, control in pairs:
        if reference in records and control in records:
            stats = paired_difference(
                series(reference, f"{split}_accuracy"), series(control, f"{split}_accuracy"), confidence
            )
            comparisons.append({"method": reference, "versus": control, **stats})
    return {
        "split": split,
        "confidence": confidence,
        "baseline": baseline if baseline in records else None,
        "methods": methods,
        "comparisons": comparisons,
    }


def _pct(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.{digits}f}" if sign else f"{100 * value:.{digits}f}"


def _mean_std(stats: dict | None, scale: float = 100.0, digits: int = 2) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    mean = f"{scale * stats['mean']:.{digits}f}"
    return mean if stats.get("std") is None else f"{mean} ± {scale * stats['std']:.{digits}f}"


def _interval(stats: dict | None, scale: float = 100.0, sign: bool = False) -> str:
    if not stats or stats.get("ci_low") is None:
        return "–"
    fmt = "{:+.2f}" if sign else "{:.2f}"
    return f"[{fmt.format(scale * stats['ci_low'])}, {fmt.format(scale * stats['ci_high'])}]"


def _sentence(name: str, other: str, stats: dict) -> str:
    diff = f"{_pct(stats['mean'], sign=True)} pp"
    ci = _interval(stats, sign=True)
    n = stats["n"]
    if stats["verdict"] == "unknown":
        return f"**{name}** vs {other}: {diff} over {n} seed(s); too few seeds for an interval."
    if stats["verdict"] == "noise":
        return (
            f"**{name}** vs {other}: {diff}, 95% CI {ci} pp over {n} paired seeds: "
            "**within noise** (the interval contains 0)."
        )
    word = "higher" if stats["verdict"] == "higher" else "lower"
    return (
        f"**{name}** vs {other}: {diff}, 95% CI {ci} pp over {n} paired seeds: "
        f"**{word} beyond noise** (the interval excludes 0)."
    )


def _control_conclusion(comparison: dict) -> str:
    """What a method vs its shuffled-label control says about emotion, in one sentence."""
    name, control = comparison["method"], comparison["versus"]
    if comparison["verdict"] == "higher":
        return (
            f"{name} beats its shuffled-label control ({control}) beyond noise: at this scale the emotion "
            "labels, not only the stage-1 pixels and compute, carry the difference."
        )
    if comparison["verdict"] == "lower":
        return f"{name} is below its shuffled-label control ({control}) beyond noise: the emotion labels did not help."
    extra = "the second pathway, " if name.startswith("emoreg") else ""
    return (
        f"{name} cannot be told apart from its shuffled-label control ({control}): these runs do not "
        f"establish that emotion, rather than {extra}the stage-1 pixels and compute, causes any difference."
    )


def render_markdown(
    summary: dict, *, title: str | None = None, stage1: dict | None = None, notes: str = ""
) -> str:
    """The results table, the differences in words and the EmoReg-vs-controls verdict."""
    split = summary["split"]
    split_name = "test" if split == "test" else "validation"
    level = int(round(100 * summary["confidence"]))
    lines = []
    if title:
        lines += [f"### {title}", ""]
    header = [
        "method",
        "n",
        f"{split_name} top-1 (%) mean ± std",
        f"{level}% CI",
        "Δ top-1 vs baseline (pp) [95% CI]",
        "top-5 (%)",
        "macro-F1 (%)",
        "bal. acc. (%)",
        "ECE",
        "mean ρ",
        "train s",
        "images/s",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for method, entry in summary["methods"].items():
        metrics = entry["metrics"]
        diff = entry.get("vs_baseline")
        diff_text = "–" if diff is None else f"{_pct(diff['mean'], sign=True)} {_interval(diff, sign=True)}"
        rho = entry.get("rho_mean")
        runtime, speed = entry.get("train_runtime"), entry.get("train_samples_per_second")
        row = [
            f"{method}",
            str(entry["n"]),
            _mean_std(metrics.get("accuracy")),
            _interval(metrics.get("accuracy")),
            diff_text,
            _mean_std(metrics.get("top5_accuracy")),
            _mean_std(metrics.get("macro_f1")),
            _mean_std(metrics.get("balanced_accuracy")),
            _mean_std(metrics.get("ece"), scale=1.0, digits=3),
            "–" if not rho else f"{rho['mean']:.3f}",
            "–" if not runtime else f"{runtime['mean']:.0f}",
            "–" if not speed else f"{speed['mean']:.0f}",
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        f"Mean ± std (ddof = 1) over seeds; {level}% CI: Student t on the mean; Δ: paired difference to the "
        "baseline over the same seeds (same seed = same data split and initialisation draw), in percentage points. "
        "ρ: mean regulation on the evaluated split (EmoReg variants). train s / images/s: stage-2 training "
        "wall-clock and throughput per run (on a shared machine: indicative only)."
    )
    if stage1:
        parts = []
        for variant, runs in stage1.items():
            runtime = describe([r["train_runtime"] for r in runs.values() if "train_runtime" in r])
            accuracy = describe([r["eval_accuracy"] for r in runs.values() if "eval_accuracy" in r])
            parts.append(
                f"{variant}: {len(runs)} run(s), emotion validation accuracy {_mean_std(accuracy)} %, "
                f"{(runtime['mean'] or 0):.0f} s each"
            )
        lines += ["", "Stage 1 (shared by the methods that read it): " + "; ".join(parts) + "."]
    lines += ["", "**Differences in words**", ""]
    for method, entry in summary["methods"].items():
        if entry.get("vs_baseline") is not None:
            lines.append(f"- {_sentence(method, summary['baseline'], entry['vs_baseline'])}")
    if summary["comparisons"]:
        lines += ["", "**Is it the emotion? (each method against its control)**", ""]
        for comparison in summary["comparisons"]:
            lines.append(f"- {_sentence(comparison['method'], comparison['versus'], comparison)}")
        for comparison in summary["comparisons"]:
            if comparison["versus"] in ("shuffled_emotion", "transfer_shuffled"):
                lines += ["", _control_conclusion(comparison)]
    seeds = {entry["n"] for entry in summary["methods"].values()}
    if seeds and min(seeds) <= 3:
        df = max(1, min(seeds) - 1)
        lines += [
            "",
            f"With {min(seeds)} seeds the interval uses {df} degree(s) of freedom "
            f"(t = {t_quantile(0.975, df):.2f}), so only large effects can be told from noise.",
        ]
    tested = sum(1 for e in summary["methods"].values() if e.get("vs_baseline")) + len(summary["comparisons"])
    if tested > 1:
        chance = 1 - summary["confidence"] ** tested
        lines += [
            "",
            f"No correction for multiple comparisons: with {tested} intervals at {level}%, the chance that at "
            f"least one excludes 0 by luck alone is about {100 * chance:.0f}% (if they were independent), so a "
            "single isolated 'beyond noise' is weak evidence.",
        ]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines) + "\n"


def plot_results(summary: dict, path: str | Path) -> Path:
    """One bar chart: mean top-1 per method with its 95% interval; the baseline mean as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["methods"])
    stats = [summary["methods"][m]["metrics"].get("accuracy", {}) for m in names]
    means = [100 * (s.get("mean") or 0.0) for s in stats]
    errors = [
        [100 * (s["mean"] - s["ci_low"]) if s.get("ci_low") is not None else 0.0 for s in stats],
        [100 * (s["ci_high"] - s["mean"]) if s.get("ci_high") is not None else 0.0 for s in stats],
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 1), 3.8), dpi=120)
    colors = [
        "#888888"
        if m == "baseline"
        else ("#c44e52" if m in ("shuffled_emotion", "no_pretraining", "transfer_shuffled") else "#4c72b0")
        for m in names
    ]
    ax.bar(range(len(names)), means, yerr=errors, capsize=4, color=colors)
    baseline = summary.get("baseline")
    if baseline and summary["methods"][baseline]["metrics"].get("accuracy"):
        ax.axhline(
            100 * summary["methods"][baseline]["metrics"]["accuracy"]["mean"], color="#444444", ls="--", lw=1
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    split_name = "test" if summary["split"] == "test" else "validation"
    ax.set_ylabel(f"{split_name} top-1 accuracy (%)")
    ax.set_title(
        f"mean over seeds, {int(round(100 * summary['confidence']))}% Student-t interval; grey: baseline, red: controls"
    )
    low = min((m - e for m, e in zip(means, errors[0])), default=0.0)
    ax.set_ylim(bottom=max(0.0, low - 5.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def aggregate(config: AblationConfig, *, command: str = "", log: Callable[[str], None] | None = None) -> dict:
    """Write `results.json`, `results.md` and `results.png` into the matrix's output folder."""
    root = Path(config.output_dir)
    collected = collect_results(root, config.methods, config.seeds)
    records = {m: collected["finetune"][m] for m in config.methods if m in collected["finetune"]}
    summary = summarize(records)
    summary["seeds"] = config.seeds
    summary["stage1"] = {
        variant: {str(s): {k: r.get(k) for k in ("eval_accuracy", "train_runtime")} for s, r in runs.items()}
        for variant, runs in collected["pretrain"].items()
    }
    sources = config.pretrain.get("affective_sources")
    data = (
        f"Data: stage 1 `{json.dumps(sources)}` (taxonomy `{config.pretrain.get('taxonomy')}`); "
        f"stage 2 `{json.dumps(config.finetune.get('dataset'))}`."
    )
    notes = "\n\n".join(part for part in (config.notes.strip(), data, command) if part)
    markdown = render_markdown(summary, title=config.title, stage1=collected["pretrain"], notes=notes)
    (root / "results.json").write_text(json.dumps(summary, indent=2))
    (root / "results.md").write_text(markdown)
    if summary["methods"]:
        plot_results(summary, root / "results.png")
    if log:
        log(f"results: {root / 'results.md'}, {root / 'results.json'}, {root / 'results.png'}")
    return summary


def main(argv: Sequence[str] | None = None, *, recipes_dir: str | Path, default_config: str | Path) -> dict:
    """`ablate.py [CONFIG.yaml] [--key value ...]`: run the matrix, then aggregate it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    path = argv.pop(0) if argv and not argv[0].startswith("--") else str(default_config)
    config = load_config(path, argv, repo_root=Path(recipes_dir).parent)
    log = Logger(Path(config.output_dir) / "ablation.log")
    log(f"config {path}" + (f" with overrides {' '.join(argv)}" if argv else ""))
    summary = run_matrix(config, recipes_dir=recipes_dir, log=log)
    shown = os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    command = "Reproduce: `" + shlex.join(["python", "recipes/ablate.py", shown, *argv]) + "`"
    result = aggregate(config, command=command, log=log)
    print((Path(config.output_dir) / "results.md").read_text())
    return {"runs": summary, "results": result}
