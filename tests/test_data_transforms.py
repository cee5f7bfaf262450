import pickle

import datasets
import numpy as np
import pytest
import torch
from data_fixtures import *  # noqa: F403
from PIL import Image

from emoreg_hf.data import (
    AUGMENTATIONS,
    Collator,
    DeviceFinisher,
    LoaderTransform,
    build_image_processor,
    infer_working_size,
    load_target_dataset,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _images(n=4, side=32, mode="RGB"):
    rng = np.random.default_rng(0)
    shape = (side, side, 3) if mode == "RGB" else (side, side)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode) for _ in range(n)]


@pytest.mark.parametrize("augmentation", AUGMENTATIONS)
def test_loader_transform_gives_uint8_at_working_size(augmentation):
    t = pickle.loads(pickle.dumps(LoaderTransform(24, augmentation, train=True)))
    out = t({"image": _images(3, 40) + [_images(1, 48, "L")[0].convert("RGB")], "label": [0, 1, 2, 3]})
    assert out["labels"] == [0, 1, 2, 3]
    assert all(x.dtype == torch.uint8 and x.shape == (3, 24, 24) for x in out["pixel_values"])


def test_with_transform_in_dataloader_workers(cifar10_dir):
    ds = load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir)})["train"]
    ds = ds.with_transform(LoaderTransform(32, "basic", train=True))
    loader = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, collate_fn=Collator())
    batches = list(loader)
    assert sum(len(b["labels"]) for b in batches) == len(ds)
    batch = batches[0]
    assert batch["pixel_values"].dtype == torch.uint8 and batch["pixel_values"].shape == (8, 3, 32, 32)
    assert batch["labels"].dtype == torch.int64


def test_loader_pieces_survive_pickling(cifar10_dir):
    """What a spawn/forkserver DataLoader (or Trainer with dataloader_num_workers > 0) pickles: the
    transformed split, the collator (with mixup) and a used transform/finisher (built ops, caches)."""
    transform = LoaderTransform(32, "trivialaugment", train=True)
    ds = load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir)})["train"]
    ds = ds.with_transform(transform)
    collator = Collator(num_classes=10, mixup_alpha=0.2, cutmix_alpha=1.0)
    finisher = DeviceFinisher(64, MEAN, STD)
    finisher(collator([ds[0], ds[1]])["pixel_values"])  # builds the ops and the finisher's cache
    ds2, collator2, finisher2 = pickle.loads(pickle.dumps((ds, collator, finisher)))
    batch = collator2([ds2[i] for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32) and batch["labels"].shape == (4, 10)
    assert finisher2(batch["pixel_values"]).shape == (4, 3, 64, 64)
    assert repr(ds2.format["format_kwargs"]["transform"]) == repr(transform)  # still lazy


def test_collator_mixup_cutmix_soft_targets():
    examples = [
        {"pixel_values": torch.full((3, 8, 8), 10 * i, dtype=torch.uint8), "labels": i} for i in range(4)
    ]
    for kw in ({"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0}):
        out = Collator(num_classes=5, **kw)(examples)
        assert out["pixel_values"].dtype == torch.uint8 and out["labels"].shape == (4, 5)
        assert torch.allclose(out["labels"].sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="num_classes"):
        Collator(mixup_alpha=0.2)


@pytest.mark.parametrize("size", [64, 224])
def test_finisher_matches_saved_image_processor(tmp_path, size):
    """Finishing a non-augmented loader batch == the saved processor on the PIL image (< 2/255)."""
    from transformers import AutoImageProcessor

    build_image_processor(size, MEAN, STD).save_pretrained(tmp_path)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    # CIFAR-like, FER-like (grayscale) and a large image the loader resizes once, in uint8
    for side, mode, working in ((32, "RGB", 32), (48, "L", 48), (3 * size // 2, "RGB", size)):
        images = _images(4, side, mode)
        loaded = LoaderTransform(working)({"image": images, "label": [0, 1, 2, 3]})
        batch = Collator()([{"pixel_values": x, "labels": y} for x, y in zip(*loaded.values())])
        ref = processor(images, return_tensors="pt")["pixel_values"]
        for finisher in (DeviceFinisher(size, MEAN, STD), DeviceFinisher.from_image_processor(processor)):
            ours = finisher(batch["pixel_values"])
            assert ours.shape == ref.shape == (4, 3, size, size) and ours.dtype == torch.float32
            diff_pixels = ((ours - ref).abs() * torch.tensor(STD).view(1, 3, 1, 1) * 255).mean()
            assert diff_pixels < 2.0, (side, mode, diff_pixels)
    with pytest.raises(TypeError, match="uint8"):
        DeviceFinisher(64, MEAN, STD)(torch.zeros(1, 3, 8, 8))
    assert pickle.loads(pickle.dumps(DeviceFinisher(64, MEAN, STD))).size == (64, 64)


def test_infer_working_size(cifar10_dir):
    ds = load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir)})["train"]
    assert infer_working_size(ds, 224) == 32 and infer_working_size(ds, 16) == 16
    big = datasets.Dataset.from_dict(
        {"image": _images(3, 300)}, features=datasets.Features({"image": datasets.Image()})
    )
    assert infer_working_size(big, 224) == 224
