"""Runs that never lie: every row of docs/what-happens-when.md, tried as a user would. Each test asserts the
exit status, the message, and that nothing of an earlier run changed. Recipes run in this process (as
`python recipes/<recipe>.py ...` would: same argv, same exit codes), on tiny data made in the test."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import runpy
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from data_fixtures import CIFAR10_NAMES, png_bytes, write_parquet
from PIL import Image
from records import write_checkpoint, write_started

from emoreg_hf.checkpoints import resume_checkpoint
from emoreg_hf.data import load_target_dataset
from emoreg_hf.run_dir import check_interrupted_run, claim_output_dir, release_output_dirs
from emoreg_hf.run_folder import LOCK_FILE, RunDirError
from emoreg_hf.run_settings import run_settings, setting_defaults

ROOT = Path(__file__).resolve().parents[1]
FAKE_TOKEN = "hf_" + "q" * 34
TINY = ["--num_train_epochs", "1", "--max_train_samples", "64", "--max_eval_samples", "32", "--seed", "7"]
BASELINE = ["--method", "baseline", "--per_device_train_batch_size", "16", "--report_to", "none", *TINY]


def recipe(name: str, *argv: str) -> tuple[int, str, str]:
    """`python recipes/<name> argv...` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = [f"recipes/{name}", *map(str, argv)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(ROOT / "recipes" / name), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
        if not isinstance(exit_.code, int) and exit_.code is not None:
            err.write(str(exit_.code))
    finally:
        sys.argv = old_argv
        release_output_dirs()
    return code, out.getvalue(), err.getvalue()


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def image_dataset(root: Path, splits: dict[str, list], *, names=None, image=None, label_type=None) -> Path:
    """A parquet data set in the Hub layout: `{split: labels}`; `names` per split give each split its own
    ClassLabel (None: string labels)."""
    rng = np.random.default_rng(0)
    for split, labels in splits.items():
        split_names = names[split] if isinstance(names, dict) else names
        label_feature = (
            datasets.ClassLabel(names=split_names) if split_names else label_type or datasets.Value("string")
        )
        features = datasets.Features({"img": datasets.Image(), "label": label_feature})
        images = [
            {"bytes": image(i) if image else png_bytes(rng, 16), "path": None} for i in range(len(labels))
        ]
        write_parquet(
            root / "data" / f"{split}-00000-of-00001.parquet", {"img": images, "label": labels}, features
        )
    return root


# -- lifecycle ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny baseline run on the demo data."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--output_dir", folder)
    assert code == 0, err[-3000:]
    return folder


def test_the_same_command_on_a_finished_run_changes_nothing(finished):
    before = snapshot(finished)
    code, out, err = recipe("finetune.py", *BASELINE, "--output_dir", finished)
    assert code == 0 and "holds this run, finished (test_accuracy=" in out and "nothing to do" in out
    assert snapshot(finished) == before and not (finished / LOCK_FILE).exists()


@pytest.mark.parametrize(
    "change, shown",
    [
        (["--seed", "8"], "hyperparameters.seed: 7 in the finished run, 8 now"),
        (
            ["--method", "emoreg", "--affect_model_name_or_path", "x/y"],
            'method: "baseline" in the finished run',
        ),
        (["--dataset", "cifar10"], 'dataset: "demo" in the finished run, "cifar10" now'),
        (["--max_grad_norm", "0.5"], "training_args.max_grad_norm: 1.0 in the finished run, 0.5 now"),
        (["--adam_beta2", "0.99"], "training_args.adam_beta2: 0.999 in the finished run, 0.99 now"),
        (["--data_seed", "3"], "training_args.data_seed: null in the finished run, 3 now"),
        (["--save_only_model", "true"], "training_args.save_only_model: false in the finished run, true now"),
    ],
)
def test_a_finished_run_restarted_with_other_settings_is_refused(finished, change, shown):
    before = snapshot(finished)
    code, out, err = recipe("finetune.py", *BASELINE, *change, "--output_dir", finished)
    assert code == 2 and "holds a finished run with other settings; nothing was loaded" in err, err[-2000:]
    assert shown in err and snapshot(finished) == before


def test_settings_that_do_not_change_training_find_the_finished_run(finished):
    """What is logged, evaluated along the way, saved or how fast it loads is not the run: the deliberately
    ignored TrainingArguments (run_settings.IGNORED_TRAINING_ARGUMENTS) and the memory format
    (run_settings.IGNORED_RECIPE_ARGUMENTS)."""
    before = snapshot(finished)
    other = ["--logging_steps", "3", "--eval_strategy", "no", "--save_total_limit", "2"]
    other += ["--channels_last", "true"]
    code, out, err = recipe("finetune.py", *BASELINE, *other, "--dataloader_num_workers", "1", "--output_dir",
                            finished)  # fmt: skip
    assert code == 0 and "holds this run, finished" in out, err[-2000:]
    assert snapshot(finished) == before


def test_the_finished_record_lists_every_file_the_run_wrote(finished):
    record = json.loads((finished / "run_info.json").read_text())
    on_disk = sorted(p.name for p in finished.iterdir())
    assert record["outputs"] == on_disk and "run_started.json" not in on_disk
    assert {"model.safetensors", "config.json", "README.md", "run_info.json"} <= set(record["outputs"])
    assert record["training_arguments"]["max_grad_norm"] == 1.0
    assert "output_dir" not in record["training_arguments"]  # where it goes is not what it is


@pytest.mark.parametrize(
    "files",
    [
        {"README.md": "# my project", "config.json": '{"mine": true}'},
        {"pyproject.toml": "[project]", "src/app.py": "print()"},  # a project root
        {  # another Trainer's output: checkpoint-* alone is no record of a run of these recipes
            "README.md": "# mine",
            "config.json": "{}",
            "model.safetensors": "weights",
            "all_results.json": "{}",
            "checkpoint-500/trainer_state.json": "{}",
        },
    ],
)
def test_overwrite_into_a_folder_that_never_held_a_run_is_refused(tmp_path, files):
    folder = tmp_path / "mine"
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    before = snapshot(folder)
    code, out, err = recipe(
        "finetune.py", *BASELINE, "--overwrite_output_dir", "true", "--output_dir", folder
    )
    assert code == 2 and "but no record of a run, so --overwrite_output_dir true has nothing" in err, err
    assert sorted(files)[0] in err and snapshot(folder) == before and not (folder / LOCK_FILE).exists()
    assert ("Its checkpoint-* carry no run_started.json" in err) == (
        "checkpoint-500/trainer_state.json" in files
    )


def test_overwrite_removes_only_the_files_the_run_recorded(finished, tmp_path):
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    (run / "notes.txt").write_text("mine")
    (run / "predictions_mine.json").write_text(
        "{}"
    )  # named like a run's file, but the record does not list it
    code, out, err = recipe("finetune.py", *BASELINE, "--seed", "8", "--overwrite_output_dir", "true",
                            "--output_dir", run)  # fmt: skip
    assert code == 0, err[-3000:]
    assert (run / "notes.txt").read_text() == "mine" and (run / "predictions_mine.json").read_text() == "{}"
    record = json.loads((run / "run_info.json").read_text())
    assert record["seed"] == 8 and "notes.txt" not in record["outputs"]
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [*record["outputs"], "notes.txt", "predictions_mine.json"]
    )


# -- a run stopped part-way ---------------------------------------------------------------------------


STOPPED = ["--max_steps", "6", "--save_strategy", "steps", "--save_steps", "3", "--eval_strategy", "no"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A run killed after its final checkpoint (checkpoint-6 of 6 steps), while saving the finished model:
    64 rows at batch 16 are 4 steps an epoch, so the last epoch is cut at step 2 of 4."""
    from emoreg_hf import trainer

    folder = tmp_path_factory.mktemp("stopped") / "run"

    save_model = trainer.EmoRegTrainer.save_model

    def killed(self, output_dir=None, *args, **kwargs):
        if output_dir is None:  # the final model (a checkpoint is saved into its own folder)
            raise SystemExit("killed while saving the final model")
        return save_model(self, output_dir, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer.EmoRegTrainer, "save_model", killed)
        code, out, err = recipe("finetune.py", *BASELINE, *STOPPED, "--output_dir", folder)
    assert code == 1 and "killed while saving" in err, err[-3000:]
    assert (folder / "checkpoint-6").is_dir() and not (folder / "model.safetensors").exists()
    assert (folder / "run_started.json").is_file()
    return folder


@pytest.mark.parametrize(
    "change, shown",
    [
        (["--seed", "8"], "hyperparameters.seed: 7 in the interrupted run, 8 now"),
        (
            ["--learning_rate", "0.01"],
            "hyperparameters.learning_rate: 0.002 in the interrupted run, 0.01 now",
        ),
        (["--dataset", "cifar10"], 'dataset: "demo" in the interrupted run, "cifar10" now'),
        (["--max_grad_norm", "0.5"], "training_args.max_grad_norm: 1.0 in the interrupted run, 0.5 now"),
    ],
)
def test_an_interrupted_run_resumed_with_other_settings_is_refused(stopped, change, shown):
    before = snapshot(stopped)
    code, out, err = recipe("finetune.py", *BASELINE, *STOPPED, *change, "--output_dir", stopped)
    assert code == 2 and "holds an interrupted run with other settings" in err, err[-2000:]
    assert shown in err and "nothing was loaded or trained" in err and snapshot(stopped) == before


def test_a_run_stopped_after_its_last_checkpoint_finishes_without_training(stopped, tmp_path, caplog):
    from safetensors.torch import load_file

    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    last = {k: v.clone() for k, v in load_file(run / "checkpoint-6" / "model.safetensors").items()}
    with caplog.at_level("WARNING"):
        code, out, err = recipe("finetune.py", *BASELINE, *STOPPED, "--output_dir", run)
    assert code == 0, err[-3000:]
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and max((e["step"] for e in state["log_history"]), default=0) <= 6
    assert "saved at the run's last step (6 of 6): finishing it" in caplog.text
    weights = load_file(run / "model.safetensors")
    assert weights.keys() == last.keys() and all(torch.equal(weights[k], last[k]) for k in last)
    record = json.loads((run / "run_info.json").read_text())
    assert record["hyperparameters"]["max_steps"] == 6 and record["results"]["train_loss"] > 0
    assert "test_accuracy" in record["results"] and not (run / "run_started.json").exists()


def test_an_explicit_checkpoint_never_resumes_over_your_files(tmp_path):
    """`--resume_from_checkpoint` writes the model, card and results into output_dir: a folder holding your
    files and no run record is refused (a new or empty one, or one of checkpoints only, is fine)."""
    checkpoint = write_checkpoint(tmp_path / "elsewhere" / "checkpoint-4")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# mine")
    with pytest.raises(RunDirError, match="holds files \\(README.md\\) but no record of a run: resuming"):
        resume_checkpoint(str(mine), resume_from_checkpoint=str(checkpoint), overwrite=False)
    assert [p.name for p in mine.iterdir()] == ["README.md"]
    (mine / "README.md").unlink()
    write_checkpoint(mine / "checkpoint-2")  # an older version's interrupted run: resumed as you ask
    for folder in (tmp_path / "new", mine):
        assert resume_checkpoint(str(folder), resume_from_checkpoint=str(checkpoint), overwrite=False) == str(
            checkpoint
        )


def test_an_interrupted_run_of_an_older_version_resumes_only_with_its_own_settings(stopped, tmp_path, caplog):
    """No run_started.json (written before it existed): the checkpoint's own training_args.bin says what the
    run was started with."""
    run = Path(shutil.copytree(stopped, tmp_path / "run"))
    (run / "run_started.json").unlink()
    before = snapshot(run)
    code, out, err = recipe(
        "finetune.py", *BASELINE, *STOPPED, "--learning_rate", "0.01", "--output_dir", run
    )
    assert code == 2 and "holds checkpoint-6, saved with other settings and with no record of its run" in err
    assert "hyperparameters.learning_rate: 0.002 in the checkpoint, 0.01 now" in err, err[-2000:]
    assert err.count(" in the checkpoint, ") == 1 and snapshot(run) == before
    with caplog.at_level("WARNING"):
        code, out, err = recipe("finetune.py", *BASELINE, *STOPPED, "--output_dir", run)
    assert code == 0 and "has no record of its run" in caplog.text, err[-3000:]
    assert json.loads((run / "run_info.json").read_text())["hyperparameters"]["learning_rate"] == 0.002


def test_a_checkpoint_whose_settings_cannot_be_known_is_refused_and_its_pickle_never_run(tmp_path):
    from transformers import TrainingArguments

    class Planted:  # what a hostile training_args.bin could hold: unpickling it would run a command
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    write_checkpoint(tmp_path / "run" / "checkpoint-4")
    args = TrainingArguments(output_dir=str(tmp_path / "run"), report_to="none")
    with pytest.raises(RunDirError, match="cannot be known \\(it has no training_args.bin\\)"):
        resume_checkpoint(
            str(tmp_path / "run"), resume_from_checkpoint=None, overwrite=False, training_args=args
        )
    torch.save(Planted(), tmp_path / "run" / "checkpoint-4" / "training_args.bin")
    before = snapshot(tmp_path)
    with pytest.raises(
        RunDirError, match="cannot be known \\(training_args.bin holds no TrainingArguments\\)"
    ):
        resume_checkpoint(
            str(tmp_path / "run"), resume_from_checkpoint=None, overwrite=False, training_args=args
        )
    assert not (tmp_path / "ran").exists() and snapshot(tmp_path) == before


def test_an_option_newer_than_the_record_counts_as_its_default(finished, tmp_path):
    """A record (or run_started.json) written before `class_weighting` existed was made with its default."""
    run = Path(shutil.copytree(finished, tmp_path / "run"))
    record = json.loads((run / "run_info.json").read_text())
    for key in ("class_weighting", "class_balanced_sampler"):
        del record["config"][key]
    del record["hyperparameters"]["warmup_ratio"]
    del record["results"][
        "test_accuracy"
    ]  # a target without a test split: the line names the figure it shows
    (run / "run_info.json").write_text(json.dumps(record, indent=2))
    before = snapshot(run)
    code, out, err = recipe("finetune.py", *BASELINE, "--output_dir", run)
    assert code == 0 and "holds this run, finished (eval_accuracy=" in out, err[-2000:]
    code, out, err = recipe("finetune.py", *BASELINE, "--seed", "8", "--output_dir", run)
    assert code == 2 and "hyperparameters.seed: 7 in the finished run, 8 now" in err, err[-2000:]
    assert err.count(" in the finished run, ") == 1 and snapshot(run) == before  # only the real change

    from emoreg_hf.cli import RecipeArgumentParser
    from emoreg_hf.configs import FinetuneArguments

    parser = RecipeArgumentParser(FinetuneArguments, ROOT / "recipes" / "demo" / "finetune.yaml")
    script_args, training_args, _ = parser.parse([*BASELINE, "--output_dir", str(tmp_path / "started")])
    settings = run_settings(script_args, training_args)
    older = {k: v for k, v in settings.items() if k not in ("class_weighting", "class_balanced_sampler")}
    write_started(tmp_path / "started").joinpath("run_started.json").write_text(
        json.dumps({"settings": older})
    )
    check_interrupted_run(str(tmp_path / "started"), settings, setting_defaults(script_args))
    training_args.seed = 8
    with pytest.raises(RunDirError) as refused:
        check_interrupted_run(str(tmp_path / "started"), run_settings(script_args, training_args),
                              setting_defaults(script_args))  # fmt: skip
    assert str(refused.value).count(" in the interrupted run, ") == 1 and "seed: 7 in the" in str(
        refused.value
    )


def test_a_second_run_into_a_folder_in_use_refuses_at_once(finished):
    before = snapshot(finished)
    claim_output_dir(str(finished))  # a run holding the folder
    try:
        code, out, err = recipe("finetune.py", *BASELINE, "--output_dir", finished, "--seed", "9")
    finally:
        release_output_dirs()
    assert code == 2 and "is in use by another run (pid " in err
    assert snapshot(finished) == before and not (finished / LOCK_FILE).exists()


def test_an_unwritable_output_dir_fails_before_loading_data(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    code, out, err = recipe("finetune.py", *BASELINE, "--output_dir", tmp_path / "a-file" / "run")
    assert code == 2 and "is not a writable folder" in err and "nothing was loaded or trained" in err


def test_a_corrupt_latest_checkpoint_is_set_aside_and_the_newest_valid_one_resumed(tmp_path, caplog):
    write_started(tmp_path)
    write_checkpoint(tmp_path / "checkpoint-4", step=4)
    truncated = write_checkpoint(tmp_path / "checkpoint-8", step=8)
    weights = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(weights[: len(weights) - 10])
    write_checkpoint(tmp_path / "checkpoint-12", step=12)
    (tmp_path / "checkpoint-12" / "trainer_state.json").unlink()  # a save cut short: the state comes last
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(str(tmp_path), resume_from_checkpoint=None, overwrite=False) == str(
            tmp_path / "checkpoint-4"
        )
    assert "trainer_state.json is missing" in caplog.text and "model.safetensors is truncated" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-12.incomplete",
        "checkpoint-4",
        "checkpoint-8.incomplete",
        "run_started.json",
    ]


def test_a_truncated_optimizer_state_is_set_aside_like_bad_weights(tmp_path, caplog):
    write_started(tmp_path)
    for step in (4, 8):
        write_checkpoint(tmp_path / f"checkpoint-{step}", step=step)
        torch.save(
            {"state": {0: {"exp_avg": torch.ones(64, 64)}}}, tmp_path / f"checkpoint-{step}" / "optimizer.pt"
        )
        torch.save({"last_epoch": step}, tmp_path / f"checkpoint-{step}" / "scheduler.pt")
    optimizer = tmp_path / "checkpoint-8" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])  # the disk filled up
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(str(tmp_path), resume_from_checkpoint=None, overwrite=False) == str(
            tmp_path / "checkpoint-4"
        )
    assert "optimizer.pt is truncated" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-4",
        "checkpoint-8.incomplete",
        "run_started.json",
    ]


@pytest.mark.parametrize("missing", [("optimizer.pt", "scheduler.pt"), ("optimizer.pt",), ("scheduler.pt",)])
def test_a_checkpoint_without_its_optimizer_or_scheduler_state_is_set_aside(tmp_path, caplog, missing):
    """`save_only_model` (or a save cut short) leaves no optimizer or schedule to resume: Trainer would
    restart both silently and train other weights, so it is set aside like a truncated checkpoint."""
    write_started(tmp_path)
    write_checkpoint(tmp_path / "checkpoint-4", step=4)
    newest = write_checkpoint(tmp_path / "checkpoint-8", step=8)
    for name in missing:
        (newest / name).unlink()
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(str(tmp_path), resume_from_checkpoint=None, overwrite=False) == str(
            tmp_path / "checkpoint-4"
        )
    assert f"it holds no {' and no '.join(missing)}: saved with save_only_model or cut short" in caplog.text
    assert "would restart the optimizer and the learning-rate schedule" in caplog.text
    assert (tmp_path / "checkpoint-8.incomplete").is_dir() and not (tmp_path / "checkpoint-8").exists()


@pytest.mark.parametrize(
    "save", [["--save_strategy", "steps", "--save_steps", "3"], ["--save_strategy", "no"]]
)
def test_save_only_model_warns_up_front_that_its_checkpoints_cannot_resume(tmp_path, caplog, save):
    from emoreg_hf.cli import RecipeArgumentParser
    from emoreg_hf.configs import FinetuneArguments
    from emoreg_hf.training_options import prepare_training

    argv = ["--method", "baseline", "--output_dir", str(tmp_path), "--save_only_model", "true", *save]
    _, training_args, _ = RecipeArgumentParser(FinetuneArguments, ROOT / "recipes/demo/finetune.yaml").parse(
        argv
    )
    with caplog.at_level("WARNING"):
        prepare_training(training_args, set())
    warned = "an interrupted run cannot resume from them" in caplog.text
    assert warned == (save[1] != "no")  # no checkpoints, nothing to warn about


def test_checkpoints_that_keep_their_optimizer_elsewhere_still_resume(tmp_path):
    """A checkpoint at its run's last step needs no optimizer (it is finished, not trained); FSDP keeps the
    optimizer in `optimizer.bin` or `optimizer_0/`, DeepSpeed in the folder `latest` names."""
    from emoreg_hf.checkpoints import checkpoint_problem

    last, fsdp_full, fsdp_sharded, deepspeed = (
        write_checkpoint(tmp_path / name) for name in ("last", "full", "sharded", "deepspeed")
    )
    (last / "trainer_state.json").write_text(json.dumps({"global_step": 6, "max_steps": 6}))
    (fsdp_full / "optimizer.pt").rename(fsdp_full / "optimizer.bin")
    (fsdp_sharded / "optimizer.pt").unlink()
    (fsdp_sharded / "optimizer_0").mkdir()  # accelerate's sharded optimizer state
    (deepspeed / "latest").write_text("global_step4")
    (deepspeed / "global_step4").mkdir()
    (deepspeed / "global_step4" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    for folder in (last, deepspeed):
        (folder / "optimizer.pt").unlink()
        (folder / "scheduler.pt").unlink()
    assert [checkpoint_problem(f) for f in (last, fsdp_full, fsdp_sharded, deepspeed)] == [None] * 4
    (last / "trainer_state.json").write_text(json.dumps({"global_step": 5, "max_steps": 6}))
    assert "it holds no optimizer.pt and no scheduler.pt" in checkpoint_problem(last)


def test_a_checkpoint_without_a_run_record_is_never_renamed(tmp_path):
    """A folder with checkpoint-* but no run_started.json / run_info.json is not ours: a checkpoint there
    that cannot be resumed is reported, not renamed `*.incomplete`."""
    write_checkpoint(tmp_path / "checkpoint-4", step=4)
    (tmp_path / "checkpoint-500").mkdir()
    (tmp_path / "checkpoint-500" / "trainer_state.json").write_text("{}")  # no weights
    (tmp_path / "README.md").write_text("# mine")
    before = snapshot(tmp_path)
    with pytest.raises(RunDirError, match="checkpoint-500 cannot be resumed .* nothing in it is renamed"):
        resume_checkpoint(str(tmp_path), resume_from_checkpoint=None, overwrite=False)
    assert snapshot(tmp_path) == before and not list(tmp_path.glob("*.incomplete"))


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail] PytorchStreamWriter failed writing file: No space left on device"),
        # torch.save's zip writer on a full disk, writing optimizer.pt: no errno, no "No space" words
        RuntimeError(
            "[enforce fail at inline_container.cc:783] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        ),  # fmt: skip
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0"),
        "safetensors",  # what save_pretrained raises when a checkpoint's weights do not fit
    ],
)
def test_a_full_disk_while_saving_says_so(tmp_path, error):
    from safetensors import SafetensorError

    from emoreg_hf import training

    if error == "safetensors":
        error = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    class Trainer:
        args = type("Args", (), {"output_dir": str(tmp_path)})()

        def train(self, resume_from_checkpoint=None):
            raise error

    with pytest.raises(SystemExit, match="No space left on the device of .* one cut short is never resumed"):
        training.train_and_evaluate(Trainer(), {"train": []}, checkpoint=None, label_names=[])
    error = OSError(errno.ENOSPC, "No space left on device")
    assert training._disk_full(error) and not training._disk_full(OSError(errno.EACCES, "denied"))


# -- inputs ---------------------------------------------------------------------------------------------


def test_no_training_step_is_an_error_naming_the_option(tmp_path):
    code, out, err = recipe(
        "finetune.py", *BASELINE, "--num_train_epochs", "0", "--output_dir", tmp_path / "r"
    )
    assert code == 2 and "--num_train_epochs 0: no training step would run" in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


@pytest.mark.parametrize(
    "change, shown",
    [
        (["--learning_rate", "0"], "--learning_rate 0: no parameter would change"),
        (["--learning_rate", "-0.001"], "--learning_rate -0.001: a negative learning rate climbs the loss"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: must be a whole number"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0: must be a whole number"),
        ("per_device_train_batch_size: 8.5\n", "--per_device_train_batch_size: 8.5 is not a whole number"),
    ],
)
def test_numbers_that_train_nothing_are_refused_as_the_command_is_read(tmp_path, change, shown):
    run = tmp_path / "run"
    if isinstance(change, str):  # a YAML value: the config file comes first, BASELINE must not override it
        (tmp_path / "c.yaml").write_text((ROOT / "recipes" / "demo" / "finetune.yaml").read_text() + change)
        argv = [tmp_path / "c.yaml", *TINY]
    else:
        argv = [*BASELINE, *change]
    code, out, err = recipe("finetune.py", *argv, "--output_dir", run)
    assert code == 2 and shown in err and "usage:" in err, err[-2000:]
    assert not run.exists()  # refused before the folder, the data or the model was touched


def test_a_target_with_one_class_is_refused(tmp_path):
    data = image_dataset(tmp_path / "one", {"train": ["cat"] * 8, "test": ["cat"] * 4})
    before, run = snapshot(data), tmp_path / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", f"{{path: {data}}}", "--output_dir", run)
    assert code == 2 and "a classifier needs at least 2 classes; split 'train' has 1" in err, err[-2000:]
    assert not run.exists() and snapshot(data) == before


def test_missing_labels_are_an_error_naming_the_split_or_dropped_and_counted(tmp_path, caplog):
    data = image_dataset(tmp_path / "nan", {"train": [0.0, 1.0, float("nan"), 1.0, None, 0.0], "test": [0.0, 1.0]},
                         label_type=datasets.Value("float64"))  # fmt: skip
    before, run = snapshot(data), tmp_path / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", f"{{path: {data}}}", "--output_dir", run)
    assert code == 2 and "split 'train': 2 of 6 rows have no label" in err and "drop_unlabeled: true" in err
    assert not run.exists() and snapshot(data) == before
    with caplog.at_level("WARNING"):
        loaded = load_target_dataset({"path": str(data), "drop_unlabeled": True}, validation_split_size=0.25)
    assert loaded["train"].features["label"].names == ["0.0", "1.0"]  # no "nan" or "None" class
    assert loaded.load_report["train"]["unlabeled_dropped"] == 2
    assert "dropped 2 row(s) without a label (drop_unlabeled): {'train': 2}" in caplog.text
    assert loaded.load_report["train"]["bad_images"] == 0 and "unreadable" not in caplog.text  # not images
    assert len(loaded["train"]) + len(loaded["validation"]) == 4


def image_folder(root: Path, splits: dict[str, dict[str, int]]) -> Path:
    """`root/<split>/<class>/<i>.png`: {split: {class folder: images}}."""
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name, n in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                (root / split / name / f"{i}.png").write_bytes(png_bytes(rng, 8))
    return root


def test_a_class_label_declaring_many_classes_where_train_has_one_is_refused(tmp_path):
    data = image_dataset(tmp_path / "one-seen", {"train": [0] * 8, "test": [0] * 4}, names=CIFAR10_NAMES)
    before, run = snapshot(data), tmp_path / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", f"{{path: {data}}}", "--output_dir", run)
    assert code == 2, err[-2000:]
    assert "a classifier needs at least 2 classes; the training rows have 1 (['airplane']) although the " \
        "label column declares 10" in err  # fmt: skip
    assert not run.exists() and snapshot(data) == before  # nothing was written, not even the folder


def test_declared_classes_without_a_training_row_are_left_out_of_the_model(tmp_path, caplog):
    data = image_dataset(tmp_path / "three", {"train": [0, 3, 5] * 4, "test": [5, 3, 0]}, names=CIFAR10_NAMES)
    with caplog.at_level("WARNING"):
        loaded = load_target_dataset({"path": str(data)})
    assert "declares 10 classes, the training rows have 3" in caplog.text
    assert loaded["train"].features["label"].names == ["airplane", "cat", "dog"]
    test = loaded["test"]
    assert [test.features["label"].names[y] for y in test["label"]] == ["dog", "cat", "airplane"]


def test_a_test_class_that_train_lacks_is_refused_by_name_or_dropped_and_counted(tmp_path):
    # `datasets` unites the class folders of all splits: test's "Dog" becomes a class with no training image
    data = image_folder(tmp_path / "photos", {"train": {"cat": 4, "dog": 4}, "test": {"cat": 2, "Dog": 3}})
    before, run = snapshot(data), tmp_path / "run"
    spec = f"{{path: imagefolder, data_dir: {data}}}"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", spec, "--output_dir", run)
    assert code == 2, err[-2000:]
    assert "these splits have classes that no training row has" in err and "test: {'Dog': 3}" in err
    assert "drop_unseen_classes: true" in err and not run.exists() and snapshot(data) == before
    loaded = load_target_dataset({"path": "imagefolder", "data_dir": str(data), "drop_unseen_classes": True})
    assert loaded["test"].features["label"].names == ["cat", "dog"] and len(loaded["test"]) == 2
    assert loaded.load_report["test"]["unseen_class_dropped"] == 3


def test_a_label_outside_the_class_label_names_the_split_row_and_value(tmp_path):
    import pyarrow.parquet as pq

    data = image_dataset(tmp_path / "range", {"train": [0, 1, 0, 1], "test": [0, 1, 2]},
                         label_type=datasets.Value("int64"))  # fmt: skip
    for path in (data / "data").glob("*.parquet"):  # declare 2 classes, as a file written elsewhere might
        table = pq.read_table(path)
        meta = json.loads(table.schema.metadata[b"huggingface"])
        meta["info"]["features"]["label"] = {"names": ["cat", "dog"], "_type": "ClassLabel"}
        pq.write_table(table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()}), path)
    before, run = snapshot(data), tmp_path / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", f"{{path: {data}}}", "--output_dir", run)
    assert code == 2, err[-2000:]
    assert "split 'test', row 2: label 2 is outside the 2 classes its ClassLabel declares (ids 0..1: cat, " \
        "dog)" in err and "Traceback" not in err  # fmt: skip
    assert not run.exists() and snapshot(data) == before


def test_splits_with_the_same_classes_in_another_order_are_aligned_by_name(tmp_path, caplog):
    names = {"train": ["cat", "dog", "emu"], "test": ["emu", "cat", "dog"]}
    data = image_dataset(tmp_path / "order", {"train": [0, 1, 2] * 3, "test": [0, 1, 2]}, names=names)
    with caplog.at_level("WARNING"):
        loaded = load_target_dataset({"path": str(data)})
    assert "aligned by name" in caplog.text
    test = loaded["test"]
    assert [test.features["label"].names[y] for y in test["label"]] == ["emu", "cat", "dog"]


def test_splits_with_different_classes_are_an_error_listing_them(tmp_path):
    names = {"train": ["cat", "dog", "emu"], "test": ["cat", "dog", "fox"]}
    data = image_dataset(tmp_path / "other", {"train": [0, 1, 2] * 3, "test": [0, 1, 2]}, names=names)
    with pytest.raises(ValueError, match=r"only in 'test': \['fox'\]; only in 'train': \['emu'\]"):
        load_target_dataset({"path": str(data)})


def test_16_bit_images_keep_their_range(tmp_path):
    def sixteen_bit(i):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8), 32896 if i % 2 else 16448, dtype=np.uint16)).save(
            buffer, format="PNG"
        )
        return buffer.getvalue()

    data = image_dataset(tmp_path / "wide", {"train": ["a", "b"] * 4, "test": ["a", "b"]}, image=sixteen_bit)
    loaded = load_target_dataset({"path": str(data)})
    pixels = np.asarray(loaded["test"][1]["image"])  # 32896 / 257 = 128: mid-grey, not saturated white
    assert loaded["test"][1]["image"].mode == "RGB" and np.all(pixels == 128)
    assert np.all(np.asarray(loaded["test"][0]["image"]) == 64)


def test_an_image_folder_with_one_class_names_the_real_reason(tmp_path):
    (tmp_path / "photos" / "train").mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "train" / f"{i}.png")
    with pytest.raises(ValueError, match="single folder \\(one class\\).*one folder per class"):
        load_target_dataset({"path": "imagefolder", "data_dir": str(tmp_path / "photos")})


def test_a_stage_one_folder_that_is_not_an_emotion_model_is_refused(finished, tmp_path):
    code, out, err = recipe(
        "finetune.py", *TINY, "--affect_model_name_or_path", finished, "--output_dir", tmp_path / "r"
    )
    assert code == 2 and "is not an affective checkpoint: its config carries no emotion taxonomy" in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_a_transfer_fine_tune_given_as_the_affective_checkpoint_is_refused(tmp_path):
    from types import SimpleNamespace

    from tiny_models import resnet_config
    from transformers import AutoModelForImageClassification

    from emoreg_hf.models import build_finetune_model, check_emotion_head

    stage1 = tmp_path / "stage1"  # as recipes/pretrain.py saves it
    config = resnet_config(["negative", "neutral", "positive"], emotion_taxonomy="valence3")
    AutoModelForImageClassification.from_config(config).save_pretrained(stage1)
    legacy = json.loads((stage1 / "config.json").read_text())  # no head_classifies: written before it existed
    check_emotion_head(str(stage1), legacy)  # its head names the taxonomy's emotions: accepted
    args = SimpleNamespace(
        method="transfer", affect_model_name_or_path=str(stage1), affect_init="pretrained", image_size=32
    )
    model, _ = build_finetune_model(args, CIFAR10_NAMES)  # what `--method transfer` trains and saves
    model.save_pretrained(tmp_path / "transfer")
    assert model.config.head_classifies == "target" and model.config.emotion_taxonomy == "valence3"
    old_transfer = tmp_path / "old-transfer"  # the same, saved before head_classifies existed
    old_transfer.mkdir()
    saved = json.loads((tmp_path / "transfer" / "config.json").read_text())
    saved.pop("head_classifies")
    (old_transfer / "config.json").write_text(json.dumps(saved))
    for folder in (tmp_path / "transfer", old_transfer):
        run = tmp_path / f"run-{folder.name}"
        code, out, err = recipe(
            "finetune.py", *TINY, "--affect_model_name_or_path", folder, "--output_dir", run
        )
        assert code == 2, err[-2000:]
        assert (
            "is not an affective checkpoint: it carries the emotion taxonomy of its stage 1 (valence3), "
            "but its head classifies ['airplane', 'automobile', 'bird', 'cat', 'deer']..., not emotions"
            in err
        )
        assert not run.exists()


@pytest.mark.parametrize(
    "recipe_name, option, config",
    [
        ("finetune.py", "task_model_config", "{model_type: resnet, hiden_sizes: [8, 16], depth: [1, 1]}"),
        ("pretrain.py", "model_config", "{model_type: resnet, embeding_size: 8}"),
    ],
)
def test_a_typo_inside_a_model_config_is_refused_with_close_matches(tmp_path, recipe_name, option, config):
    run = tmp_path / "run"
    code, out, err = recipe(recipe_name, *TINY, f"--{option}", config, "--output_dir", run)
    assert code == 2 and f"--{option}: ResNetConfig (resnet) has no key(s)" in err, err[-2000:]
    if recipe_name == "finetune.py":
        assert "depth (did you mean depths?)" in err and "hiden_sizes (did you mean hidden_sizes?)" in err
    else:
        assert "embeding_size (did you mean embedding_size?)" in err
    assert not run.exists()


def test_a_relative_path_that_does_not_exist_is_no_such_local_folder(tmp_path):
    code, out, err = recipe(
        "finetune.py",
        *TINY,
        "--affect_model_name_or_path",
        "outputs/no-such-run",
        "--output_dir",
        tmp_path / "r",
    )
    assert code == 2 and "'outputs/no-such-run': no such local folder, and HF_HUB_OFFLINE=1" in err


def test_a_missing_relative_dataset_path_is_no_such_local_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()  # `data/cifar10` is a mistyped local path here, not the Hub id data/cifar10
    for given in ("data/cifar10", "./data/cifar10"):
        code, out, err = recipe("finetune.py", *BASELINE, "--dataset", given, "--output_dir", tmp_path / "r")
        assert code == 2, err[-2000:]
        assert f"target '{given}': no such local folder or file '{given}' (in {tmp_path})" in err
        assert "Hub" not in err and not (tmp_path / "r").exists()


def test_no_test_split_is_said_and_the_hub_token_is_never_written(tmp_path):
    data = image_dataset(tmp_path / "no-test", {"train": CIFAR10_NAMES * 4}, names=None)
    run = tmp_path / "run"
    argv = [*BASELINE, "--dataset", f"{{path: {data}}}", "--hub_token", FAKE_TOKEN, "--output_dir", run]
    code, out, err = recipe("finetune.py", *argv)
    assert code == 0, err[-3000:]
    assert "no test split, so no test_accuracy; eval_accuracy=" in out
    leaks = [p.name for p in run.rglob("*") if p.is_file() and FAKE_TOKEN.encode() in p.read_bytes()]
    assert leaks == [] and "<redacted>" in json.loads((run / "run_info.json").read_text())["command"]


def test_the_model_says_what_input_it_expected():
    from tiny_models import resnet_config, vit_config

    from emoreg_hf import EmoRegConfig, EmoRegForImageClassification

    model = EmoRegForImageClassification(
        EmoRegConfig(task_config=vit_config(), affect_config=resnet_config())
    )
    pixels = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="weights are torch.float32 but pixel_values are torch.bfloat16"):
        model(pixels.to(torch.bfloat16))
    with pytest.raises(
        ValueError, match=r"labels must be class ids in \[0, 10\) for the 10 task classes, got 0..12"
    ):
        model(pixels, labels=torch.tensor([0, 12]))
