import hashlib
import json
from collections import Counter

import datasets
import numpy as np
import pytest
from data_fixtures import *  # noqa: F403
from data_fixtures import CIFAR10_NAMES, MIKELS_NAMES, png_bytes

from emoreg_hf.data import SourceSpec, load_affective_mixture, load_target_dataset
from emoreg_hf.taxonomy import UnmappedLabelError

FEATURES = ["image", "label", "source"]


def _fer(fer_dir, **kw):
    return {"path": "imagefolder", "data_dir": str(fer_dir), "source": "fer", **kw}


def _mikels(mikels_dir, **kw):
    return {"path": str(mikels_dir), "label_column": "emotion", "source": "mikels", **kw}


def test_cifar10_preset_schema_and_splits(cifar10_dir):
    ds = load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir)}, validation_split_size=0.2)
    assert set(ds) == {"train", "validation", "test"}
    assert ds["train"].column_names == FEATURES
    assert ds["train"].features["label"].names == CIFAR10_NAMES
    assert (len(ds["train"]), len(ds["validation"]), len(ds["test"])) == (40, 10, 20)
    assert sorted(ds["validation"]["label"]) == list(range(10))  # stratified: one per class
    row = ds["test"][0]
    assert row["image"].mode == "RGB" and row["image"].size == (32, 32) and row["source"] == "cifar10"


def test_cifar100_fine_and_coarse(cifar100_dir):
    fine = load_target_dataset({"preset": "cifar100", "path": str(cifar100_dir)})
    assert fine["train"].features["label"].names[:2] == ["fine_00", "fine_01"]
    assert fine["train"].features["label"].num_classes == 100 and len(fine["test"]) == 20
    coarse = load_target_dataset(
        {"preset": "cifar100", "path": str(cifar100_dir), "label_column": "coarse_label"}
    )
    assert coarse["train"].features["label"].num_classes == 20
    assert max(coarse["test"]["label"]) < 20


def test_target_errors_name_source_and_column(cifar10_dir):
    with pytest.raises(
        ValueError,
        match=r"source 'cifar10': label_column 'fine_label' not found; columns are \['img', 'label'\]",
    ):
        load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir), "label_column": "fine_label"})
    with pytest.raises(ValueError, match="unknown key"):
        load_target_dataset({"path": str(cifar10_dir), "lable_column": "label"})


def test_fer_folder_maps_onto_ekman7_and_valence(fer_dir):
    dd, report = load_affective_mixture([_fer(fer_dir)], "ekman7", validation_split_size=1 / 6)
    train = dd["train"]
    assert train.column_names == FEATURES and train.features["label"].names[0] == "anger"
    assert train[0]["image"].mode == "RGB" and train[0]["image"].size == (48, 48)  # grayscale -> RGB
    counts = report["sources"]["fer"]["class_counts"]
    assert counts["train"]["anger"] == 5 and counts["validation"]["happiness"] == 1
    assert report["sources"]["fer"]["mapping"]["happy"] == "happiness"
    _, report = load_affective_mixture([_fer(fer_dir)], "valence3")
    assert (
        report["mixture"]["train_class_counts"]["negative"]
        > report["mixture"]["train_class_counts"]["positive"]
    )


def test_emotion_column_source_and_unmapped_error(mikels_dir, fer_dir):
    dd, report = load_affective_mixture([_mikels(mikels_dir)], "mikels8")
    assert dd["train"].features["label"].names == MIKELS_NAMES
    assert sum(report["mixture"]["train_class_counts"].values()) + len(dd["validation"]) == 48
    with pytest.raises(UnmappedLabelError) as info:
        load_affective_mixture([_mikels(mikels_dir), _fer(fer_dir)], "mikels8")
    assert (
        "source 'fer'" in str(info.value) and "'happy'" in str(info.value) and "'neutral'" in str(info.value)
    )
    with pytest.raises(
        ValueError,
        match=r"source 'mikels': label_column 'label' not found; columns are \['image', 'emotion'\]",
    ):
        load_affective_mixture([_mikels(mikels_dir, label_column="label")], "mikels8")
    dd, report = load_affective_mixture([_fer(fer_dir, drop_unmapped=True)], "mikels8")
    assert report["sources"]["fer"]["splits"]["train"]["unmapped_dropped"] == 3 * 6


def test_mixture_proportions_follow_weights(fer_dir, mikels_dir, tmp_path):
    sources = [_fer(fer_dir, weight=3.0), _mikels(mikels_dir, weight=1.0)]
    dd, report = load_affective_mixture(sources, "valence3", seed=0, report_path=tmp_path / "r.json")
    per_source = Counter(dd["train"]["source"])
    share = per_source["fer"] / sum(per_source.values())
    assert abs(share - 0.75) < 0.08, per_source
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert report["mixture"]["train_per_source"] == dict(sorted(per_source.items()))
    again, _ = load_affective_mixture(sources, "valence3", seed=0)
    assert again["train"]["source"][:] == dd["train"]["source"][:]  # seeded


def test_streaming_source_same_columns(fer_dir, mikels_dir):
    dd, report = load_affective_mixture(
        [_fer(fer_dir, streaming=True, weight=1), _mikels(mikels_dir, weight=1)],
        "valence3",
        validation_split_size=5,
    )
    assert isinstance(dd["train"], datasets.IterableDataset)
    assert list(dd["train"].features) == FEATURES
    rows = list(dd["train"].take(12))
    assert {r["source"] for r in rows} == {"fer", "mikels"}
    assert all(r["image"].mode == "RGB" and r["label"] in (0, 1, 2) for r in rows)
    assert report["sources"]["fer"]["validation"] == 5 and len(dd["validation"]) == 5 + 5


def _labels_by_image(ds):
    plain = ds.cast_column("image", datasets.Image(decode=False))
    return {
        hashlib.md5(r["image"]["bytes"] or open(r["image"]["path"], "rb").read()).hexdigest(): r["label"]
        for r in plain
    }


def test_shuffle_labels_keeps_counts_changes_assignments(fer_dir):
    plain, _ = load_affective_mixture([_fer(fer_dir)], "ekman7")
    shuffled, _ = load_affective_mixture([_fer(fer_dir)], "ekman7", shuffle_labels=True)
    a = {**_labels_by_image(plain["train"]), **_labels_by_image(plain["validation"])}
    b = {**_labels_by_image(shuffled["train"]), **_labels_by_image(shuffled["validation"])}
    assert a.keys() == b.keys() and Counter(a.values()) == Counter(b.values())
    assert np.mean([a[k] == b[k] for k in a]) < 0.5


@pytest.fixture
def broken_dir(tmp_path):
    rng = np.random.default_rng(4)
    for label in ("happy", "sad"):
        (tmp_path / "train" / label).mkdir(parents=True)
        for i in range(5):
            (tmp_path / "train" / label / f"{i}.jpg").write_bytes(png_bytes(rng, 40, "RGB", "JPEG"))
    good = (tmp_path / "train" / "sad" / "0.jpg").read_bytes()
    (tmp_path / "train" / "happy" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "train" / "sad" / "empty.jpg").write_bytes(b"")
    return tmp_path


def test_bad_images_error_policy_names_source_split_row(broken_dir):
    spec = {"path": "imagefolder", "data_dir": str(broken_dir), "source": "broken"}
    with pytest.raises(
        ValueError, match=r"source 'broken', split 'train', row \d+: unreadable image"
    ) as info:
        load_affective_mixture([spec], "valence3")
    assert "truncated.jpg" in str(info.value) or "empty.jpg" in str(info.value)


def test_bad_images_skip_policy_counts(broken_dir):
    spec = {"path": "imagefolder", "data_dir": str(broken_dir), "source": "broken"}
    dd, report = load_affective_mixture([spec], "valence3", on_bad_image="skip", validation_split_size=2)
    assert report["sources"]["broken"]["splits"]["train"]["bad_images"] == 2
    assert len(dd["train"]) + len(dd["validation"]) == 10
    target = load_target_dataset(spec, on_bad_image="skip", validation_split_size=2)
    assert target.load_report["train"]["bad_images"] == 2 and len(target["train"]) == 8
    assert target["train"].features["label"].names == ["happy", "sad"]


def test_source_spec_from_dict():
    spec = SourceSpec.from_any({"path": "imagefolder", "data_dir": "/x/fer2013", "weight": 2})
    assert spec.display_name == "fer2013" and spec.weight == 2
    assert SourceSpec.from_any("uoft-cs/cifar10").display_name == "uoft-cs/cifar10"
