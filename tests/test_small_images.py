"""Small images and a fair affective pathway: the small-image ResNet stem, the pathway given what stage 1
saw (grayscale faces -> luminance), the normalised fusion, and the reliance measurement (issue 23)."""

import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_models import CIFAR10, EKMAN7, image_processor, labelled
from transformers import AutoConfig, AutoModelForImageClassification

from emoreg_hf import EmoRegConfig, EmoRegForImageClassification, SmallResNetConfig
from emoreg_hf.configs import FinetuneArguments
from emoreg_hf.data import LoaderTransform, infer_color_mode
from emoreg_hf.evaluation import affect_reliance, keep_logits_for_metrics

HALF = ([0.5] * 3, [0.5] * 3)


def small_resnet(names=EKMAN7, **kw) -> SmallResNetConfig:
    return SmallResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **labelled(names), **kw
    )


def emoreg(task=None, affect=None, **options) -> EmoRegForImageClassification:
    torch.manual_seed(0)
    config = EmoRegConfig(
        task_config=task or small_resnet(CIFAR10),
        affect_config=affect or small_resnet(),
        task_image_size=[32, 32],
        task_image_mean=HALF[0],
        task_image_std=HALF[1],
        **options,
    )
    return EmoRegForImageClassification(config)


PIXELS = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def test_small_resnet_stem_keeps_the_resolution_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(small_resnet()).eval()
    assert type(model).__name__ == "SmallResNetForImageClassification"
    faces = torch.randn(2, 3, 48, 48)
    assert model.resnet.embedder(faces).shape == (2, 8, 48, 48)  # 3x3 stride 1, no max-pool
    hf_stem = AutoModelForImageClassification.from_config(
        small_resnet(stem_kernel_size=7, stem_stride=2, stem_pool=True)
    )
    assert hf_stem.resnet.embedder(faces).shape == (2, 8, 12, 12)  # what HF's ResNet does to a face
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(faces).logits, reloaded(faces).logits)
    assert {"configuration_small_resnet.py", "modeling_small_resnet.py"} <= {
        p.name for p in tmp_path.iterdir()
    }
    with pytest.raises(ValueError, match="stem_stride must be a positive int, got 0"):
        small_resnet(stem_stride=0)


@pytest.mark.parametrize("influence", ["concat", "film"])
def test_small_resnet_serves_as_either_pathway_and_emoreg_round_trips(tmp_path, influence):
    model = emoreg(influence=influence, affect_norm="layernorm").eval()
    out = model(PIXELS, labels=torch.tensor([0, 1, 2, 3]))
    assert (
        out.logits.shape == (4, 10)
        and out.task_features.shape == (4, 16)
        and out.affect_features.shape == (4, 16)
    )
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(model(PIXELS).logits, reloaded(PIXELS).logits)
    assert reloaded.config.affect_norm == "layernorm" and reloaded.affect_norm is not None


@pytest.mark.slow
def test_small_resnet_checkpoints_load_as_remote_code_without_the_package(tmp_path):
    """A stage-1 checkpoint of the family, and an EmoReg checkpoint whose pathways are of it, load in a
    process that never imported emoreg_hf (the family's code travels with both)."""
    torch.manual_seed(0)
    stage1 = AutoModelForImageClassification.from_config(small_resnet()).eval()
    stage1.save_pretrained(tmp_path / "stage1")
    model = emoreg(affect_norm="layernorm", affect_image_color_mode="grayscale").eval()
    model.save_pretrained(tmp_path / "emoreg")
    with torch.no_grad():
        torch.save(
            {"stage1": stage1(PIXELS).logits, "emoreg": model(PIXELS).logits}, tmp_path / "expected.pt"
        )
    torch.save(PIXELS, tmp_path / "pixels.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForImageClassification
        pixels, expected = torch.load({str(tmp_path / "pixels.pt")!r}), torch.load({str(tmp_path / "expected.pt")!r})
        for name in ("stage1", "emoreg"):
            model = AutoModelForImageClassification.from_pretrained({str(tmp_path)!r} + "/" + name, trust_remote_code=True)
            with torch.no_grad():
                assert torch.equal(model.eval()(pixels).logits, expected[name]), name
        assert "emoreg_hf" not in sys.modules
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout


def test_grayscale_pathway_gets_the_luminance_of_the_task_image():
    model = emoreg(
        affect_image_color_mode="grayscale",
        affect_image_size=[48, 48],
        affect_image_mean=HALF[0],
        affect_image_std=HALF[1],
    ).eval()
    assert model.config.converts_affect_input
    rgb = torch.rand(2, 3, 32, 32)
    luma = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None].expand(-1, 3, -1, -1)
    face = F.interpolate(luma, size=(48, 48), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = model.affect_model(pixel_values=(face - 0.5) / 0.5).logits.softmax(-1)
        got = model((rgb - 0.5) / 0.5).emotion_probs
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="affect_image_color_mode='sepia'.*rgb, grayscale"):
        emoreg(affect_image_color_mode="sepia")


def test_from_backbones_feeds_the_pathway_what_stage_1_recorded(tmp_path):
    torch.manual_seed(0)
    stage1 = AutoModelForImageClassification.from_config(small_resnet())
    stage1.config.input_color_mode, stage1.config.input_size = "grayscale", [48, 48]
    stage1.save_pretrained(tmp_path / "affect")
    image_processor(48, *HALF).save_pretrained(tmp_path / "affect")
    labels = {"num_labels": 10, **labelled(CIFAR10)}
    model = EmoRegForImageClassification.from_backbones(
        None, str(tmp_path / "affect"), task_config=small_resnet(CIFAR10), task_image_size=[32, 32], **labels
    )
    assert model.config.affect_image_color_mode == "grayscale" and model.config.affect_image_size == [48, 48]
    override = EmoRegForImageClassification.from_backbones(
        None,
        str(tmp_path / "affect"),
        task_config=small_resnet(CIFAR10),
        affect_image_color_mode="rgb",
        **labels,
    )
    assert override.config.affect_image_color_mode == "rgb"


def test_layernorm_fusion_is_blind_to_the_scale_of_h_a_and_respond_reproduces_forward():
    model = emoreg(affect_norm="layernorm").eval()
    with torch.no_grad():
        out = model(PIXELS)
        again = model.respond(out.task_features, out.affect_features, out.emotion_probs)
        scaled = model.respond(out.task_features, 100 * out.affect_features, out.emotion_probs)
    torch.testing.assert_close(again.logits, out.logits)
    torch.testing.assert_close(scaled.logits, out.logits, atol=1e-4, rtol=1e-4)
    plain = emoreg().eval()
    with torch.no_grad():
        out = plain(PIXELS)
        assert not torch.allclose(
            plain.respond(out.task_features, 100 * out.affect_features, out.emotion_probs).logits, out.logits
        )
    with pytest.raises(ValueError, match="--affect_norm 'batchnorm' is not valid"):
        FinetuneArguments(
            method="baseline", task_model_config={"model_type": "resnet"}, affect_norm="batchnorm"
        )


def _reliance_model(reads: str, **options) -> EmoRegForImageClassification:
    """ρ = 1 and an emotional head that reads only e(x) (emotion k -> class k), only h_A or only h_T
    (their first 7 features -> class k); the non-emotional response reads h_T's next 7 features."""
    options = options or {"regulation": "fixed", "rho_init": 1.0}
    model = emoreg(task=small_resnet(EKMAN7), **options).eval()
    with torch.no_grad():
        model.emotional_head.weight.zero_()
        model.emotional_head.bias.zero_()
        d = model.emotional_head.in_features
        start = {"emotion": d - 7, "affect": (d - 7) // 2, "task": 0}[reads]
        model.emotional_head.weight[:, start : start + 7] = 10 * torch.eye(7)
        classifier = model.task_model.classifier[-1]
        classifier.weight.zero_()
        classifier.bias.zero_()
        classifier.weight[:, 7:14] = torch.eye(7)
    return model


def test_reliance_is_the_accuracy_lost_without_each_image_s_own_feelings():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 700)
    feelings = np.eye(7)[labels] * 0.9 + 0.1 / 7  # e(x) names the right class
    h_task = rng.normal(size=(700, 16))
    h_task[:, :7] += 5 * np.eye(7)[labels]  # so does h_T
    h_affect = rng.normal(size=(700, 16))
    h_affect[:, :7] += 5 * np.eye(7)[labels]  # and h_A
    reads_emotion = affect_reliance(_reliance_model("emotion"), h_task, h_affect, feelings, labels)
    assert 0.75 < reads_emotion["reliance_permuted"] <= 1 and 0.75 < reads_emotion["reliance_mean"] <= 1
    assert reads_emotion["reliance_permuted_emotion"] == reads_emotion["reliance_permuted"]
    assert reads_emotion["reliance_mean_emotion"] == reads_emotion["reliance_mean"]
    assert reads_emotion["reliance_permuted_affect"] == 0.0 and reads_emotion["reliance_mean_affect"] == 0.0
    reads_affect = affect_reliance(_reliance_model("affect"), h_task, h_affect, feelings, labels)
    assert 0.75 < reads_affect["reliance_permuted_affect"] == reads_affect["reliance_permuted"]
    assert 0.75 < reads_affect["reliance_mean_affect"] == reads_affect["reliance_mean"]
    assert reads_affect["reliance_permuted_emotion"] == 0.0 and reads_affect["reliance_mean_emotion"] == 0.0
    ignores_emotion = affect_reliance(_reliance_model("task"), h_task, h_affect, feelings, labels)
    reliance = {k: v for k, v in ignores_emotion.items() if k.startswith("reliance")}
    assert reliance == dict.fromkeys(
        [f"reliance_{how}{part}" for part in ("", "_affect", "_emotion") for how in ("permuted", "mean")],
        0.0,
    )
    for figures in (reads_emotion, reads_affect, ignores_emotion):  # z_E decides alone (ρ = 1); z_N guesses
        assert figures["accuracy_emotional"] > 0.95 and figures["accuracy_non_emotional"] < 0.3


def test_adaptive_rho_reads_the_permuted_e_x_too():
    """In adaptive regulation e(x) also sets ρ: permuting e(x) alone costs accuracy through ρ even when
    neither response reads e(x) or h_A; permuting h_A alone costs nothing."""
    rng = np.random.default_rng(1)
    labels, task_knows = rng.integers(0, 7, 400), np.arange(400) % 2 == 0
    h_task = rng.normal(size=(400, 16))
    h_task[task_knows, 7:14] += 5 * np.eye(7)[labels[task_knows]]  # z_N is right on these images
    h_task[~task_knows, :7] += 5 * np.eye(7)[labels[~task_knows]]  # z_E on the others
    feelings = np.eye(7)[np.where(task_knows, 0, 1)]  # e(x) says which: ρ ≈ 0 on the first, ≈ 1 on the rest
    model = _reliance_model("task", regulation="adaptive")
    with torch.no_grad():
        model.regulator.weight.zero_()
        model.regulator.weight[0, 16:18] = torch.tensor([-20.0, 20.0])
        model.regulator.bias.zero_()
    figures = affect_reliance(model, h_task, rng.normal(size=(400, 16)), feelings, labels)
    assert figures["reliance_permuted_emotion"] == figures["reliance_permuted"] > 0.3  # ρ: wrong response
    assert figures["reliance_permuted_affect"] == 0.0 and figures["reliance_mean_affect"] == 0.0
    assert figures["accuracy_non_emotional"] < 0.7 and figures["accuracy_emotional"] < 0.7


def test_evaluation_keeps_the_features_reliance_needs():
    out = emoreg().eval()(PIXELS)
    kept = keep_logits_for_metrics(out.to_tuple(), None)
    assert len(kept) == 5
    assert torch.equal(kept[0], out.logits) and torch.equal(kept[1], out.regulation)
    assert torch.equal(kept[3], out.task_features) and torch.equal(kept[4], out.affect_features)


def test_loader_grayscale_and_padcrop_and_colour_detection():
    rng = np.random.default_rng(0)
    colour = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB")
    out = LoaderTransform(32, "padcrop", train=False, color_mode="grayscale")({"image": [colour]})
    gray = torch.from_numpy(np.array(colour.convert("L")))
    assert all(torch.equal(channel, gray) for channel in out["pixel_values"][0])
    crops = LoaderTransform(48, "padcrop", train=True)({"image": [colour.resize((48, 48))] * 8})[
        "pixel_values"
    ]
    assert all(x.shape == (3, 48, 48) and x.dtype == torch.uint8 for x in crops)
    with pytest.raises(ValueError, match="color_mode must be one of"):
        LoaderTransform(32, color_mode="cmyk")
    faces = datasets.Dataset.from_dict(
        {"image": [colour.convert("L")] * 3}, features=datasets.Features({"image": datasets.Image()})
    )
    photos = datasets.Dataset.from_dict(
        {"image": [colour] * 3}, features=datasets.Features({"image": datasets.Image()})
    )
    assert infer_color_mode(faces) == "grayscale" and infer_color_mode(photos) == "rgb"


def test_registration_keeps_the_package_class():
    assert type(AutoConfig.for_model("small_resnet")) is SmallResNetConfig


def test_padcrop_is_torchvision_s_reflect_pad_crop_and_flip():
    from torchvision.transforms.v2 import functional as tvF

    from emoreg_hf.data.transforms import PadCropFlip

    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    padded = tvF.pad(image, [6, 6, 6, 6], padding_mode="reflect")
    crops = {
        tuple(padded[..., 6 + dy : 54 + dy, 6 + dx : 54 + dx].flatten().tolist())
        for dy in range(-6, 7)
        for dx in range(-6, 7)
    }
    flipped = {tuple(tvF.horizontal_flip(torch.tensor(c).view(3, 48, 48)).flatten().tolist()) for c in crops}
    torch.manual_seed(0)
    seen = [tuple(PadCropFlip(6)(image).flatten().tolist()) for _ in range(40)]
    assert all(s in crops | flipped for s in seen)
    assert any(s in flipped - crops for s in seen) and len(set(seen)) > 10
