"""`hub_strategy: checkpoint`: the last resumable checkpoint goes to the branch `last-checkpoint` of the model
repo at every save, and `--resume_from_checkpoint org/name` resumes from it on another machine. Tested at
the huggingface_hub boundary: `FakeHub` stands in for `HfApi` (uploads are copied into a folder per branch,
downloads copied back), and no socket is ever opened."""

from __future__ import annotations

import json
import runpy
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

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

    def create_repo(self, repo_id, **kwargs):
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, *, branch, **kwargs):
        self.branches.add(branch)

    def file_exists(self, repo_id, filename, **kwargs):
        return False

    def upload_folder(self, *, repo_id, folder_path, revision=None, commit_message="", **kwargs):
        from concurrent.futures import Future

        from huggingface_hub.utils import filter_repo_objects

        copy = self.root / f"upload-{len(list(self.root.glob('upload-*'))) if self.root.exists() else 0}"
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
    callback.on_save(args, SimpleNamespace(is_world_process_zero=True, global_step=5), None)
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
    hub.uploads = hub.uploads[:2]  # the machine is lost right after the step-2 pushes
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
