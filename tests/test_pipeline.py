"""The `emoreg-image-classification` pipeline that ships with every EmoReg checkpoint (issue 12, part 1).

Tiny checkpoints are built in-process (tests/tiny_models.py); the remote-code test runs the pipeline in a fresh
interpreter that never imports `emoreg_hf`, as a user of the Hub model would.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import CIFAR10, EKMAN7, image_processor, resnet_config, vit_config
from transformers import AutoModelForImageClassification, ViTModel, pipeline

import emoreg_hf
from emoreg_hf import EmoRegConfig, EmoRegForImageClassification, EmoRegImageClassificationPipeline
from emoreg_hf.pipeline_emoreg import TASK, load_rgb_image, to_rgb

HALF = ([0.5] * 3, [0.5] * 3)
IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
EMOREG_KEYS = {"labels", "regulation", "emotions", "non_emotional", "emotional"}

# Images of every mode the pipeline must take, made the same way in this process and in the subprocess.
IMAGE_FACTORY = textwrap.dedent(
    """
    import numpy as np
    from PIL import Image

    def make_images():
        rng = np.random.default_rng(3)
        rgb = rng.integers(0, 256, (41, 57, 3), dtype=np.uint8)
        gray = rng.integers(0, 256, (30, 30), dtype=np.uint8)
        alpha = np.linspace(0, 255, 36 * 36, dtype=np.uint8).reshape(36, 36)
        deep = (np.arange(40 * 40, dtype=np.uint32).reshape(40, 40) * 40).astype(np.uint16)
        return {
            "RGB": Image.fromarray(rgb),
            "L": Image.fromarray(gray),
            "RGBA": Image.fromarray(np.dstack([rgb[:36, :36], alpha])),
            "I;16": Image.fromarray(deep),
            "P": Image.fromarray(rgb).convert("P"),
            "LA": Image.fromarray(np.dstack([gray, gray])).convert("LA"),
            "CMYK": Image.fromarray(rgb).convert("CMYK"),
            "1": Image.fromarray(gray > 128),
            "F": Image.fromarray(gray.astype(np.float32) / 255.0),
        }
    """
)
_namespace: dict = {}
exec(IMAGE_FACTORY, _namespace)
make_images = _namespace["make_images"]


def save_emoreg_checkpoint(folder: Path, seed: int = 0) -> Path:
    """ViT task pathway (32 px) + ResNet affective pathway (48 px, ImageNet statistics), with a regulator whose
    weights are not the initial zeros, so that ρ differs from image to image."""
    torch.manual_seed(seed)
    config = EmoRegConfig(
        task_config=vit_config(),
        affect_config=resnet_config(),
        task_image_size=[32, 32],
        task_image_mean=HALF[0],
        task_image_std=HALF[1],
        affect_image_size=[48, 48],
        affect_image_mean=IMAGENET[0],
        affect_image_std=IMAGENET[1],
    )
    model = EmoRegForImageClassification(config).eval()
    with torch.no_grad():
        model.regulator.weight.normal_(0.0, 2.0)
        model.regulator.bias.fill_(0.3)
    model.save_pretrained(folder)
    image_processor(32, *HALF).save_pretrained(folder)
    return folder


def save_plain_checkpoint(folder: Path) -> Path:
    """A baseline-style checkpoint: an ordinary ViTForImageClassification, no affective pathway."""
    torch.manual_seed(1)
    AutoModelForImageClassification.from_config(vit_config()).save_pretrained(folder)
    image_processor(32, *HALF).save_pretrained(folder)
    return folder


def save_headless_checkpoint(folder: Path) -> Path:
    """Not an image classifier: a bare ViT encoder (architectures: ViTModel)."""
    torch.manual_seed(2)
    ViTModel(vit_config()).save_pretrained(folder)
    image_processor(32, *HALF).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipeline_checkpoints")
    return {
        "emoreg": save_emoreg_checkpoint(root / "emoreg"),
        "plain": save_plain_checkpoint(root / "plain"),
        "headless": save_headless_checkpoint(root / "headless"),
    }


def check_result(result: dict, top_k: int, n_emotions: int) -> None:
    """Keys, types and ranges of one image's result from an EmoReg checkpoint."""
    assert set(result) == EMOREG_KEYS
    scores = [item["score"] for item in result["labels"]]
    assert len(result["labels"]) == top_k and scores == sorted(scores, reverse=True)
    assert all(item["label"] in CIFAR10 and 0.0 <= item["score"] <= 1.0 for item in result["labels"])
    assert isinstance(result["regulation"], float) and 0.0 <= result["regulation"] <= 1.0
    assert len(result["emotions"]) == n_emotions
    assert all(e["label"] in EKMAN7 and 0.0 <= e["score"] <= 1.0 for e in result["emotions"])
    for key in ("non_emotional", "emotional"):
        assert set(result[key]) == {"label", "score"} and result[key]["label"] in CIFAR10
        assert 0.0 <= result[key]["score"] <= 1.0


def test_every_saved_checkpoint_carries_and_declares_the_pipeline(checkpoints, tmp_path):
    folder = checkpoints["emoreg"]
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"] == {
        TASK: {
            "impl": "pipeline_emoreg.EmoRegImageClassificationPipeline",
            "pt": ["AutoModelForImageClassification"],
            "type": "image",
        }
    }
    assert {"pipeline_emoreg.py", "modeling_emoreg.py", "configuration_emoreg.py", "backbones.py"} <= {
        p.name for p in folder.iterdir()
    }
    source = Path(emoreg_hf.__file__).parent / "pipeline_emoreg.py"
    assert (folder / "pipeline_emoreg.py").read_bytes() == source.read_bytes()
    # The config alone (what config.json comes from) brings the file too.
    EmoRegConfig(task_config=vit_config(), affect_config=resnet_config()).save_pretrained(tmp_path)
    assert (tmp_path / "pipeline_emoreg.py").is_file()
    assert TASK in json.loads((tmp_path / "config.json").read_text())["custom_pipelines"]


REMOTE_SCRIPT = """
import json, sys
from transformers import pipeline
{factory}
folder, out = sys.argv[1], sys.argv[2]
images = make_images()
classify = pipeline("{task}", model=folder, trust_remote_code=True, device="cpu")
module = sys.modules[type(classify).__module__]

def own_regulation(image):
    inputs = classify.image_processor(images=module.to_rgb(image), return_tensors="pt")
    return float(classify.model(**inputs).regulation[0])

names = list(images)
report = {{
    "pipeline_module": type(classify).__module__,
    "single": classify(images["RGB"], top_k=3),
    "batched": classify([images[n] for n in names], top_k=3, top_k_emotions=7, batch_size=4),
    "one_by_one": [classify(images[n], top_k=3, top_k_emotions=7) for n in names],
    "own_regulation": [own_regulation(images[n]) for n in names],
    "path": classify(sys.argv[3]),
    "plain": pipeline("image-classification", model=folder, trust_remote_code=True, device="cpu")(
        images["RGB"], top_k=3
    ),
    "inferred_task": type(pipeline(model=folder, trust_remote_code=True, device="cpu")).__name__,
}}
try:
    classify(sys.argv[3] + ".missing.png")
except ValueError as error:
    report["missing"] = str(error)
report["imported_emoreg_hf"] = "emoreg_hf" in sys.modules
report["names"] = names
json.dump(report, open(out, "w"))
"""


@pytest.mark.slow  # spawns processes or trains
def test_remote_code_pipeline_in_a_process_that_never_imports_emoreg_hf(checkpoints, tmp_path):
    image_path = tmp_path / "photo.png"
    make_images()["RGB"].save(image_path)
    script = REMOTE_SCRIPT.format(factory=IMAGE_FACTORY, task=TASK)
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-c", script, str(checkpoints["emoreg"]), str(out), str(image_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repository: `emoreg_hf` must not be importable by accident
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["imported_emoreg_hf"] is False
    assert report["pipeline_module"].startswith("transformers_modules.")
    assert report["inferred_task"] == "EmoRegImageClassificationPipeline"  # config declares one pipeline

    check_result(report["single"], top_k=3, n_emotions=3)
    check_result(report["path"], top_k=5, n_emotions=5)
    assert report["single"]["labels"] == report["plain"]  # same labels as image-classification
    assert len(report["batched"]) == len(report["names"]) == 9
    rhos = []
    for name, batched, alone, own in zip(
        report["names"], report["batched"], report["one_by_one"], report["own_regulation"]
    ):
        check_result(batched, top_k=3, n_emotions=7)
        assert sum(e["score"] for e in batched["emotions"]) == pytest.approx(1.0, abs=1e-5), name
        assert batched["regulation"] == pytest.approx(own, abs=1e-6), name  # ρ is the model's own output
        assert alone["regulation"] == pytest.approx(own, abs=1e-6), name
        assert [x["label"] for x in batched["labels"]] == [x["label"] for x in alone["labels"]], name
        rhos.append(own)
    assert len({round(r, 6) for r in rhos}) > 1, "the regulator must give image-dependent ρ in this test"
    assert "photo.png.missing.png" in report["missing"] and "no such file" in report["missing"]


def test_plain_image_classification_pipeline_is_unchanged(checkpoints):
    folder = str(checkpoints["emoreg"])
    image = make_images()["RGB"]
    plain = pipeline("image-classification", model=folder, trust_remote_code=True, device="cpu")
    assert type(plain).__name__ == "ImageClassificationPipeline"
    labels = plain(image, top_k=4)
    assert isinstance(labels, list) and all(set(item) == {"label", "score"} for item in labels)
    emoreg = pipeline(TASK, model=folder, trust_remote_code=True, device="cpu")
    assert emoreg(image, top_k=4)["labels"] == labels
    assert plain([image, image], top_k=2) == [labels[:2], labels[:2]]


def test_in_process_emoreg_pipeline_with_the_package_class(checkpoints, tmp_path):
    """With emoreg_hf imported, the package's class works without remote code; the model still saves."""
    classify = pipeline(
        TASK, model=str(checkpoints["emoreg"]), pipeline_class=EmoRegImageClassificationPipeline, device="cpu"
    )
    assert isinstance(classify.model, EmoRegForImageClassification)
    check_result(classify(make_images()["L"], top_k=2), top_k=2, n_emotions=2)
    # pipeline() turns custom_pipelines' class names into classes in the loaded config; saving must still work
    remote = pipeline(TASK, model=str(checkpoints["emoreg"]), trust_remote_code=True, device="cpu")
    remote.model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["custom_pipelines"][TASK]["pt"] == [
        "AutoModelForImageClassification"
    ]


def test_non_emoreg_checkpoint_gives_labels_and_none_for_the_emoreg_fields(checkpoints):
    # `import emoreg_hf` registered the task in this process: no remote code for a plain checkpoint
    classify = pipeline(TASK, model=str(checkpoints["plain"]), device="cpu")
    assert isinstance(classify, EmoRegImageClassificationPipeline) and not classify.is_emoreg
    images = make_images()
    result = classify(images["RGBA"], top_k=3)
    assert set(result) == EMOREG_KEYS
    assert len(result["labels"]) == 3 and all(item["label"] in CIFAR10 for item in result["labels"])
    assert all(result[key] is None for key in ("regulation", "emotions", "non_emotional", "emotional"))
    batch = classify([images["RGB"], images["I;16"], images["L"]], batch_size=2)
    assert [len(r["labels"]) for r in batch] == [5, 5, 5] and all(r["regulation"] is None for r in batch)


def test_not_an_image_classifier_is_a_clear_error(checkpoints):
    with pytest.raises(ValueError, match=r"needs an image classifier .* this checkpoint is ViTModel"):
        pipeline(TASK, model=str(checkpoints["headless"]), device="cpu")
    with pytest.raises(ValueError, match="needs an image classifier"):
        pipeline(TASK, model=ViTModel(vit_config()), image_processor=image_processor(32, *HALF), device="cpu")


def test_unreadable_images_are_value_errors_naming_the_input(checkpoints, tmp_path):
    classify = pipeline(TASK, model=str(checkpoints["emoreg"]), trust_remote_code=True, device="cpu")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    png = tmp_path / "cut.png"
    make_images()["RGB"].save(png)
    png.write_bytes(png.read_bytes()[:200])  # a valid header, then nothing
    cases = {
        str(tmp_path / "absent.jpg"): r"'.*absent\.jpg': no such file",
        str(text): r"'.*notes\.txt': cannot identify image file",
        str(png): r"'.*cut\.png': .*truncated",
        "data:image/png;base64,%%%": r"'data:image/png;base64,%%%': invalid base64 image data",
        # a folder is not an image (not "cannot identify image file <_io.BytesIO ...>"): a list is many images
        str(tmp_path): r"'.*': it is a folder, not an image; .* pass a list of their paths",
        "photos/cat_0001": r"'photos/cat_0001': no such file",  # valid base64 text, but no image
    }
    for source, message in cases.items():
        with pytest.raises(ValueError, match=f"cannot read an image from {message}"):
            classify(source)
    with pytest.raises(ValueError, match="cannot read an image from an object of type int"):
        classify(42)


def test_an_empty_list_of_images_gives_an_empty_list(checkpoints):
    classify = pipeline(TASK, model=str(checkpoints["emoreg"]), trust_remote_code=True, device="cpu")
    assert classify([]) == [] and classify([], batch_size=4) == [] and classify(()) == []


def test_every_image_mode_becomes_rgb_without_clipping():
    images = make_images()
    for name, image in images.items():
        converted = to_rgb(image)
        assert converted.mode == "RGB" and converted.size == image.size, name
    deep = np.asarray(to_rgb(images["I;16"]))[..., 0].astype(int)  # 0..63960 spread over 0..249, not clipped
    assert deep.min() == 0 and deep.max() == round(63960 / 257) and len(np.unique(deep)) > 200
    floats = np.asarray(to_rgb(images["F"]))[..., 0].astype(int)  # [0, 1] floats scaled to [0, 255]
    assert abs(floats - np.asarray(images["L"]).astype(int)).max() <= 1
    clear = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # transparent shows the white background
    assert to_rgb(clear).getpixel((0, 0)) == (255, 255, 255)
    assert load_rgb_image(images["CMYK"]).mode == "RGB"
