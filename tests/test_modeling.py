import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from tiny_models import CIFAR10, EKMAN7, image_processor, resnet_config, vit_config
from transformers import AutoModelForImageClassification, pipeline

import emoreg_hf
from emoreg_hf import EmoRegConfig, EmoRegForImageClassification

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
HALF = ([0.5] * 3, [0.5] * 3)


def make_config(**options) -> EmoRegConfig:
    """ViT task pathway (32 px, mean/std 0.5) + ResNet affective pathway (48 px, ImageNet statistics)."""
    geometry = {
        "task_image_size": [32, 32],
        "task_image_mean": HALF[0],
        "task_image_std": HALF[1],
        "affect_image_size": [48, 48],
        "affect_image_mean": IMAGENET[0],
        "affect_image_std": IMAGENET[1],
    }
    return EmoRegConfig(task_config=vit_config(), affect_config=resnet_config(), **{**geometry, **options})


def make_model(**options) -> EmoRegForImageClassification:
    torch.manual_seed(0)
    return EmoRegForImageClassification(make_config(**options))


PIXELS = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
LABELS = torch.tensor([0, 3, 7, 9])


@pytest.mark.parametrize("influence", ["concat", "film"])
@pytest.mark.parametrize("regulation", ["fixed", "learned", "adaptive"])
def test_every_mode_trains_and_regulation_stays_in_unit_interval(influence, regulation):
    model = make_model(influence=influence, regulation=regulation, rho_init=0.3).train()
    out = model(PIXELS, labels=LABELS)
    assert out.logits.shape == (4, 10)
    assert out.emotion_probs.shape == (4, 7)
    torch.testing.assert_close(out.emotion_probs.sum(-1), torch.ones(4))
    assert ((out.regulation >= 0) & (out.regulation <= 1)).all()
    torch.testing.assert_close(out.regulation, torch.full((4,), 0.3))  # every mode starts at rho_init
    out.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for n, g in grads.items() if n.startswith(("task_model.", "emotional_head.")))
    if regulation == "adaptive":
        assert model.regulator.weight.grad.abs().sum() > 0
    if regulation == "learned":
        assert model.rho_logit.grad is not None
    if influence == "film":
        assert model.film.weight.grad.abs().sum() > 0


def test_loss_is_regulated_ce_plus_auxiliary_term():
    model = make_model(regulation="fixed", rho_init=0.25, aux_loss_weight=0.4)
    out = model(PIXELS, labels=LABELS)
    mixed = 0.75 * out.logits_non_emotional + 0.25 * out.logits_emotional
    torch.testing.assert_close(out.logits, mixed)
    aux = F.cross_entropy(out.logits_non_emotional, LABELS) + F.cross_entropy(out.logits_emotional, LABELS)
    torch.testing.assert_close(out.loss, F.cross_entropy(mixed, LABELS) + 0.4 * 0.5 * aux)


def test_soft_labels_from_mixup_are_accepted():
    model = make_model()
    soft = F.one_hot(LABELS, 10).float() * 0.7 + 0.03
    assert torch.isfinite(model(PIXELS, labels=soft).loss)


def test_fixed_rho_zero_is_the_non_emotional_response():
    model = make_model(regulation="fixed", rho_init=0.0)
    out = model(PIXELS)
    assert torch.equal(out.logits, out.logits_non_emotional)


def test_frozen_affective_pathway_gets_no_gradient_and_stays_in_eval_mode():
    model = make_model(affect_trainable="frozen").train()
    assert not model.affect_model.training and model.task_model.training
    assert not any(p.requires_grad for p in model.affect_model.parameters())
    running_mean = model.affect_model.resnet.embedder.embedder.normalization.running_mean.clone()
    model(PIXELS, labels=LABELS).loss.backward()
    assert all(p.grad is None for p in model.affect_model.parameters())
    assert all(p.grad is not None for p in model.task_model.parameters())
    assert model.emotional_head.weight.grad is not None and model.regulator.weight.grad is not None
    assert torch.equal(running_mean, model.affect_model.resnet.embedder.embedder.normalization.running_mean)
    groups = model.optimizer_param_groups(1e-3)
    assert {g["lr"] for g in groups} == {1e-3}


def test_trainable_affective_pathway_has_its_own_scaled_learning_rate():
    model = make_model(affect_trainable="all", affect_lr_scale=0.1).train()
    assert model.affect_model.training
    model(PIXELS, labels=LABELS).loss.backward()
    assert all(p.grad is not None for p in model.affect_model.parameters())
    groups = model.optimizer_param_groups(1e-3, weight_decay=0.05)
    affect_ids = {id(p) for p in model.affect_model.parameters()}
    for group in groups:
        is_affect = {id(p) in affect_ids for p in group["params"]}
        assert len(is_affect) == 1
        assert group["lr"] == pytest.approx(1e-4 if is_affect.pop() else 1e-3)
    covered = sum(len(g["params"]) for g in groups)
    assert covered == len(list(model.parameters()))


def test_affective_pathway_sees_its_own_size_and_normalisation():
    """Task input at 32 px / mean 0.5 is converted to the 48 px ImageNet-normalised input A was trained on."""
    model = make_model().eval()
    rgb = torch.rand(2, 3, 32, 32)
    task_pixels = (rgb - 0.5) / 0.5
    affect_rgb = F.interpolate(rgb, size=(48, 48), mode="bilinear", antialias=True, align_corners=False)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    with torch.no_grad():
        expected = model.affect_model(pixel_values=(affect_rgb - mean) / std).logits.softmax(-1)
        got = model(task_pixels).emotion_probs
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_save_load_round_trip_gives_identical_logits(tmp_path):
    model = make_model(influence="film", regulation="learned", rho_init=0.6).eval()
    with torch.no_grad():
        model.rho_logit.fill_(0.123)  # a trained value, not the initial one
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert (
        config["auto_map"]["AutoModelForImageClassification"]
        == "modeling_emoreg.EmoRegForImageClassification"
    )
    assert config["task_config"]["model_type"] == "vit" and config["affect_config"]["model_type"] == "resnet"
    assert {"modeling_emoreg.py", "configuration_emoreg.py", "backbones.py"} <= {
        p.name for p in tmp_path.iterdir()
    }
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert isinstance(reloaded, EmoRegForImageClassification)
    with torch.no_grad():
        a, b = model(PIXELS), reloaded(PIXELS)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.regulation, b.regulation)


@pytest.mark.slow  # spawns processes or trains
def test_remote_code_loads_in_a_process_that_never_imports_emoreg_hf(tmp_path):
    model = make_model().eval()
    model.save_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        expected = model(PIXELS).logits
    torch.save(PIXELS, tmp_path / "pixels.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path / "ckpt")!r}, trust_remote_code=True)
        assert "emoreg_hf" not in sys.modules, "remote code must not need the package"
        with torch.no_grad():
            out = model.eval()(torch.load({str(tmp_path / "pixels.pt")!r}))
        torch.save(out.logits, {str(tmp_path / "logits.pt")!r})
        print(type(model).__module__)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout
    assert torch.equal(torch.load(tmp_path / "logits.pt"), expected)


def test_pipeline_returns_the_task_label_names(tmp_path):
    model = make_model().eval()
    model.save_pretrained(tmp_path)
    image_processor(32, *HALF).save_pretrained(tmp_path)
    classifier = pipeline("image-classification", model=str(tmp_path), trust_remote_code=True, device="cpu")
    image = Image.new("RGB", (57, 41), (200, 30, 30))
    result = classifier(image, top_k=3)
    assert len(result) == 3
    assert {r["label"] for r in result} <= set(CIFAR10)


def test_from_backbones_reads_both_checkpoints_and_their_processors(tmp_path):
    torch.manual_seed(0)
    affect = AutoModelForImageClassification.from_config(resnet_config())
    affect.save_pretrained(tmp_path / "affect")
    image_processor(48, *IMAGENET).save_pretrained(tmp_path / "affect")
    task = AutoModelForImageClassification.from_config(vit_config(names=[f"c{i}" for i in range(5)]))
    task.save_pretrained(tmp_path / "task")
    image_processor(32, *HALF).save_pretrained(tmp_path / "task")

    labels = {
        "num_labels": 10,
        "id2label": dict(enumerate(CIFAR10)),
        "label2id": {n: i for i, n in enumerate(CIFAR10)},
    }
    model = EmoRegForImageClassification.from_backbones(
        str(tmp_path / "task"), str(tmp_path / "affect"), regulation="fixed", rho_init=0.2, **labels
    ).eval()
    cfg = model.config
    assert cfg.task_image_size == [32, 32] and cfg.affect_image_size == [48, 48]
    assert cfg.affect_image_mean == IMAGENET[0] and cfg.task_image_mean == HALF[0]
    assert cfg.emotion_labels == EKMAN7 and cfg.id2label[3] == "cat" and cfg.num_labels == 10
    assert model.task_model.config.num_labels == 10  # new head for the task's classes
    for name, tensor in affect.state_dict().items():  # the pretrained emotion head and body are kept
        assert torch.equal(model.affect_model.state_dict()[name], tensor)
    vit_names = [n for n in task.state_dict() if not n.startswith("classifier")]
    assert all(torch.equal(model.task_model.state_dict()[n], task.state_dict()[n]) for n in vit_names)

    scratch = EmoRegForImageClassification.from_backbones(
        None, str(tmp_path / "affect"), task_config=vit_config(), task_image_size=[32, 32], **labels
    )
    assert scratch.config.task_config.num_labels == 10 and scratch(PIXELS).logits.shape == (4, 10)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rho_init": 1.5}, "rho_init=1.5 .*0 <= rho_init <= 1"),
        ({"regulation": "sometimes"}, "regulation='sometimes'.*fixed, learned, adaptive"),
        ({"influence": "add"}, "influence='add'.*concat, film"),
        ({"affect_trainable": "half"}, "affect_trainable='half'.*frozen, all"),
        ({"aux_loss_weight": -1}, "aux_loss_weight"),
        ({"num_labels": 3}, "num_labels=3 but its task_config has num_labels=10"),
        ({"task_image_mean": [0.5, 0.5]}, "task_image_mean must be 3 numbers"),
    ],
)
def test_invalid_options_name_the_field_and_allowed_values(options, match):
    with pytest.raises(ValueError, match=match):
        make_config(**options)


def test_bad_inputs_raise_clear_errors(tmp_path):
    model = make_model()
    with pytest.raises(ValueError, match=r"shape \(batch, 3, height, width\), got \(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match="expects 32x32 inputs"):
        model(torch.randn(2, 3, 64, 64))
    with pytest.raises(ValueError, match="num_labels=10 does not match id2label"):
        EmoRegForImageClassification.from_backbones(
            None, "unused", task_config=vit_config(), num_labels=10, id2label={0: "a"}, label2id={"a": 0}
        )


def test_package_import_registers_auto_classes():
    from transformers import AutoConfig

    assert (
        AutoConfig.for_model("emoreg", task_config=vit_config(), affect_config=resnet_config()).model_type
        == "emoreg"
    )
    assert emoreg_hf.EmoRegConfig is EmoRegConfig


def test_label_smoothing_applies_to_every_loss_term():
    model = make_model(aux_loss_weight=0.5).eval()
    with torch.no_grad():
        plain = model(PIXELS, labels=LABELS)
        smoothed = model(PIXELS, labels=LABELS, label_smoothing=0.3)
    expected = F.cross_entropy(smoothed.logits, LABELS, label_smoothing=0.3) + 0.25 * (
        F.cross_entropy(smoothed.logits_non_emotional, LABELS, label_smoothing=0.3)
        + F.cross_entropy(smoothed.logits_emotional, LABELS, label_smoothing=0.3)
    )
    torch.testing.assert_close(smoothed.loss, expected)
    assert not torch.isclose(plain.loss, smoothed.loss)


def _trainer(model, tmp_path, **args):
    from transformers import TrainingArguments

    from emoreg_hf.trainer import EmoRegTrainer

    examples = [{"pixel_values": PIXELS[i], "labels": int(LABELS[i])} for i in range(4)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, max_steps=2, report_to=[], use_cpu=True,
        remove_unused_columns=False, save_strategy="no", logging_steps=1, **args,
    )  # fmt: skip
    return EmoRegTrainer(model=model, args=arguments, train_dataset=examples)


def test_gradient_checkpointing_delegates_to_the_trained_pathways(tmp_path):
    model = make_model()  # ViT task pathway (supports it), frozen ResNet affective pathway (needs none)
    trainer = _trainer(model, tmp_path, gradient_checkpointing=True)
    result = trainer.train()
    assert result.global_step == 2 and torch.isfinite(torch.tensor(result.training_loss))
    checkpointed = [n for n, m in model.named_modules() if getattr(m, "gradient_checkpointing", False)]
    assert checkpointed and all(n.startswith("task_model.") for n in checkpointed)
    assert model.is_activation_checkpointing
    # a trainable affective pathway of a family without it is refused, naming the pathway, before any step
    refused = _trainer(make_model(affect_trainable="all"), tmp_path / "b", gradient_checkpointing=True)
    with pytest.raises(ValueError, match=r"EmoReg's affective pathway \(ResNetForImageClassification"):
        refused.train()
    assert refused.state.global_step == 0


def test_trainer_passes_its_label_smoothing_to_emoreg(tmp_path):
    losses = {}
    for factor in (0.0, 0.3):
        trainer = _trainer(make_model(), tmp_path / str(factor), label_smoothing_factor=factor)
        batch = trainer.finish_batch(next(iter(trainer.get_train_dataloader())))
        with torch.no_grad():
            losses[factor] = trainer.compute_loss(trainer.model, batch).item()
    assert losses[0.0] != pytest.approx(losses[0.3])


@pytest.mark.slow  # spawns processes or trains
def test_import_registers_everything_without_importing_the_stack(tmp_path):
    """`import emoreg_hf` stays light (no models, pipelines or datasets), yet EmoReg is found by the Auto
    classes (registered when the first EmoRegConfig is built) and the `emoreg-image-classification` task by
    `pipeline` (registered when transformers.pipelines is imported), as DESIGN's contract says."""
    make_model().save_pretrained(tmp_path / "ckpt")
    AutoModelForImageClassification.from_config(vit_config()).save_pretrained(tmp_path / "plain")
    image_processor(32, [0.5] * 3, [0.5] * 3).save_pretrained(tmp_path / "plain")
    script = textwrap.dedent(
        f"""
        import sys
        import emoreg_hf
        heavy = [m for m in ("transformers.modeling_utils", "transformers.pipelines", "datasets", "torchvision",
                             "emoreg_hf.modeling_emoreg") if m in sys.modules]
        assert not heavy, heavy
        from transformers import AutoConfig, AutoModelForImageClassification, pipeline
        model = AutoModelForImageClassification.from_pretrained({str(tmp_path / "ckpt")!r})
        assert type(model) is emoreg_hf.EmoRegForImageClassification, type(model)
        assert type(AutoConfig.from_pretrained({str(tmp_path / "ckpt")!r})) is emoreg_hf.EmoRegConfig
        felt = pipeline("emoreg-image-classification", model={str(tmp_path / "plain")!r})  # a baseline
        assert type(felt) is emoreg_hf.EmoRegImageClassificationPipeline, type(felt)
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


@pytest.mark.slow  # spawns a process
def test_pipeline_is_registered_when_its_own_module_is_imported_first():
    """`pipeline_emoreg` imports transformers.pipelines itself (the data layer imports it for `to_rgb`): the
    registration waits for the module to finish instead of importing it half-done."""
    script = (
        "import emoreg_hf.data.images as images\n"
        "images.to_8bit_rgb([], [])  # imports pipeline_emoreg, which imports transformers.pipelines\n"
        "from transformers.pipelines import PIPELINE_REGISTRY\n"
        "assert 'emoreg-image-classification' in PIPELINE_REGISTRY.get_supported_tasks()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]
