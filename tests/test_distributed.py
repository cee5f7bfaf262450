"""Many processes, as a user launches them: torchrun with 2 gloo ranks on this machine. One process owns the
run folder (resume over a bad checkpoint, overwrite of a finished run)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A tiny baseline finetune on the demo data: 6 steps of 2 ranks x 8 images, a checkpoint every 2 steps.
TINY = [
    "--method", "baseline", "--max_train_samples", "48", "--max_eval_samples", "16",
    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16", "--max_steps", "6",
    "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "3", "--eval_strategy", "no",
    "--logging_steps", "1", "--report_to", "none", "--dataloader_num_workers", "0", "--seed", "7",
]  # fmt: skip

# Runs a recipe after patching it (argv[1] = recipe, the rest its arguments): how a test makes a crash or a
# slow check happen at a chosen place without touching the code under test.
PATCHED = """
import runpy, sys, time
{patch}
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
CRASH_AT_STEP = """
from transformers import TrainerCallback
import emoreg_hf.training as training

class Crash(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == {step}:
            raise RuntimeError("simulated crash at step {step}")

init = training.EmoRegTrainer.__init__
def patched(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.add_callback(Crash())
training.EmoRegTrainer.__init__ = patched
"""
# Every rank vetting checkpoints for itself raced: the slower one found a checkpoint the other had just
# renamed (FileNotFoundError). Slowing the check makes that race certain if anything but rank 0 checks.
SLOW_CHECKPOINT_CHECK = """
import emoreg_hf.run_dir as run_dir
check = run_dir.checkpoint_problem
def slow(folder):
    time.sleep(0.5)
    return check(folder)
run_dir.checkpoint_problem = slow
"""


def free_port() -> str:
    with socket.socket() as probe:  # torchrun's rendezvous does not accept port 0
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def run(args: list, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(a) for a in args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    return run([*launcher, "--master_port", free_port(), *args])


def patched_recipe(tmp_path: Path, name: str, patch: str) -> Path:
    script = tmp_path / f"{name}.py"
    script.write_text(PATCHED.format(patch=patch))
    return script


@pytest.mark.slow
def test_two_ranks_resume_over_a_truncated_checkpoint_then_overwrite_the_finished_run(tmp_path):
    out = tmp_path / "run"
    crash = patched_recipe(tmp_path, "crash", CRASH_AT_STEP.format(step=4))
    result = torchrun(crash, "recipes/finetune.py", *TINY, "--output_dir", out)
    assert result.returncode != 0 and "simulated crash at step 4" in result.stderr
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    weights = out / "checkpoint-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # the newest checkpoint was cut short
    (out / "notes.txt").write_text("mine")

    # The same command again, on 2 ranks, with a check slow enough that any rank but the main one would race.
    slow = patched_recipe(tmp_path, "slow", SLOW_CHECKPOINT_CHECK)
    result = torchrun(slow, "recipes/finetune.py", *TINY, "--output_dir", out)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Resuming from {out / 'checkpoint-2'}" in result.stderr
    assert result.stderr.count("cannot be resumed") == 1  # decided once, by the main process
    assert (out / "checkpoint-4.incomplete").is_dir() and (out / "checkpoint-6").is_dir()
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 6 and steps == [1, 2, 3, 4, 5, 6]  # 1-2 before the crash, 3-6 resumed
    record = json.loads((out / "run_info.json").read_text())
    assert record["hyperparameters"]["world_size"] == 2
    assert record["hyperparameters"]["global_batch_size"] == 16

    # Overwrite the finished run, on 2 ranks: the earlier run's outputs go (the set-aside checkpoint too),
    # the user's own file stays, and nothing is resumed.
    result = torchrun(
        slow, "recipes/finetune.py", *TINY, "--output_dir", out, "--overwrite_output_dir", "true"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Resuming" not in result.stderr
    assert not (out / "checkpoint-4.incomplete").exists() and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert not (out / ".emoreg-run.lock").exists()


@pytest.mark.slow
def test_two_nodes_of_one_process_each_make_one_run(tmp_path):
    """Two torchrun agents on this machine as two nodes (`--nnodes 2 --node_rank 0/1`, c10d rendezvous on
    127.0.0.1), one process each: what a 2-node job runs, one process per node."""
    out, port = tmp_path / "run", free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node_rank",
                str(node),
                "--nproc_per_node",
                "1",
                "--rdzv_backend",
                "c10d",
                "--rdzv_endpoint",
                f"127.0.0.1:{port}",
                "--rdzv_id",
                "emoreg-two-nodes",
                "recipes/finetune.py",
                *TINY,
                "--output_dir",
                str(out),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for node in (0, 1)
    ]
    try:
        outputs = [agent.communicate(timeout=300) for agent in agents]
    finally:
        for agent in agents:
            agent.kill()
    assert [agent.returncode for agent in agents] == [0, 0], outputs[0][1][-3000:] + outputs[1][1][-3000:]
    record = json.loads((out / "run_info.json").read_text())
    assert record["hyperparameters"]["world_size"] == 2
    assert record["hyperparameters"]["global_batch_size"] == 2 * 8
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 6
    assert sum("test_accuracy=" in stdout for stdout, _ in outputs) == 1  # one main process finished the run
