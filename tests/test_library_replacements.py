"""What was written by hand and is now done by a library, each with the behaviour it must keep: truncated or
corrupt weights refused (`safetensors.safe_open`), the run folder's lock (`filelock`: names its owner, dies
with its process, no `fcntl` needed to import), evaluation batches never mixed (Trainer's public
`get_eval_dataloader` / `get_test_dataloader`), the whole-run loss in every checkpoint (`TrainerCallback` +
`ExportableState`), and no private Trainer attribute anywhere."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from records import write_checkpoint
from transformers import AutoModelForImageClassification, ResNetConfig, TrainingArguments

from emoreg_hf.checkpoints import _run_loss_at, checkpoint_problem
from emoreg_hf.data import Collator
from emoreg_hf.run_dir import claim_output_dir, release_output_dirs
from emoreg_hf.run_folder import LOCK_FILE, RunDirError
from emoreg_hf.trainer import RUN_LOSS, EmoRegTrainer

ROOT = Path(__file__).resolve().parents[1]


def test_truncated_or_corrupt_weights_are_refused_by_safetensors(tmp_path):
    good = write_checkpoint(tmp_path / "checkpoint-4")
    assert checkpoint_problem(good) is None
    weights = (good / "model.safetensors").read_bytes()
    for name, data in (("cut", weights[:-1]), ("header", weights[:20]), ("longer", weights + b"\0\0")):
        folder = write_checkpoint(tmp_path / f"checkpoint-{name}")
        (folder / "model.safetensors").write_bytes(data)
        problem = checkpoint_problem(folder)
        assert problem and problem.startswith("model.safetensors is truncated or corrupt"), (name, problem)


def test_the_lock_file_names_the_owner_and_is_removed_on_release(tmp_path):
    folder = tmp_path / "run"
    claim_output_dir(str(folder))
    try:
        assert (folder / LOCK_FILE).read_text().startswith("pid ")
        with pytest.raises(RunDirError, match=r"is in use by another run \(pid \d+ on "):
            claim_output_dir(str(folder))  # a second claim, even in the same process, refuses at once
    finally:
        release_output_dirs()
    assert not folder.exists()  # created by the claim and left empty: removed with the lock


@pytest.mark.slow  # spawns processes
def test_a_lock_held_by_another_process_refuses_and_dies_with_it(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from emoreg_hf.run_dir import claim_output_dir; import time; "
         f"claim_output_dir({str(folder)!r}); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=rf"in use by another run \(pid {holder.pid} on "):
            claim_output_dir(str(folder))
    finally:
        holder.send_signal(signal.SIGKILL)  # dies without releasing anything itself
        holder.wait()
    try:
        claim_output_dir(str(folder))  # the OS released the dead process's lock
    finally:
        release_output_dirs()


@pytest.mark.slow  # spawns a process
def test_run_dir_imports_without_fcntl():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["fcntl"] = None  # as on Windows
        import emoreg_hf.run_dir
        print("imported")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "imported" in result.stdout, result.stderr[-2000:]


def tiny_trainer(tmp_path, collator=None, **args) -> EmoRegTrainer:
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(
        ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=3)
    )
    rows = [
        {"pixel_values": torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8), "labels": i % 3}
        for i in range(8)
    ]
    arguments = TrainingArguments(
        output_dir=str(tmp_path), use_cpu=True, report_to=[], remove_unused_columns=False,
        per_device_train_batch_size=4, per_device_eval_batch_size=4, **args,
    )  # fmt: skip
    return EmoRegTrainer(
        model=model,
        args=arguments,
        train_dataset=rows,
        eval_dataset=rows,
        data_collator=collator or Collator(num_classes=3),
        finisher=lambda pixels: pixels.float() / 255,
    )


def test_evaluation_and_test_batches_are_never_mixed(tmp_path):
    trainer = tiny_trainer(tmp_path, Collator(num_classes=3, mixup_alpha=0.4, cutmix_alpha=1.0))
    mixed = next(iter(trainer.get_train_dataloader()))
    assert mixed["labels"].shape == (4, 3)  # soft targets: training is mixed
    for loader in (trainer.get_eval_dataloader(), trainer.get_test_dataloader(trainer.eval_dataset)):
        batch = next(iter(loader))
        assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (4,)
    assert trainer.data_collator.mixes  # the trainer's own collator is left as it was


@pytest.mark.slow  # trains
def test_every_checkpoint_carries_the_loss_summed_over_the_run(tmp_path):
    trainer = tiny_trainer(tmp_path, max_steps=4, save_steps=2, logging_steps=1, learning_rate=1e-2)
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 4  # one logged loss per step: their sum is the run's loss sum
    for step in (2, 4):
        state = json.loads((tmp_path / f"checkpoint-{step}" / "trainer_state.json").read_text())
        stash = state["stateful_callbacks"][RUN_LOSS]["attributes"]
        assert stash["global_step"] == step
        assert stash["loss_sum"] == pytest.approx(sum(logged[:step]), rel=1e-3)
        assert _run_loss_at(str(tmp_path / f"checkpoint-{step}")) == stash


def test_a_checkpoint_of_an_earlier_version_still_resumes_its_run_loss(tmp_path):
    folder = write_checkpoint(tmp_path / "checkpoint-4", step=4)
    state = json.loads((folder / "trainer_state.json").read_text())
    state["stateful_callbacks"] = {RUN_LOSS: {"loss_sum": 3.5, "global_step": 4}}  # the flat layout
    (folder / "trainer_state.json").write_text(json.dumps(state))
    assert _run_loss_at(str(folder)) == {"loss_sum": 3.5, "global_step": 4}


# The private names of Trainer & co. the library may use, each with why it has no public form.
PRIVATE_ALLOWED = {
    "_get_train_sampler": "the run's own training sampler (class balance): Trainer has no public hook for it; "
    "TRL's trainers override it too",
}


def trainer_private_names() -> set[str]:
    """Every single-underscore name of Trainer, TrainingArguments, TrainerState, TrainerControl and the
    callbacks the library subclasses: class attributes (dir) and the `self._x` attributes their code sets."""
    import inspect

    from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState
    from transformers.integrations import TensorBoardCallback

    names = set()
    for cls in (
        Trainer,
        TrainingArguments,
        TrainerState,
        TrainerControl,
        TrainerCallback,
        TensorBoardCallback,
    ):
        names |= {name for name in dir(cls) if name.startswith("_")}
        for klass in cls.__mro__:
            if klass.__module__.startswith("transformers"):
                tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
                names |= {
                    node.attr
                    for node in ast.walk(tree)
                    if isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "self"
                }
    return {name for name in names if name.startswith("_") and not name.startswith("__")}


def private_uses(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) of each attribute access (`x._name`), override (`def _name`) or string (`getattr(x,
    "_name")`) of one of `names` in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value
        else:
            continue
        if name in names:
            found.append((node.lineno, name))
    return found


def test_no_private_trainer_attribute_is_used():
    """The library reaches Trainer through its public methods only (a private one changes without notice
    between transformers releases), except the allow-list above."""
    names = trainer_private_names()
    assert {
        "_prepare_inputs",
        "_get_dataloader",
        "_total_loss_scalar",
        "_tr_loss",
        "_save_checkpoint",
    } <= names
    assert "_init_summary_writer" in names and set(PRIVATE_ALLOWED) <= names  # no stale allow-list entry
    sample = "class T(Trainer):\n    def _save(self):\n        return self._prepare_inputs(getattr(self, '_tr_loss'))\n"
    assert private_uses(sample, names) == [(2, "_save"), (3, "_prepare_inputs"), (3, "_tr_loss")]
    used = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for path in sorted((ROOT / "emoreg_hf").rglob("*.py"))
        for line, name in private_uses(path.read_text(), names)
        if name not in PRIVATE_ALLOWED
    ]
    assert not used, (
        "private Trainer names used (use a public hook or add to PRIVATE_ALLOWED, saying why):\n"
        + ("\n".join(used))
    )
