"""The ablation matrix as configured: methods (one switch each), seeds, the two stages' recipe keys, and
command-line overrides (`--pretrain.KEY VALUE`, `--finetune.KEY VALUE`, `--seeds`, `--methods`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import registry, stage1_variants
from ..config_reading import read_overrides, read_yaml, yaml_value
from .replicates import stage1_seed_at

# The matrix's entries ("methods" on the command line: baseline, transfer, emoreg_fixed, ..., and the
# controls) and the stage-1 variants they read are declared in `emoreg_hf.registry` (MATRIX, CONTROLS,
# STAGE1_VARIANTS); this module only reads them.
# Recipe keys that the runner sets itself; a stage config may not pin them.
RUNNER_KEYS = ("output_dir", "seed", "overwrite_output_dir")


def matrix_keys(stage: str) -> dict[str, tuple[str, str]]:
    """The recipe keys of `stage` that the matrix sets in its runs, each with (why, what to use instead): a
    value given for one in the ablation config or as `--STAGE.KEY` would be replaced without a word (and
    still shown in the report's Reproduce line), so it is refused. A stage's base recipe YAML (`config:`)
    may name them (a recipe's own `seed`, `output_dir`, `method`): those are dropped or replaced by design."""
    choose = f"choose them with --methods (available: {', '.join(registry.MATRIX)})"
    keys = {
        "seed": ("each run's seed comes from `seeds`", "use --seeds 3 (seeds 0, 1, 2) or --seeds 3,4"),
        "output_dir": (f"each run goes to <output_dir>/{stage}/<name>/seed<N>", "use --output_dir DIR"),
        "overwrite_output_dir": (
            "each run resumes or starts over by itself",
            "use --overwrite to replace finished runs of another configuration",
        ),
    }
    if stage == "finetune":
        regulated = [set(arm.switches) for arm in registry.MATRIX.values() if arm.method.regulated]
        for key in {"method"} | set.intersection(*regulated):  # set by every entry that reads it
            keys[key] = ("each method of the matrix sets it", choose)
        keys["affect_model_name_or_path"] = (
            "it trains stage 1 and gives each run its stage-1 model",
            "configure stage 1 with --pretrain.KEY",
        )
    else:
        variants = ", ".join(stage1_variants.STAGE1_VARIANTS)
        for variant in stage1_variants.STAGE1_VARIANTS.values():
            for key, value in variant.switches.items():
                if value is not None:  # `None` unsets a key a variant does not use (affective_sources)
                    keys[key] = (
                        f"the stage-1 variants {variants} set it, read by the methods that need them",
                        choose,
                    )
    return keys


def check_matrix_keys(stage: str, given: dict, where: str) -> None:
    """Refuse a key of `given` (a stage's keys from the ablation config or the command line) that the matrix
    sets itself (`matrix_keys`), naming what to use instead."""
    owned = matrix_keys(stage)
    for key in given:
        if key in owned:
            shown = f"--{stage}.{key}" if where == "command line" else f"{stage}: {{{key}: ...}} in {where}"
            why, instead = owned[key]
            raise ValueError(f"{shown}: the matrix sets {key} itself ({why}); {instead}.")


@dataclass
class AblationConfig:
    """`pretrain` / `finetune`: recipe keys for each stage (a `config:` key names a recipe YAML to start
    from); `methods`: entries of `registry.MATRIX`; `seeds`: the training seeds (stage 1 and 2 use the same);
    `stage1_seeds`: when stage 1 is too costly to train once per seed, the seeds it is trained with (stage-2
    seed number i reads stage-1 seed `stage1_seeds[i % len]`; None: one stage 1 per stage-2 seed)."""

    pretrain: dict
    finetune: dict
    methods: list[str] = field(default_factory=registry.default_arms)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    output_dir: str = "outputs/ablations/run"
    title: str | None = None
    notes: str = ""
    analysis: dict | None = None  # the pre-registered analysis (ablation.analysis); None: the plain report
    stage1_seeds: list[int] | None = None

    def __post_init__(self):
        from .analysis import check_analysis

        unknown = [m for m in self.methods if m not in registry.MATRIX]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; available: {list(registry.MATRIX)}")
        if not self.seeds:
            raise ValueError("seeds must be a positive count or a non-empty list")
        if self.stage1_seeds is not None and not self.stage1_seeds:
            raise ValueError("stage1_seeds must be a positive count or a non-empty list (or absent)")
        self.analysis = check_analysis(self.analysis, self.methods)
        if (self.analysis or {}).get("unit") == "stage1_model":
            check_nested(self.seeds, self.stage1_seeds)


def check_nested(seeds: list[int], stage1_seeds: list[int] | None) -> None:
    """`analysis.unit: stage1_model` needs stage-1 models to replicate: >= 2 distinct `stage1_seeds`, each read
    by the same number of stage-2 seeds (balanced, so every model weighs the same)."""
    if stage1_seeds is None or len(set(stage1_seeds)) < 2 or len(set(stage1_seeds)) != len(stage1_seeds):
        raise ValueError(
            f"analysis.unit: stage1_model needs `stage1_seeds` listing >= 2 different seeds, got {stage1_seeds!r}"
        )
    if len(seeds) % len(stage1_seeds):
        raise ValueError(
            f"analysis.unit: stage1_model needs every stage-1 seed read by as many stage-2 seeds: {len(seeds)} "
            f"seeds over {len(stage1_seeds)} stage1_seeds leaves some models with fewer; use a multiple"
        )


def stage1_seed(config: AblationConfig, seed: int) -> int:
    """The stage-1 seed whose checkpoints stage-2 seed `seed` reads."""
    if config.stage1_seeds is None:
        return seed
    return stage1_seed_at(config.seeds.index(seed), config.stage1_seeds)


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
        base = read_yaml(path)
    return {**base, **values}


def _data(pretrain: dict, finetune: dict) -> list:
    """The data sets a matrix reads: stage 1's sources (or its target data set) and stage 2's target."""
    sources = pretrain.get("affective_sources")
    return [*(sources if isinstance(sources, list) else [sources]), finetune.get("dataset", "cifar10")]


def _synthetic(pretrain: dict, finetune: dict) -> bool:
    """Whether every image the matrix reads is the demo generator's (`data.is_synthetic`, the one rule)."""
    from ..data import is_synthetic
    from ..data.targets import resolve_target_spec

    try:
        sources = [s for s in pretrain.get("affective_sources") or [] if s is not None]
        return all(map(is_synthetic, sources)) and is_synthetic(
            resolve_target_spec(finetune.get("dataset", "cifar10"))
        )
    except (TypeError, ValueError, AttributeError):  # a source list file, an odd spec: the recipe says why
        return False


def data_title(pretrain: dict, finetune: dict) -> str:
    """A title naming the data a matrix reads (its `title` when the config file's own was written for other
    data): `Ablation: fer2013 -> cifar10`."""

    def name(spec) -> str:
        if isinstance(spec, dict):
            spec = spec.get("source") or spec.get("preset") or spec.get("data_dir") or spec.get("path")
        return Path(str(spec).removeprefix("demo:")).name or str(spec)

    *sources, target = _data(pretrain, finetune)
    shown = ", ".join(name(s) for s in sources if s is not None) or "?"
    synthetic = " (synthetic data)" if _synthetic(pretrain, finetune) else ""
    return f"Ablation: {shown} -> {name(target)}{synthetic}"


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
        node[last] = yaml_value(raw)  # the recipes' reader: YAML values, `no` stays a word
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
        raw = read_yaml(file)
        bases.append(file.resolve().parent)
    if repo_root is not None:
        bases.append(Path(repo_root))
    extra = parse_overrides(overrides) if not isinstance(overrides, dict) else copy.deepcopy(overrides)
    allowed = {
        "pretrain",
        "finetune",
        "methods",
        "seeds",
        "stage1_seeds",
        "output_dir",
        "title",
        "notes",
        "analysis",
    }
    unknown = sorted(set(raw) - allowed) + sorted(set(extra) - allowed)
    if unknown:
        raise ValueError(f"unknown ablation key(s) {unknown}; allowed: {sorted(allowed)}")
    stages, written = {}, {}
    for stage in ("pretrain", "finetune"):
        values = written[stage] = _stage_values(raw.get(stage), bases, stage)
        stage_extra = extra.get(stage) or {}
        if not isinstance(stage_extra, dict):
            raise ValueError(f"--{stage} takes keys: --{stage}.KEY VALUE")
        if isinstance(raw.get(stage), dict):
            check_matrix_keys(stage, raw[stage], "the ablation config")
        check_matrix_keys(
            stage, stage_extra, "command line" if not isinstance(overrides, dict) else "overrides"
        )
        if "config" in stage_extra:
            values = _stage_values({"config": stage_extra.pop("config")}, bases, stage)
        stages[stage] = _merge(values, stage_extra)
        pinned = [k for k in RUNNER_KEYS if k in stages[stage]]
        for key in pinned:  # the runner owns these; drop silently (a recipe YAML usually names output_dir)
            stages[stage].pop(key)
    merged = {k: v for k, v in raw.items() if k not in ("pretrain", "finetune")}
    merged.update({k: v for k, v in extra.items() if k not in ("pretrain", "finetune")})
    if _synthetic(**written) != _synthetic(**stages):
        # The file's title and notes were written for its data (the demo's: "synthetic data ... say nothing
        # about emotion"); the overrides read real data instead (or the other way round): they do not apply.
        merged["title"] = extra.get("title") or data_title(**stages)
        merged["notes"] = extra.get("notes", "")
    return AblationConfig(
        pretrain=stages["pretrain"],
        finetune=stages["finetune"],
        methods=_methods(merged.get("methods", registry.default_arms())),
        seeds=_seeds(merged.get("seeds", 3)),
        stage1_seeds=None if merged.get("stage1_seeds") is None else _seeds(merged["stage1_seeds"]),
        output_dir=str(merged.get("output_dir", "outputs/ablations/run")),
        title=merged.get("title"),
        notes=str(merged.get("notes") or ""),
        analysis=merged.get("analysis"),
    )
