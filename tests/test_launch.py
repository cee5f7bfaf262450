"""Where runs execute, without training: the ablation's launch options, GPU and thread slots (a multi-GPU run
goes through `accelerate launch`, never nn.DataParallel), the Slurm launcher against stand-in sbatch/squeue
(arrays, dependency, no resubmission, failures named with their logs), the stop-request callback behind
pre-emption, and the run record's world size and global batch under nn.DataParallel."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import TrainerControl

from emoreg_hf import ablation
from emoreg_hf.ablation.local import LocalLauncher
from emoreg_hf.ablation.slurm import SlurmLauncher, sbatch_arguments
from emoreg_hf.callbacks import CheckpointOnStopRequest
from emoreg_hf.checkpoints import resume_checkpoint
from emoreg_hf.cli import run_script
from emoreg_hf.preemption import PREEMPTED_EXIT, STOP_FILE_ENV, TrainingPreempted
from emoreg_hf.run_settings import training_summary
from emoreg_hf.training_options import optimizer_steps

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


# -- ablate.py's launch options ---------------------------------------------------------------------------


def test_launch_options_are_split_from_the_matrix_options():
    launch, sbatch, rest = ablation.split_launch_options(
        [
            "--methods",
            "baseline",
            "--launcher",
            "slurm",
            "--sbatch.partition",
            "gpu",
            "--sbatch.gres=gpu:1",
            "--sbatch.exclusive",
            "--wait",
            "false",
            "--finetune.dataset",
            "{path: x}",
        ]
    )
    assert launch == {"launcher": "slurm", "wait": "false"}
    assert sbatch == {"partition": "gpu", "gres": "gpu:1", "exclusive": True}
    assert rest == ["--methods", "baseline", "--finetune.dataset", "{path: x}"]
    launcher = ablation.build_launcher(launch, sbatch)
    assert isinstance(launcher, SlurmLauncher) and launcher.wait is False
    assert "--partition=gpu" in launcher.extra_args and "--exclusive" in launcher.extra_args
    assert (
        "--requeue" in launcher.extra_args and "--signal=B:USR1@300" in launcher.extra_args
    )  # requeue-friendly
    assert sbatch_arguments({"cpus_per_task": 8, "signal": "B:USR1@600"}) == [
        "--cpus-per-task=8",
        "--signal=B:USR1@600",
    ]
    with pytest.raises(ValueError, match="--parallel does not apply to --launcher slurm"):
        ablation.build_launcher({"launcher": "slurm", "parallel": "2"}, {})
    with pytest.raises(ValueError, match="--sbatch.partition does not apply to --launcher local"):
        ablation.build_launcher({}, {"partition": "gpu"})
    with pytest.raises(ValueError, match="runner sets --array"):
        ablation.build_launcher({"launcher": "slurm"}, {"array": "0-3"})
    with pytest.raises(ValueError, match="--parallel: expected a whole number"):
        ablation.build_launcher({"parallel": "two"}, {})
    with pytest.raises(ValueError, match="--parallel must be >= 1, got 0"):  # not silently one at a time
        ablation.build_launcher({"parallel": "0"}, {})
    with pytest.raises(ValueError, match="--threads must be >= 1, got 0"):
        ablation.build_launcher({"threads": "0"}, {})


@pytest.mark.slow  # a process
def test_ablate_help_lists_the_launchers():
    out = subprocess.run(
        [os.sys.executable, str(RECIPES / "ablate.py"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    for option in ("--launcher", "--parallel", "--threads", "--devices", "--sbatch.KEY", "--wait"):
        assert option in out


def test_local_slots_share_gpus_and_a_multi_gpu_run_uses_accelerate(tmp_path):
    launcher = LocalLauncher(2, devices=["0", "1", "2", "3"], threads=3)
    assert launcher.slots == [["0", "1"], ["2", "3"]]
    assert launcher.slot_env(1) == {
        "OMP_NUM_THREADS": "3",
        "MKL_NUM_THREADS": "3",
        "CUDA_VISIBLE_DEVICES": "2,3",
    }
    cell = SimpleNamespace(recipe_args=lambda recipes_dir: ["recipes/finetune.py", "run.yaml"])
    command = launcher.command(cell, RECIPES, "python", 0)
    assert command[:6] == [
        "python",
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
    ]
    assert command[-2:] == ["recipes/finetune.py", "run.yaml"]
    one_each = LocalLauncher(4, devices=["0", "1", "2", "3"])
    assert one_each.command(cell, RECIPES, "python", 3) == ["python", "recipes/finetune.py", "run.yaml"]
    assert one_each.slot_env(3)["CUDA_VISIBLE_DEVICES"] == "3"
    with pytest.raises(ValueError, match="cannot share 4 GPU"):
        LocalLauncher(3, devices=["0", "1", "2", "3"])
    cpu = LocalLauncher(2, devices=[], threads=1)
    assert cpu.slot_env(0)["CUDA_VISIBLE_DEVICES"] == ""  # --devices cpu hides every GPU
    assert "1 CPU thread(s) each" in cpu.describe()


# -- the Slurm launcher, against stand-in sbatch / squeue / scontrol ----------------------------------------

FAKE_SLURM = {
    "sbatch": """#!/bin/bash
n=$(( $(cat "$FAKE/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$FAKE/next"
printf '%s\\n' "$*" >> "$FAKE/sbatch.log"
echo "$n;fakecluster"
""",
    "squeue": """#!/bin/bash
cat "$FAKE/queue" 2>/dev/null || true
""",
    "scontrol": """#!/bin/bash
echo "JobId=$4 JobState=FAILED Reason=NonZeroExitCode"
""",
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    folder = tmp_path / "fake-slurm"
    folder.mkdir()
    for name, body in FAKE_SLURM.items():
        (folder / name).write_text(body)
        (folder / name).chmod((folder / name).stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE", str(folder))
    return folder


def test_slurm_launcher_arrays_dependency_no_resubmission_and_failures(fake_slurm, tmp_path):
    config = ablation.load_config(
        RECIPES / "ablations" / "demo.yaml",
        ["--methods", "baseline,emoreg_adaptive", "--seeds", "2", "--output_dir", str(tmp_path / "m")],
        repo_root=REPO,
    )
    lines: list[str] = []
    submit = SlurmLauncher({"partition": "gpu", "cpus_per_task": 4}, wait=False, poll_seconds=0.01)
    summary = ablation.run_matrix(config, recipes_dir=RECIPES, log=lines.append, launcher=submit)
    assert summary["ran"] == [] and len(summary["waiting"]) == 6
    first, second = (fake_slurm / "sbatch.log").read_text().splitlines()
    # stage-1 runs and the baselines (they need no stage-1 run) first; EmoReg after the first array ends
    assert "--array=0-3" in first and "--partition=gpu" in first and "--cpus-per-task=4" in first
    assert "--array=0-1" in second and "--dependency=afterany:101" in second
    root = tmp_path / "m"
    jobs = json.loads((root / "slurm" / "jobs.json").read_text())
    assert (
        jobs["pretrain/normal/seed1"]["job"] == "101_2"
        and jobs["finetune/emoreg_adaptive/seed0"]["job"] == "102_0"
    )
    script = Path(jobs["finetune/emoreg_adaptive/seed1"]["script"]).read_text()
    assert f"NEEDS={root.resolve()}/pretrain/normal/seed1" in script
    assert 'recipes/launch.slurm" "$STAGE"' not in script and 'launch.slurm "$STAGE"' in script
    run = root / "finetune" / "emoreg_adaptive" / "seed1"
    assert (run / "ablation_run.yaml").is_file()
    assert json.loads((run / "ablation_run.json").read_text())["status"] == "submitted"

    # queued: the same command submits nothing again
    (fake_slurm / "queue").write_text("".join(f"{j['job']} PENDING\n" for j in jobs.values()))
    lines.clear()
    again = ablation.run_matrix(config, recipes_dir=RECIPES, log=lines.append, launcher=submit)
    assert len(again["waiting"]) == 6 and len((fake_slurm / "sbatch.log").read_text().splitlines()) == 2
    assert sum("not submitted again" in line for line in lines) == 6
    changed = ablation.load_config(
        RECIPES / "ablations" / "demo.yaml",
        ["--methods", "baseline,emoreg_adaptive", "--seeds", "2", "--output_dir", str(root)]
        + ["--finetune.learning_rate", "0.1"],
        repo_root=REPO,
    )
    with pytest.raises(ValueError, match=r"still queued or running with an earlier configuration[^$]*102_0"):
        ablation.run_matrix(changed, recipes_dir=RECIPES, log=lines.append, launcher=submit)
    assert len((fake_slurm / "sbatch.log").read_text().splitlines()) == 2

    # all ended without a record: the next call names each run, with its log and Slurm's end state ...
    (fake_slurm / "queue").write_text("")
    (run / "ablation_stdout.log").write_text("Traceback ...\nValueError: something the run said\n")
    collect = SlurmLauncher(wait=True, poll_seconds=0.01)
    with pytest.raises(ablation.MatrixFailed) as failed:
        ablation.run_matrix(config, recipes_dir=RECIPES, log=lines.append, launcher=collect)
    message = str(failed.value)
    assert "6 run(s) of the matrix failed" in message
    expected = (
        f"finetune/emoreg_adaptive/seed1 did not finish (Slurm job 102_1, state FAILED); last lines of {run}"
    )
    assert expected in message and "ValueError: something the run said" in message
    assert json.loads((run / "ablation_run.json").read_text())["status"] == "failed"
    assert len((fake_slurm / "sbatch.log").read_text().splitlines()) == 2  # reported, not yet retried

    # ... and the call after that submits them again
    ablation.run_matrix(config, recipes_dir=RECIPES, log=lines.append, launcher=submit)
    assert len((fake_slurm / "sbatch.log").read_text().splitlines()) == 4

    # a stage-2 run to be retried whose stage-1 run has just failed is held back, not sent to fail at once
    marker = root / "finetune" / "emoreg_adaptive" / "seed0" / "ablation_run.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "status": "failed"}))
    with pytest.raises(
        ablation.MatrixFailed,
        match="not submitted, since the stage-1 run each needs failed: finetune/emoreg_adaptive/seed0",
    ):
        ablation.run_matrix(config, recipes_dir=RECIPES, log=lines.append, launcher=submit)
    assert len((fake_slurm / "sbatch.log").read_text().splitlines()) == 4


# -- pre-emption: the stop request --------------------------------------------------------------------------


def test_stop_request_saves_a_checkpoint_and_stops(tmp_path, monkeypatch):
    monkeypatch.delenv(STOP_FILE_ENV, raising=False)
    before = signal.getsignal(signal.SIGUSR1)
    callback = CheckpointOnStopRequest(trainer=None)
    args = SimpleNamespace(world_size=1)
    state = SimpleNamespace(global_step=3, is_world_process_zero=True)
    control = TrainerControl()
    callback.on_train_begin(args, state, control)
    callback.on_step_end(args, state, control)
    assert not control.should_save and not control.should_training_stop
    os.kill(os.getpid(), signal.SIGUSR1)  # what Slurm's --signal=USR1 sends a job's processes
    callback.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop and callback.stopped_at == 3
    control.should_evaluate = True
    callback.on_epoch_end(args, state, control)
    assert not control.should_evaluate and not control.should_save  # saved already; no end-of-epoch work
    callback.on_train_end(args, state, control)
    assert signal.getsignal(signal.SIGUSR1) == before
    with pytest.raises(TrainingPreempted, match=r"step 3: checkpoint-3 is saved in .*run the same command"):
        callback.raise_if_stopped(str(tmp_path))

    stop_file = tmp_path / "stop"  # what launch.slurm creates when its batch shell gets the warning
    monkeypatch.setenv(STOP_FILE_ENV, str(stop_file))
    later = CheckpointOnStopRequest(trainer=None)
    later.on_train_begin(args, state, control)
    stop_file.touch()
    control = TrainerControl()
    later.on_step_end(args, SimpleNamespace(global_step=9, is_world_process_zero=True), control)
    assert control.should_save and later.stopped_at == 9
    later.on_train_end(args, state, control)
    with pytest.raises(TrainingPreempted, match="before training"):  # a restarted rank stops at once
        CheckpointOnStopRequest(trainer=None).on_train_begin(args, state, control)
    with pytest.raises(SystemExit) as stopped:  # ... and a recipe started while the request stands
        run_script(lambda: pytest.fail("must not start"))
    assert stopped.value.code == PREEMPTED_EXIT


def test_a_folder_holding_only_the_launchers_files_starts_fresh(tmp_path):
    for name in ("ablation_run.yaml", "ablation_run.json", "ablation_stdout.log"):
        (tmp_path / name).write_text("x")
    assert resume_checkpoint(str(tmp_path), resume_from_checkpoint=None, overwrite=False) is None
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        resume_checkpoint(str(tmp_path), resume_from_checkpoint=None, overwrite=False)


# -- world size and global batch ------------------------------------------------------------------------------


def _args(**overrides):
    values = dict(
        learning_rate=1e-3,
        num_train_epochs=1.0,
        max_steps=-1,
        per_device_train_batch_size=8,
        train_batch_size=8,
        gradient_accumulation_steps=2,
        world_size=1,
        n_gpu=0,
        weight_decay=0.0,
        warmup_steps=0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        label_smoothing_factor=0.0,
        seed=0,
        bf16=False,
        fp16=False,
    )
    return SimpleNamespace(**{**values, **overrides})


@pytest.mark.parametrize(
    "setting, world_size, global_batch",
    [
        ({"n_gpu": 0}, 1, 16),  # CPU
        ({"n_gpu": 1}, 1, 16),  # one GPU
        ({"n_gpu": 4, "train_batch_size": 32}, 4, 64),  # one process, 4 GPUs: Trainer's nn.DataParallel
        ({"n_gpu": 1, "world_size": 4}, 4, 64),  # 4 DDP processes
    ],
)
def test_record_counts_every_replica(setting, world_size, global_batch):
    summary = training_summary(_args(**setting), 32)
    assert summary["world_size"] == world_size and summary["global_batch_size"] == global_batch
    # the steps of an epoch follow the same batch
    assert optimizer_steps(_args(**setting), 3200) == 3200 // global_batch
