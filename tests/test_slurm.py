"""recipes/launch.slurm on the live local Slurm cluster (scripts/local_slurm.sh): a tiny real pretrain whose
overrides carry YAML with spaces and quotes, pre-empted mid-run (the warning signal to the batch shell),
checkpointed, requeued and resumed to a finished run folder; a finetune on it with a YAML-valued override;
bad requests refused by the script before any Python starts."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "recipes" / "launch.slurm"
TINY = [
    "--max_train_samples",
    "128",
    "--max_eval_samples",
    "64",
    "--disable_tqdm",
    "true",
    "--save_strategy",
    "no",
]


def _env() -> dict:
    return {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def _wait_for(path: Path, text: str, timeout: float, job: subprocess.Popen) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline and job.poll() is None:
        content = path.read_text(errors="replace") if path.is_file() else ""
        if text in content:
            return content
        time.sleep(0.3)
    content = path.read_text(errors="replace") if path.is_file() else ""
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout:.0f} s:\n{content[-3000:]}")


@pytest.mark.slow
def test_launch_slurm_preempted_requeued_resumed_then_finetune(slurm_job_name, tmp_path):
    sources = '[{path: "demo:synthetic-faces", weight: 2}, {path: "demo:synthetic-valence", source: "valence, as typed", weight: 1}]'
    pretrain = tmp_path / "pretrain"
    # A config path relative to the repository, from another directory: launch.slurm finds it.
    command = [
        "sbatch",
        "--wait",
        f"--job-name={slurm_job_name}",
        "--output=%x-%j.out",
        str(LAUNCH),
        "pretrain",
        "recipes/demo/pretrain.yaml",
        "cpu",
        "--output_dir",
        str(pretrain),
        "--max_steps",
        "150",
        "--logging_steps",
        "1",
        "--eval_strategy",
        "no",
        *TINY,
        "--affective_sources",
        sources,
    ]
    job = subprocess.Popen(command, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        submitted = job.stdout.readline()
        job_id = re.search(r"Submitted batch job (\d+)", submitted).group(1)
        log = tmp_path / f"{slurm_job_name}-{job_id}.out"
        _wait_for(log, "'loss'", timeout=240, job=job)  # training has started
        # Slurm's warning before the time limit (--signal=B:USR1@300) goes to the batch shell: send it now.
        subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], check=True, timeout=60)
        assert job.wait(timeout=480) == 0
    finally:
        if job.poll() is None:
            job.kill()
    out = log.read_text()
    step = int(re.search(r"stopped on request at step (\d+): checkpoint-\1 is saved", out).group(1))
    assert 0 < step < 150
    assert "pre-emption warning: asking the run to save a checkpoint and stop" in out
    assert f"checkpoint saved (exit 1): requeueing job {job_id}" in out
    assert f"restart 1 of job {job_id}: resuming from the run folder" in out
    assert f"Resuming from {pretrain}/checkpoint-{step}" in out
    record = json.loads((pretrain / "run_info.json").read_text())
    assert json.loads((pretrain / "trainer_state.json").read_text())["global_step"] == 150
    assert record["config"]["affective_sources"] == yaml.safe_load(sources)  # one argument, as typed
    assert shlex.quote(sources) in record["command"]
    assert record["hyperparameters"]["world_size"] == 1
    assert not list(tmp_path.glob(".emoreg-stop-*"))  # the stop request is gone with the job

    finetune = tmp_path / "finetune"
    dataset = '{preset: demo, source: "demo target, as typed"}'
    result = subprocess.run(
        [
            "sbatch",
            "--wait",
            f"--job-name={slurm_job_name}",
            "--output=%x-%j.out",
            "--cpus-per-task=1",
            str(LAUNCH),
            "finetune",
            "demo/finetune.yaml",  # relative to recipes/
            "cpu",
            "--output_dir",
            str(finetune),
            "--affect_model_name_or_path",
            str(pretrain),
            "--dataset",
            dataset,
            "--num_train_epochs",
            "1",
            "--eval_strategy",
            "no",
            *TINY,
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((finetune / "run_info.json").read_text())
    assert record["datasets"][0]["name"] == "demo target, as typed"
    assert record["config"]["dataset"] == yaml.safe_load(dataset)
    assert record["models"]["affect_path"] == str(pretrain)


@pytest.mark.slow
def test_launch_slurm_refuses_what_it_cannot_run(slurm_job_name, tmp_path):
    """No GPU for a GPU config, an unknown config: said in the job's output, exit 2, before any Python."""
    cases = {
        "gpu": ["finetune", "demo/finetune.yaml", "ddp"],
        "config": ["finetune", "nowhere.yaml", "cpu"],
    }
    jobs = {}
    for label, args in cases.items():
        jobs[label] = subprocess.Popen(
            ["sbatch", "--wait", f"--job-name={slurm_job_name}", f"--output={label}.out", str(LAUNCH), *args],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    for job in jobs.values():
        assert job.wait(timeout=240) != 0
    assert "'ddp' needs GPUs and this job has none: ask sbatch for them" in (tmp_path / "gpu.out").read_text()
    assert "config not found: nowhere.yaml" in (tmp_path / "config.out").read_text()
