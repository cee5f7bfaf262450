"""Many processes, as a user launches them: torchrun with 2 gloo ranks on this machine. One process owns the
run folder (resume over a bad checkpoint, overwrite of a finished run)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from crash_at_step import CRASH_AT_STEP

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
# Every rank vetting checkpoints for itself raced: the slower one found a checkpoint the other had just
# renamed (FileNotFoundError). Slowing the check makes that race certain if anything but rank 0 checks.
SLOW_CHECKPOINT_CHECK = """
import emoreg_hf.checkpoints as run_dir
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


def launcher_env(config: str, num_processes: int = 2) -> dict[str, str]:
    """The environment `accelerate launch --config_file CONFIG` gives each process (accelerate's own code)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(ROOT / config), "--num_processes", str(num_processes), "x.py"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    if not args.use_deepspeed:
        return prepare_multi_gpu_env(args)
    args.deepspeed_fields_from_accelerate_config = ",".join(
        defaults.deepspeed_config
    )  # as launch_command does
    return prepare_deepspeed_cmd_env(args)[1]


@pytest.mark.parametrize(
    "config, version",
    [("recipes/accelerate_configs/fsdp.yaml", "1"), ("recipes/accelerate_configs/fsdp2.yaml", "2")],
)
def test_fsdp_configs_translate_to_transformer_based_wrapping(config, version):
    env = launcher_env(config)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == version
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"  # a pathway is never one unit of its own
    if version == "2":
        assert env["FSDP_STATE_DICT_TYPE"] == "SHARDED_STATE_DICT"


@pytest.mark.slow
def test_fsdp2_shards_emoreg_trains_saves_and_reloads_on_two_gloo_ranks(tmp_path):
    """accelerate refuses FSDP without a GPU-like device, so this drives its FSDP2 preparation by hand
    (tests/fsdp2_emoreg.py) with the plugin that recipes/accelerate_configs/fsdp2.yaml gives each rank."""
    env = launcher_env("recipes/accelerate_configs/fsdp2.yaml")
    # The one setting that needs a GPU-like device: accelerate builds its init function on the current
    # device; FSDP2 does not use it unless fsdp_cpu_ram_efficient_loading is on (it is off in fsdp2.yaml).
    env["FSDP_SYNC_MODULE_STATES"] = "false"
    fsdp = {k: v for k, v in env.items() if k.startswith("FSDP_") or k == "ACCELERATE_USE_FSDP"}
    report = tmp_path / "report.json"
    launcher = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        free_port(),
    ]
    result = subprocess.run(
        [*launcher, "tests/fsdp2_emoreg.py", str(report), str(tmp_path)],
        cwd=ROOT, env={**os.environ, **fsdp, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    run = json.loads(report.read_text())
    # One unit per layer of each pathway, and the root; never a whole pathway (EmoReg reads its features).
    assert (
        "task_model.vit.layers.0" in run["units"] and "affect_model.resnet.embedder.embedder" in run["units"]
    )
    assert not {"task_model", "affect_model"} & set(run["units"])
    assert (
        run["frozen_params_with_grads"] == []
        and run["trainable_params_with_grads"] == run["trainable_params"]
    )
    assert 0.4 < run["local_share"] < 0.6  # each rank holds about half of every parameter
    assert run["checkpoint_files"] == ["pytorch_model_fsdp_0", "trainer_state.json"]  # no safetensors
    assert run["problems"]["sharded"] is None  # a complete sharded checkpoint is resumed, not set aside
    assert "no .metadata" in run["problems"]["cut_short"]
    assert run["resumed_max_diff"] == 0.0
    # The model's own code beside its weights (not the files of the class fully_shard gave the model).
    assert {"model.safetensors", "config.json", "modeling_emoreg.py", "backbones.py"} <= set(
        run["final_files"]
    )
    assert not [name for name in run["final_files"] if name.startswith("_fsdp")]
    assert run["reloaded_max_diff"] < 1e-5 and run["reloaded_affect_frozen"]


@pytest.mark.parametrize(
    "config, stage",
    [("recipes/accelerate_configs/zero2.yaml", "2"), ("recipes/accelerate_configs/zero3.yaml", "3")],
)
def test_deepspeed_configs_translate(config, stage):
    env = launcher_env(config)
    assert env["ACCELERATE_USE_DEEPSPEED"] == "true" and env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == stage
    if stage == "3":  # the weights are gathered when saved, so every folder holds model.safetensors
        assert env["ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL"] == "true"


def test_deepspeed_without_the_package_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    from emoreg_hf.cli import RecipeArgumentParser
    from emoreg_hf.config_reading import ConfigError
    from emoreg_hf.configs import FinetuneArguments

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a)
    )
    for argv, env in ((["--deepspeed", "ds.json"], {}), ([], {"ACCELERATE_USE_DEEPSPEED": "true"})):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(
            ConfigError, match=r"needs the deepspeed package, which is not installed: pip install"
        ):
            RecipeArgumentParser(FinetuneArguments).parse([*argv, "--output_dir", str(tmp_path)])


# Each rank writes the optimizer steps it begins (1-based) to PATH.<rank>: where a resumed run starts.
RECORD_STEPS = """
from transformers import TrainerCallback
import emoreg_hf.trainer as trainer

class Steps(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        with open(f"{path}.{{args.process_index}}", "a") as out:
            out.write(f"{{state.global_step + 1}}\\n")

init = trainer.EmoRegTrainer.__init__
def patched(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.add_callback(Steps())
trainer.EmoRegTrainer.__init__ = patched
"""


def deepspeed_launch(config: str, *script) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file CONFIG` on 2 CPU ranks: DeepSpeed's CPU accelerator
    (DS_ACCELERATOR=cpu), its collectives over torch.distributed (gloo plus its shared-memory op, compiled on
    first use and cached in ~/.cache/torch_extensions), fp32 (the configs' bf16 is for GPUs)."""
    env = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config,
                  "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", free_port()]  # fmt: skip
    return subprocess.run(
        [*accelerate, *map(str, script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_deepspeed_zero2_trains_on_two_cpu_ranks_and_resumes_from_its_checkpoint(tmp_path):
    """The docs' ZeRO-2 row (docs/scale.md, section 3), re-run: recipes/accelerate_configs/zero2.yaml, the
    baseline on 2 CPU ranks, optimizer state partitioned; a run stopped after its step-2 checkpoint, then the
    same command resumes it there and finishes."""
    pytest.importorskip("deepspeed", reason="pip install -e '.[deepspeed]' (the dev extra includes it)")
    config, out, steps = "recipes/accelerate_configs/zero2.yaml", tmp_path / "run", tmp_path / "steps"
    recipe = ["recipes/finetune.py", *TINY, "--max_steps", "4", "--output_dir", out]
    crash = patched_recipe(tmp_path, "crash", CRASH_AT_STEP.format(step=2))
    result = deepspeed_launch(config, crash, *recipe)
    assert result.returncode != 0 and "simulated crash at step 2" in result.stderr, result.stderr[-4000:]
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "latest").read_text().strip() == "global_step2"
    assert sorted(p.name for p in (checkpoint / "global_step2").iterdir()) == [
        "mp_rank_00_model_states.pt",  # the weights, whole: ZeRO-2 shards only optimizer state and gradients
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]

    record_steps = patched_recipe(tmp_path, "steps", RECORD_STEPS.format(path=steps))
    result = deepspeed_launch(config, record_steps, *recipe)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Resuming from {checkpoint}" in result.stderr
    for rank in (0, 1):  # both ranks went on at step 3: nothing before the checkpoint was trained again
        assert Path(f"{steps}.{rank}").read_text().split() == ["3", "4"]
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert state["global_step"] == 4 and len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert (out / "checkpoint-4" / "global_step4" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").is_file()
    record = json.loads((out / "run_info.json").read_text())
    assert record["resumed_from_step"] == 2 and record["hyperparameters"]["world_size"] == 2
    assert math.isfinite(record["results"]["train_loss"]) and math.isfinite(record["results"]["eval_loss"])


@pytest.mark.slow
def test_deepspeed_zero3_trains_emoreg_on_two_cpu_ranks_and_resumes(tmp_path, demo_runs):
    """DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu, its collectives over torch.distributed), ZeRO-3 from
    recipes/accelerate_configs/zero3.yaml: weights, gradients and optimizer state sharded over 2 ranks."""
    pytest.importorskip("deepspeed", reason="pip install -e '.[deepspeed]' (the dev extra includes it)")
    out, config = tmp_path / "run", "recipes/accelerate_configs/zero3.yaml"
    recipe = [
        "recipes/finetune.py", "--affect_model_name_or_path", str(demo_runs.pretrain), *TINY[2:],
        "--max_steps", "4", "--output_dir", str(out),
    ]  # fmt: skip
    crash = patched_recipe(tmp_path, "crash", CRASH_AT_STEP.format(step=2))
    result = deepspeed_launch(config, crash, *recipe)
    assert result.returncode != 0 and "simulated crash at step 2" in result.stderr
    shards = sorted(p.name for p in (out / "checkpoint-2" / "global_step2").iterdir())
    assert [name for name in shards if "model_states" in name] == [
        "zero_pp_rank_0_mp_rank_00_model_states.pt",
        "zero_pp_rank_1_mp_rank_00_model_states.pt",
    ]  # fmt: skip  (each rank its shard of the weights: ZeRO-3)

    result = deepspeed_launch(config, *recipe)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"Resuming from {out / 'checkpoint-2'}" in result.stderr
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 4
    record = json.loads((out / "run_info.json").read_text())
    assert record["hyperparameters"]["world_size"] == 2 and record["method"] == "emoreg"

    from transformers import AutoModelForImageClassification

    import emoreg_hf  # noqa: F401 - registers the emoreg model type (else the load asks for remote code)

    model = AutoModelForImageClassification.from_pretrained(out)  # the gathered 16-bit save, whole
    assert model.config.model_type == "emoreg" and not any(
        p.requires_grad for p in model.affect_model.parameters()
    )


def test_an_fsdp_config_on_the_cpu_is_refused_not_run_as_ddp(tmp_path, monkeypatch):
    from emoreg_hf.cli import RecipeArgumentParser
    from emoreg_hf.configs import FinetuneArguments
    from emoreg_hf.training_options import prepare_training

    demo = ROOT / "recipes" / "demo" / "finetune.yaml"
    argv = ["--method", "baseline", "--output_dir", str(tmp_path)]
    _, training_args, _ = RecipeArgumentParser(FinetuneArguments, demo).parse(argv)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what accelerate launch --config_file fsdp*.yaml sets
    with pytest.raises(ValueError, match="FSDP accelerate config on the CPU.*plain data parallelism"):
        prepare_training(training_args, set())


def test_every_path_that_ran_here_names_a_test_that_exists():
    """docs/scale.md section 3: each row that ran names the tests that run it again; a renamed or removed
    test would leave the row claiming a check that no longer happens."""
    import re

    text = (ROOT / "docs" / "scale.md").read_text()
    section = text[text.index("## 3. Many processes") : text.index("## 4.")]
    table = section[section.index("| engine / path |") :].split("\n\n")[
        0
    ]  # the table of paths, not later ones
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 8
    for row in rows:
        checked_by = row.split(" | ")[2]
        names = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", checked_by)
        assert names, f"no test named in the row {row[:60]!r}"
        for path, name in names:
            assert (ROOT / path).is_file(), path
            if name:
                assert f"\ndef {name}(" in (ROOT / path).read_text(), f"{path}::{name} is gone"
