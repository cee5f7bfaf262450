"""Time and truth: a run that would silently inherit the demo's synthetic affective pathway on real data, and
a Hub data set that cannot be reached, each end in one clear line before any work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_fixtures import *  # noqa: F403

from emoreg_hf.data import load_target_dataset, sources

ROOT = Path(__file__).resolve().parents[1]


def run(args, tmp_path, **env):
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    environment.update({"HF_HOME": str(tmp_path / "hf_home"), **env})
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )


def test_hub_preset_offline_is_one_line_not_retries_and_a_traceback(tmp_path):
    """No network (the Hub's address refuses at once here): no retry warnings, no traceback, exit 2."""
    result = run(
        [
            "recipes/finetune.py",
            "--dataset",
            "cifar10",
            "--method",
            "baseline",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        tmp_path,
        HF_ENDPOINT="http://127.0.0.1:9",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Retry" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "uoft-cs/cifar10 is a Hub data set, the Hub cannot be reached" in errors[0]
    assert "--dataset '{path: /path/to/cifar10}'" in errors[0] and not (tmp_path / "out").exists()


def test_offline_mode_reads_the_cache_or_says_what_to_do(monkeypatch, cifar10_dir):
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", True)  # as HF_HUB_OFFLINE=1 (conftest) sets it
    with pytest.raises(
        sources.HubDataUnavailable, match=r"HF_HUB_OFFLINE is set, and it is not in the local cache"
    ):
        load_target_dataset("cifar10")
    monkeypatch.setattr("datasets.config.HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources, "hub_reachable", lambda: False)
    with pytest.raises(sources.HubDataUnavailable, match="the Hub cannot be reached from this machine"):
        load_target_dataset("cifar10")
    assert (
        load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir)})["test"].num_rows == 20
    )  # local: as ever
    import datasets
    from huggingface_hub import constants

    assert datasets.config.HF_HUB_OFFLINE is False and constants.HF_HUB_OFFLINE is (
        os.environ.get("HF_HUB_OFFLINE") == "1"
    )


def test_real_data_without_a_config_never_inherits_the_demo_pathway(tmp_path):
    """No YAML: the demo YAML supplies affect_model_name_or_path (a stage 1 of synthetic stimuli). With real
    data that is refused, before anything is loaded, unless the pathway is given."""
    result = run(
        [
            "recipes/finetune.py",
            "--dataset",
            "{path: /path/to/cifar10}",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        tmp_path,
        HF_HUB_OFFLINE="1",
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "the affective pathway would be the demo's" in result.stderr
    assert "--affect_model_name_or_path" in result.stderr and not (tmp_path / "out").exists()
