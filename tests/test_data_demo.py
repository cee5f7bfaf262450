import hashlib

import datasets
from data_fixtures import *  # noqa: F403

from emoreg_hf.data import load_affective_mixture, load_target_dataset
from emoreg_hf.data.demo import DEMO_NAMES, ensure_demo, generate_demo


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "COMPLETE"
    }


def test_demo_is_byte_identical_across_generations(tmp_path):
    cached = ensure_demo()  # the session's cache (EMOREG_HF_CACHE points into pytest's tmp dir)
    assert (cached / "COMPLETE").exists() and "SYNTHETIC" in (cached / "README.md").read_text()
    fresh = generate_demo(tmp_path / "again")
    assert _digest(fresh) == _digest(cached) and len(_digest(cached)) > 2000
    assert sorted(p.name for p in cached.iterdir() if p.is_dir()) == sorted(DEMO_NAMES)


def test_demo_target_in_cifar10_schema():
    parquet = datasets.load_dataset(str(ensure_demo() / "synthetic-target"))
    assert set(parquet) == {"train", "test"} and list(parquet["train"].features) == ["img", "label"]
    assert parquet["train"].features["label"].num_classes == 10
    ds = load_target_dataset("demo")
    assert set(ds) == {"train", "validation", "test"} and ds["test"][0]["source"] == "synthetic-target"
    assert ds["train"][0]["image"].size == (32, 32)


def test_demo_affective_sources_mix_onto_valence3():
    sources = [
        {"path": "demo:synthetic-faces", "weight": 1},
        {"path": "demo:synthetic-scenes", "label_column": "emotion", "weight": 1},
        {"path": "demo:synthetic-valence", "weight": 1},
    ]
    dd, report = load_affective_mixture(sources, "valence3")
    assert set(report["sources"]) == {"synthetic-faces", "synthetic-scenes", "synthetic-valence"}
    assert set(dd["train"]["source"]) == set(report["sources"])
    assert report["sources"]["synthetic-scenes"]["mapping"]["awe"] == "positive"
    modes = {
        name: datasets.load_dataset("imagefolder", data_dir=str(ensure_demo() / name), split="test")[0][
            "image"
        ].mode
        for name in ("synthetic-faces", "synthetic-scenes", "synthetic-valence")
    }
    assert modes == {"synthetic-faces": "L", "synthetic-scenes": "RGB", "synthetic-valence": "P"}
