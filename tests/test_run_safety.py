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
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from data_fixtures import CIFAR10_NAMES, png_bytes, write_parquet
from PIL import Image
from records import write_checkpoint

from emoreg_hf.data import load_target_dataset
from emoreg_hf.run_dir import LOCK_FILE, claim_output_dir, release_output_dirs, resume_checkpoint

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
    ],
)
def test_a_finished_run_restarted_with_other_settings_is_refused(finished, change, shown):
    before = snapshot(finished)
    code, out, err = recipe("finetune.py", *BASELINE, *change, "--output_dir", finished)
    assert code == 2 and "holds a finished run with other settings; nothing was loaded" in err, err[-2000:]
    assert shown in err and snapshot(finished) == before


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
    ]


def test_a_full_disk_while_saving_says_so(tmp_path, monkeypatch):
    from emoreg_hf import training

    class Trainer:
        args = type("Args", (), {"output_dir": str(tmp_path)})()

        def train(self, resume_from_checkpoint=None):
            raise RuntimeError(
                "[enforce fail] PytorchStreamWriter failed writing file: No space left on device"
            )

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


def test_a_target_with_one_class_is_refused(tmp_path):
    data = image_dataset(tmp_path / "one", {"train": ["cat"] * 8, "test": ["cat"] * 4})
    with pytest.raises(ValueError, match=r"a classifier needs at least 2 classes; split 'train' has 1"):
        load_target_dataset({"path": str(data)})


def test_missing_labels_are_an_error_naming_the_split_or_dropped_and_counted(tmp_path):
    data = image_dataset(tmp_path / "nan", {"train": [0.0, 1.0, float("nan"), 1.0, None, 0.0], "test": [0.0, 1.0]},
                         label_type=datasets.Value("float64"))  # fmt: skip
    with pytest.raises(ValueError, match=r"split 'train': 2 of 6 rows have no label .*drop_unlabeled: true"):
        load_target_dataset({"path": str(data)})
    loaded = load_target_dataset({"path": str(data), "drop_unlabeled": True}, validation_split_size=0.25)
    assert loaded["train"].features["label"].names == ["0.0", "1.0"]  # no "nan" or "None" class
    assert loaded.load_report["train"]["unlabeled_dropped"] == 2
    assert len(loaded["train"]) + len(loaded["validation"]) == 4


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
