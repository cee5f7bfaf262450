"""What the matrix runs: every (stage, method or variant, seed) as a `PlannedRun`, in execution order; stage-1
models once per (variant, seed), shared by the stage-2 runs that read them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .. import registry, stage1_variants
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
