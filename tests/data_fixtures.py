"""Tiny local data sets in the exact Hub schemas, written to tmp dirs (no network, no ../shared).

Import the fixtures into a test module with ``from data_fixtures import *  # noqa: F403``.
"""

from __future__ import annotations

import io

import datasets
import numpy as np
import pytest
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FER_NAMES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
MIKELS_NAMES = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]


def png_bytes(rng: np.random.Generator, side: int, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    shape = (side, side, 3) if mode == "RGB" else (side, side)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(buf, format=fmt)
    return buf.getvalue()


def write_parquet(path, columns: dict, features: datasets.Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))


def shared_dir(tmp_path_factory, name: str):
    """A per-session folder with a fixed name: modules that star-import these fixtures get their own
    fixture instances, but share what was already built (returns (path, already_built))."""
    path = tmp_path_factory.getbasetemp() / name
    built = path.exists()
    path.mkdir(exist_ok=True)
    return path, built


@pytest.fixture(autouse=True, scope="session")
def _isolated_caches(tmp_path_factory):
    """Keep datasets' Arrow cache and the demo cache inside pytest's tmp dir."""
    mp = pytest.MonkeyPatch()
    root, _ = shared_dir(tmp_path_factory, "caches")
    mp.setattr(datasets.config, "HF_DATASETS_CACHE", str(root / "hf_datasets"))
    mp.setenv("EMOREG_HF_CACHE", str(root / "emoreg_hf"))
    mp.setenv("HF_HUB_OFFLINE", "1")
    datasets.disable_progress_bars()
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def cifar10_dir(tmp_path_factory):
    """``uoft-cs/cifar10`` layout: plain_text/{train,test}-00000-of-00001.parquet with img, label."""
    root, built = shared_dir(tmp_path_factory, "cifar10")
    if built:
        return root
    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CIFAR10_NAMES)})
    for split, per_class in (("train", 5), ("test", 2)):
        labels = [i % 10 for i in range(10 * per_class)]
        imgs = [{"bytes": png_bytes(rng, 32), "path": None} for _ in labels]
        write_parquet(
            root / "plain_text" / f"{split}-00000-of-00001.parquet", {"img": imgs, "label": labels}, features
        )
    return root


@pytest.fixture(scope="session")
def cifar100_dir(tmp_path_factory):
    """``uoft-cs/cifar100`` layout: img, fine_label (100 names), coarse_label (20 names)."""
    root, built = shared_dir(tmp_path_factory, "cifar100")
    if built:
        return root
    rng = np.random.default_rng(1)
    fine = [f"fine_{i:02d}" for i in range(100)]
    coarse = [f"coarse_{i:02d}" for i in range(20)]
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=fine),
            "coarse_label": datasets.ClassLabel(names=coarse),
        }
    )
    for split, n in (("train", 100), ("test", 20)):  # every class has a training image, as in CIFAR-100
        f = list(range(100)) if split == "train" else [int(x) for x in rng.integers(0, 100, n)]
        cols = {"img": [{"bytes": png_bytes(rng, 32), "path": None} for _ in f], "fine_label": f}
        cols["coarse_label"] = [x // 5 for x in f]
        write_parquet(root / "cifar100" / f"{split}-00000-of-00001.parquet", cols, features)
    return root


@pytest.fixture(scope="session")
def fer_dir(tmp_path_factory):
    """FER-2013 layout: {train,test}/<adjective>/<n>.jpg, 48 px grayscale (mode L)."""
    root, built = shared_dir(tmp_path_factory, "fer")
    if built:
        return root
    rng = np.random.default_rng(2)
    for split, n in (("train", 6), ("test", 2)):
        for label in FER_NAMES:
            (root / split / label).mkdir(parents=True)
            for i in range(n):
                (root / split / label / f"{i}.jpg").write_bytes(png_bytes(rng, 48, "L", "JPEG"))
    return root


@pytest.fixture(scope="session")
def mikels_dir(tmp_path_factory):
    """A source whose label column is ``emotion`` (plain strings, mikels8 names), 64 px RGB."""
    root, built = shared_dir(tmp_path_factory, "mikels")
    if built:
        return root
    rng = np.random.default_rng(3)
    emotions = [MIKELS_NAMES[i % 8] for i in range(48)]
    features = datasets.Features({"image": datasets.Image(), "emotion": datasets.Value("string")})
    cols = {"image": [{"bytes": png_bytes(rng, 64), "path": None} for _ in emotions], "emotion": emotions}
    write_parquet(root / "data" / "train-00000-of-00001.parquet", cols, features)
    return root
