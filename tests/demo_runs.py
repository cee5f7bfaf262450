"""Real run folders for the tests: the embedded demo's pretrain and finetune, tiny, launched as a user would.

`demo_runs` (session scope, registered in conftest.py) runs `python recipes/pretrain.py` and then
`python recipes/finetune.py` on its output, in subprocesses from the repository root, with small overrides
(`TINY`), into a temporary folder. Tests read the folders and must not change them: copy first, or write
elsewhere (`write_model_card(run, tmp_path)`, `export_for_hub(run, tmp_path / "export")`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One epoch on a few hundred images; logging every step so the curves have points; a checkpoint is kept
# (save_strategy from the demo YAML), so the export has `checkpoint-*` and `training_args.bin` to leave out.
TINY = (
    "--num_train_epochs",
    "1",
    "--max_train_samples",
    "128",
    "--max_eval_samples",
    "64",
    "--logging_steps",
    "1",
    "--seed",
    "7",
    "--overwrite_output_dir",
    "true",
)


@dataclass(frozen=True)
class DemoRuns:
    """Output folders of the demo stages: `pretrain` (affective backbone) and `finetune` (EmoReg on it)."""

    root: Path
    pretrain: Path
    finetune: Path


def run_recipe(recipe: str, output_dir: Path, *overrides: str, timeout: int = 600) -> str:
    """`python recipes/<recipe> --output_dir OUTPUT_DIR <TINY> <overrides>` offline; fails the test on error.
    Returns what the run wrote to stderr (its log)."""
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("HF_TOKEN", None)
    command = [sys.executable, f"recipes/{recipe}", "--output_dir", str(output_dir), *TINY, *overrides]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result.stderr


@pytest.fixture(scope="session")
def demo_runs(tmp_path_factory) -> DemoRuns:
    root = tmp_path_factory.mktemp("demo_runs")
    pretrain, finetune = root / "pretrain", root / "finetune"
    run_recipe("pretrain.py", pretrain)
    run_recipe("finetune.py", finetune, "--affect_model_name_or_path", str(pretrain))
    return DemoRuns(root=root, pretrain=pretrain, finetune=finetune)
