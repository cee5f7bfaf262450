"""Stage-1 controls that control (issue 23): a learnable non-emotion stage 1 (k-means clusters of the same
faces, checked against the emotions), a positive control trained on the target task's own training split,
and the majority-class baselines that flag a degenerate stage 1."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
from data_fixtures import *  # noqa: F403
from PIL import Image

from emoreg_hf.configs import PretrainArguments
from emoreg_hf.data import load_stage1_data, load_target_dataset
from emoreg_hf.data.pseudo_labels import association, kmeans_relabel
from emoreg_hf.training import cap

ROOT = Path(__file__).resolve().parents[1]


def test_association_by_hand():
    same = association(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    assert same["cramers_v"] == pytest.approx(1.0) and same["information_share"] == pytest.approx(1.0)
    assert same["mutual_information"] == pytest.approx(np.log(2))
    crossed = association(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))  # every pair once: independent
    assert crossed["cramers_v"] == pytest.approx(0.0) and crossed["mutual_information"] == pytest.approx(0.0)


def _faces(n: int, seed: int) -> datasets.Dataset:
    """Two kinds of image (light top or light bottom), with labels that ignore the kind."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        pixels = rng.integers(0, 60, (48, 48), dtype=np.uint8)
        pixels[:24] += 150 if i % 2 else 0
        pixels[24:] += 0 if i % 2 else 150
        images.append(Image.fromarray(pixels, "L"))
        labels.append(int(rng.integers(0, 2)))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_kmeans_labels_follow_the_pixels_not_the_emotions():
    splits = {"train": _faces(60, 0), "test": _faces(20, 1)}
    relabelled, report = kmeans_relabel(splits, clusters=2, seed=0)
    for name, n in (("train", 60), ("test", 20)):
        clusters = np.array(relabelled[name]["label"])
        kinds = np.arange(n) % 2
        assert abs(association(clusters, kinds)["cramers_v"] - 1.0) < 1e-9  # each kind is one cluster
        assert report[name]["cramers_v"] < 0.5 and sum(report[name]["sizes"]) == n
    assert relabelled["train"].features["label"].names == ["cluster 1", "cluster 2"]


def _args(**kw):
    defaults = {
        "target_dataset": None,
        "affective_sources": None,
        "taxonomy": "ekman7",
        "shuffle_labels": False,
        "kmeans_labels": False,
        "validation_split_size": 0.2,
        "on_bad_image": "error",
        "max_train_samples": None,
        "max_eval_samples": None,
    }
    return SimpleNamespace(**{**defaults, **kw})


def test_positive_control_trains_on_the_target_s_own_training_split(cifar10_dir):
    """Stage 1 of the positive control reads the target exactly as stage 2 does: the same validation carve,
    so the images stage 2 validates and tests on were never seen by its affective pathway."""
    stage1 = load_stage1_data(_args(target_dataset={"path": str(cifar10_dir)}), 3, cap)
    stage2 = load_target_dataset({"path": str(cifar10_dir)}, validation_split_size=0.2, seed=3)
    for split in ("train", "validation", "test"):
        assert stage1["splits"][split]["image"] == stage2[split]["image"], split
    assert stage1["names"] == stage2["train"].features["label"].names
    assert "positive control" in stage1["taxonomy"]["name"]
    capped = load_stage1_data(_args(target_dataset={"path": str(cifar10_dir)}, max_train_samples=20), 3, cap)
    assert len(capped["splits"]["train"]) == 20
    train_images = {
        img["bytes"] for img in stage2["train"].cast_column("image", datasets.Image(decode=False))["image"]
    }
    assert {
        img["bytes"]
        for img in capped["splits"]["train"].cast_column("image", datasets.Image(decode=False))["image"]
    } <= train_images


def test_stage1_arguments_refuse_mixed_controls():
    base = {"model_config": {"model_type": "resnet"}}
    with pytest.raises(ValueError, match="not both"):
        PretrainArguments(affective_sources=[{"path": "x"}], target_dataset="cifar10", **base)
    with pytest.raises(ValueError, match="choose one"):
        PretrainArguments(affective_sources=[{"path": "x"}], kmeans_labels=True, shuffle_labels=True, **base)
    assert PretrainArguments(target_dataset="cifar10", **base).affective_sources is None


@pytest.mark.slow
def test_kmeans_stage1_reports_its_learnability_and_independence(tmp_path, fer_dir):
    out = tmp_path / "kmeans"
    command = [
        sys.executable, "recipes/pretrain.py",
        "--affective_sources", f"[{{path: imagefolder, data_dir: {fer_dir}, source: fer}}]",
        "--kmeans_labels", "true",
        "--model_config", "{model_type: small_resnet, embedding_size: 4, hidden_sizes: [4, 8], depths: [1, 1], layer_type: basic, stem_stride: 2}",
        "--image_size", "48", "--augmentation", "padcrop", "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16", "--eval_strategy", "no", "--save_strategy", "no",
        "--report_to", "none", "--dataloader_num_workers", "0", "--output_dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    assert 0 <= results["kmeans_emotion_cramers_v"] <= 1 and results["kmeans_emotion_information_share"] >= 0
    assert 0 < results["test_majority_accuracy"] <= 1 and 0 < results["test_modal_prediction_share"] <= 1
    config = json.loads((out / "config.json").read_text())
    assert config["kmeans_labels"] is True and config["input_color_mode"] == "grayscale"
    assert (
        config["id2label"]["0"] == "cluster 1" and "non-emotion control" in config["emotion_taxonomy"]["name"]
    )
