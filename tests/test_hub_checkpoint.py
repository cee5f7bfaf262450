"""`hub_strategy: checkpoint`: the last resumable checkpoint goes to the branch `last-checkpoint` of the model
repo at every save, and `--resume_from_checkpoint org/name` resumes from it on another machine. Tested at
the huggingface_hub boundary: `FakeHub` stands in for `HfApi` (uploads are copied into a folder per branch,
downloads copied back), and no socket is ever opened."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_models import resnet_config
from transformers import TrainerCallback

from emoreg_hf.callbacks import PushAtEverySave
from emoreg_hf.checkpoints import resume_checkpoint
from emoreg_hf.publish import push as push_module
from emoreg_hf.publish.push import CHECKPOINT_BRANCH, HubTarget
from emoreg_hf.run_dir import release_output_dirs

ROOT = Path(__file__).resolve().parents[1]
REPO = "org/emoreg-demo"


class FakeHub:
    """`HfApi` as the recipes use it: every upload is kept (per branch, in order), `snapshot_download` copies
    a branch's latest upload into `local_dir`; a missing branch raises what the Hub client raises."""

    token = "hf_" + "x" * 34

    def __init__(self, root: Path):
        self.root, self.uploads, self.branches = root, [], set()
        self.lock = threading.Lock()  # the checkpoint push uploads from its own thread, beside the model push

    def create_repo(self, repo_id, **kwargs):
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, *, branch, **kwargs):
        self.branches.add(branch)

    def file_exists(self, repo_id, filename, **kwargs):
        return False

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message="", **kwargs):
        with self.lock:
            return self._upload(repo_id, folder_path, revision, commit_message, **kwargs)

    def _upload(self, repo_id, folder_path, revision, commit_message, **kwargs):
        from concurrent.futures import Future

        from huggingface_hub.utils import filter_repo_objects

        copy = self.root / f"upload-{len(self.uploads)}"
        names = [p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file()]
        for name in filter_repo_objects(names, allow_patterns=kwargs.get("allow_patterns")):  # as HfApi
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(folder_path) / name, copy / name)
        self.uploads.append({"revision": revision, "folder": copy, "message": commit_message})
        url = f"https://huggingface.co/{repo_id}/commit/{len(self.uploads)}"
        if not kwargs.get("run_as_future"):
            return url
        future = Future()  # HfApi's background upload hands back a Future
        future.set_result(url)
        return future

    def on(self, revision):
        return [u for u in self.uploads if u["revision"] == revision]

    def snapshot_download(self, *, repo_id, revision, local_dir, **kwargs):
        from huggingface_hub.errors import RevisionNotFoundError

        if not self.on(revision):
            response = SimpleNamespace(headers={}, status_code=404, request=None)
            raise RevisionNotFoundError(f"404: {repo_id}@{revision} not found", response=response)
        shutil.copytree(self.on(revision)[-1]["folder"], local_dir, dirs_exist_ok=True)
        return str(local_dir)


def write_checkpoint(folder: Path, step: int) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": torch.full((2, 2), float(step))}, str(folder / "model.safetensors"))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    for name in ("config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"):
        (folder / name).write_text(name)
    return folder


def test_every_save_pushes_the_model_to_main_and_the_checkpoint_to_its_branch(tmp_path, no_network):
    hub = FakeHub(tmp_path / "hub")
    write_checkpoint(tmp_path / "run" / "checkpoint-5", 5)
    callback = PushAtEverySave(HubTarget(REPO, hub))
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), hub_strategy="checkpoint")
    state = SimpleNamespace(is_world_process_zero=True, global_step=5, max_steps=5)
    callback.on_save(args, state, None)
    callback.on_train_end(args, state, None)  # the checkpoint's push runs in the background: the end waits
    (main,) = hub.on(None)
    (branch,) = hub.on(CHECKPOINT_BRANCH)
    assert {p.name for p in main["folder"].iterdir()} == {"model.safetensors", "config.json"}
    assert {p.name for p in branch["folder"].iterdir()} == {
        "model.safetensors", "trainer_state.json", "config.json", "optimizer.pt", "scheduler.pt", "rng_state.pth",
    }  # fmt: skip  # everything to resume, never the pickled arguments
    assert CHECKPOINT_BRANCH in hub.branches and f"--resume_from_checkpoint {REPO}" in branch["message"]

    resumed = resume_checkpoint(
        str(tmp_path / "elsewhere"), resume_from_checkpoint=REPO, overwrite=False, hub_api=hub
    )
    assert resumed == str(tmp_path / "elsewhere" / "last-checkpoint")
    assert load_file(str(Path(resumed) / "model.safetensors"))["w"].eq(5).all()
    assert (Path(resumed) / "optimizer.pt").read_text() == "optimizer.pt"


class BlockingHub(FakeHub):
    """A Hub whose `last-checkpoint` uploads wait for `release` before reading the folder (as a slow network
    would), and record when each started and ended in `events`, beside the events the test adds."""

    def __init__(self, root: Path, events: list):
        super().__init__(root)
        self.events, self.started, self.release = events, threading.Event(), threading.Event()

    def upload_folder(self, *, folder_path, revision=None, **kwargs):
        if revision != CHECKPOINT_BRANCH:
            return super().upload_folder(folder_path=folder_path, revision=revision, **kwargs)
        step = json.loads((Path(folder_path) / "trainer_state.json").read_text())["global_step"]
        self.events.append(f"upload {step} started")
        self.started.set()
        assert self.release.wait(30), "the upload was never released"  # a guard against a hang, not a timing
        url = super().upload_folder(folder_path=folder_path, revision=revision, **kwargs)
        self.events.append(f"upload {step} done")
        return url


class Events(TrainerCallback):
    """Records each optimizer step; lets the blocked upload go once the step-6 checkpoint is saved."""

    def __init__(self, hub: BlockingHub):
        self.hub = hub

    def on_step_end(self, args, state, control, **kwargs):
        self.hub.events.append(f"step {state.global_step}")

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 6:
            self.hub.release.set()


class TinyImages(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"pixel_values": torch.full((3, 8, 8), i / 8), "labels": i % 7}


RESUMABLE = {
    "model.safetensors",
    "config.json",
    "trainer_state.json",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
}


def test_training_goes_on_while_a_checkpoint_uploads_and_rotation_cannot_break_it(tmp_path, no_network):
    """A real Trainer (tiny ResNet, `save_total_limit: 1`): the step-2 checkpoint's upload hangs until step 6
    is saved; steps 3 to 6 run meanwhile, rotation deletes checkpoint-2 under it, and the upload still sends
    its complete set. Step 4's push, overtaken by step 6's while waiting, is skipped; the end of training
    waits for step 6's; no snapshot is left."""
    from transformers import ResNetForImageClassification, Trainer, TrainingArguments

    hub = BlockingHub(tmp_path / "hub", events=[])
    out = tmp_path / "run"
    args = TrainingArguments(
        output_dir=str(out), max_steps=6, save_strategy="steps", save_steps=2, save_total_limit=1,
        per_device_train_batch_size=4, report_to=[], use_cpu=True, logging_strategy="no", hub_strategy="checkpoint",
    )  # fmt: skip
    trainer = Trainer(
        model=ResNetForImageClassification(resnet_config()),
        args=args,
        train_dataset=TinyImages(),
        callbacks=[PushAtEverySave(HubTarget(REPO, hub)), Events(hub)],
    )
    trainer.train()
    events = hub.events
    assert events.index("upload 2 started") < events.index("step 3") < events.index("step 6")
    assert events.index("step 6") < events.index("upload 2 done")  # steps 3-6 ran while step 2 uploaded
    assert events[-1] == "upload 6 done" and "upload 4 started" not in events  # the newest only, then done
    pushed = hub.on(CHECKPOINT_BRANCH)
    assert [json.loads((u["folder"] / "trainer_state.json").read_text())["global_step"] for u in pushed] == [
        2,
        6,
    ]
    for upload in pushed:  # checkpoint-2 was rotated away mid-upload, yet its whole set went up
        assert {p.name for p in upload["folder"].iterdir()} == RESUMABLE
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(("checkpoint-", ".hub"))) == [
        "checkpoint-6"
    ]


def test_the_end_of_a_run_reports_a_checkpoint_push_that_failed(tmp_path, no_network, caplog):
    """No network at the last upload: the end of training says so (no traceback), the run on disk stays;
    stale snapshots of an earlier, killed run are gone."""

    class Unreachable(FakeHub):
        def upload_folder(self, *, revision=None, **kwargs):
            if revision == CHECKPOINT_BRANCH and "step 4" in kwargs["commit_message"]:
                raise ConnectionError("no route to host")
            return super().upload_folder(revision=revision, **kwargs)

    hub = Unreachable(tmp_path / "hub")
    run = tmp_path / "run"
    callback = PushAtEverySave(HubTarget(REPO, hub))
    args = SimpleNamespace(output_dir=str(run), hub_strategy="checkpoint")
    (run / ".hub-staging" / "step-1").mkdir(parents=True)  # left by a run killed mid-upload: removed
    for step in (2, 4):
        write_checkpoint(run / f"checkpoint-{step}", step)
        callback.on_save(args, SimpleNamespace(is_world_process_zero=True, global_step=step), None)
        callback.checkpoints.wait()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    with caplog.at_level("WARNING"):
        callback.on_train_end(args, SimpleNamespace(global_step=4, max_steps=4), None)
    assert f"checkpoint-4 was not pushed to {REPO}@last-checkpoint: Could not reach the Hub" in caplog.text
    assert "nothing was pushed" in caplog.text and "the branch holds checkpoint-2" in caplog.text
    assert "Traceback" not in caplog.text and len(hub.on(CHECKPOINT_BRANCH)) == 1
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before and not (run / ".hub-staging").exists()


def test_a_stopped_run_waits_a_bounded_time_for_its_checkpoint_push(
    tmp_path, no_network, monkeypatch, caplog
):
    """A stop request (the run ends short of max_steps): the push in flight is waited for at most
    `STOP_PUSH_WAIT_S` (0 here), then the run ends saying the branch keeps the checkpoint before."""
    from emoreg_hf import callbacks

    monkeypatch.setattr(callbacks, "STOP_PUSH_WAIT_S", 0)
    hub = BlockingHub(tmp_path / "hub", events=[])
    write_checkpoint(tmp_path / "run" / "checkpoint-3", 3)
    callback = PushAtEverySave(HubTarget(REPO, hub))
    args = SimpleNamespace(output_dir=str(tmp_path / "run"), hub_strategy="checkpoint")
    callback.on_save(args, SimpleNamespace(is_world_process_zero=True, global_step=3), None)
    assert hub.started.wait(30)
    with caplog.at_level("WARNING"):
        callback.on_train_end(args, SimpleNamespace(global_step=3, max_steps=10), None)
    assert "did not finish within 0 s; the branch keeps the checkpoint pushed before" in caplog.text
    assert hub.events == ["upload 3 started"]  # it returned while the upload was still in flight
    hub.release.set()
    assert callback.checkpoints.wait(30) and hub.events[-1] == "upload 3 done"


def test_resume_from_a_hub_id_without_a_checkpoint_says_why(tmp_path, no_network):
    with pytest.raises(ValueError, match="has no branch 'last-checkpoint'.*--hub_strategy checkpoint"):
        resume_checkpoint(
            str(tmp_path / "run"), resume_from_checkpoint=REPO, overwrite=False, hub_api=FakeHub(tmp_path)
        )
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set"):  # the real client, offline (conftest)
        resume_checkpoint(str(tmp_path / "run2"), resume_from_checkpoint=REPO, overwrite=False)


def run_pretrain(*argv: str) -> None:
    old = sys.argv
    sys.argv = ["recipes/pretrain.py", *argv]
    try:
        runpy.run_path(str(ROOT / "recipes" / "pretrain.py"), run_name="__main__")
    finally:
        sys.argv = old
        release_output_dirs()


@pytest.mark.slow
def test_a_preempted_run_resumes_from_the_hub_on_another_machine(tmp_path, monkeypatch, no_network):
    """The demo pretrain pushes its checkpoints while it trains; the machine is lost after the step-2 push;
    the same command with `--resume_from_checkpoint org/name` elsewhere finishes the run from step 2 and ends
    with the weights of the run that was never interrupted."""
    from emoreg_hf.trainer import EmoRegTrainer

    hub = FakeHub(tmp_path / "hub")
    monkeypatch.setattr(push_module, "_hf_api", lambda token=None: hub)
    resumed_from = []
    train = EmoRegTrainer.train

    def spy(self, resume_from_checkpoint=None, **kwargs):
        resumed_from.append(resume_from_checkpoint)
        return train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    monkeypatch.setattr(EmoRegTrainer, "train", spy)
    common = (
        "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--eval_strategy", "no",
        "--max_train_samples", "128", "--max_eval_samples", "32", "--augmentation", "none", "--seed", "3",
        "--logging_steps", "1",
        "--push_to_hub", "true", "--hub_model_id", REPO, "--hub_strategy", "checkpoint",
    )  # fmt: skip
    run_pretrain("--output_dir", str(tmp_path / "uninterrupted"), *common)
    pushed = [json.loads((u["folder"] / "trainer_state.json").read_text()) for u in hub.on(CHECKPOINT_BRANCH)]
    assert [state["global_step"] for state in pushed] == [2, 4]
    hub.uploads = [  # the machine is lost right after the step-2 pushes
        u
        for u in hub.uploads
        if u["message"].startswith(("Training in progress, step 2", "Checkpoint at step 2 "))
    ]
    assert [u["revision"] for u in hub.uploads] == [None, CHECKPOINT_BRANCH]

    run_pretrain("--output_dir", str(tmp_path / "resumed"), *common, "--resume_from_checkpoint", REPO)
    assert resumed_from == [None, str(tmp_path / "resumed" / "last-checkpoint")]
    losses = [
        [
            (e["step"], e["loss"])
            for e in json.loads((tmp_path / run / "trainer_state.json").read_text())["log_history"]
            if "loss" in e
        ]
        for run in ("uninterrupted", "resumed")
    ]
    assert losses[0] == losses[1] and [step for step, _ in losses[1]] == [1, 2, 3, 4]
    first = load_file(str(tmp_path / "uninterrupted" / "model.safetensors"))
    second = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
