import hashlib
import json
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from data_fixtures import *  # noqa: F403
from data_fixtures import CIFAR10_NAMES, MIKELS_NAMES, png_bytes, write_parquet

from emoreg_hf.data import SourceSpec, load_affective_mixture, load_target_dataset
from emoreg_hf.data.schema import STREAM_FEATURES
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
    assert fine["train"].column_names == FEATURES
    assert fine["train"].features["label"].names == [f"fine_{i:02d}" for i in range(100)]
    assert len(fine["test"]) == 20 and fine["test"][0]["image"].mode == "RGB"
    coarse = load_target_dataset(
        {"preset": "cifar100", "path": str(cifar100_dir), "label_column": "coarse_label"}
    )
    assert coarse["train"].column_names == FEATURES
    assert coarse["train"].features["label"].names == [f"coarse_{i:02d}" for i in range(20)]
    # the same rows, labelled by the other column (the fixture's coarse label is fine // 5)
    assert coarse["test"]["label"][:] == [f // 5 for f in fine["test"]["label"][:]]


def test_target_errors_name_source_and_column(cifar10_dir):
    with pytest.raises(
        ValueError,
        match=r"source 'cifar10': label_column 'fine_label' not found; columns are \['img', 'label'\]",
    ):
        load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir), "label_column": "fine_label"})
    with pytest.raises(
        ValueError, match=r"source 'cifar10': image_column 'image' not found; columns are \['img', 'label'\]"
    ):
        load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir), "image_column": "image"})
    with pytest.raises(ValueError, match=r"source 'cifar10': image column 'label' holds ClassLabel"):
        load_target_dataset({"preset": "cifar10", "path": str(cifar10_dir), "image_column": "label"})
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
    message = str(info.value)
    assert "source 'fer'" in message and "taxonomy 'mikels8'" in message
    assert "'happy'" in message and "'neutral'" in message and "'surprise'" in message
    assert info.value.source == "fer" and info.value.taxonomy == "mikels8"
    with pytest.raises(
        ValueError,
        match=r"source 'mikels': label_column 'label' not found; columns are \['image', 'emotion'\]",
    ):
        load_affective_mixture([_mikels(mikels_dir, label_column="label")], "mikels8")
    dd, report = load_affective_mixture([_fer(fer_dir, drop_unmapped=True)], "mikels8")
    assert report["sources"]["fer"]["splits"]["train"]["unmapped_dropped"] == 3 * 6


def test_emotion_column_source_maps_onto_valence3_and_ekman7(mikels_dir):
    dd, report = load_affective_mixture([_mikels(mikels_dir)], "valence3", validation_split_size=8)
    assert dd["train"].features["label"].names == ["negative", "neutral", "positive"]
    mapping = report["sources"]["mikels"]["mapping"]
    assert mapping["amusement"] == mapping["awe"] == "positive" and mapping["fear"] == "negative"
    counts = report["mixture"]["train_class_counts"]
    assert counts["neutral"] == 0 and counts["positive"] + counts["negative"] == 40
    # ekman7 has no amusement/awe/...: map them explicitly and drop the rest
    label_map = {"amusement": "happiness", "contentment": "happiness", "excitement": "happiness"}
    dd, report = load_affective_mixture(
        [_mikels(mikels_dir, label_map=label_map, drop_unmapped=True)], "ekman7", validation_split_size=6
    )
    assert report["sources"]["mikels"]["mapping"]["awe"] is None
    assert report["sources"]["mikels"]["splits"]["train"]["unmapped_dropped"] == 6
    assert set(report["mixture"]["train_class_counts"]) == set(dd["train"].features["label"].names)
    assert report["mixture"]["train_class_counts"]["surprise"] == 0


def test_mixture_proportions_follow_weights(fer_dir, mikels_dir, tmp_path, caplog):
    sources = [_fer(fer_dir, weight=3.0), _mikels(mikels_dir, weight=1.0)]
    with caplog.at_level("INFO", logger="emoreg_hf.data.mixture"):
        dd, report = load_affective_mixture(sources, "valence3", seed=0, report_path=tmp_path / "r.json")
    assert "source 'fer': 37 train / 5 validation rows; train classes {'negative': " in caplog.text
    per_source = Counter(dd["train"]["source"])
    share = per_source["fer"] / sum(per_source.values())
    assert abs(share - 0.75) < 0.08, per_source
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert report["mixture"]["train_per_source"] == dict(sorted(per_source.items()))
    again, _ = load_affective_mixture(sources, "valence3", seed=0)
    assert again["train"]["source"][:] == dd["train"]["source"][:]  # seeded


def test_streaming_source_rows_for_the_loader(fer_dir, mikels_dir):
    """A streamed training split carries encoded images, mapped class ids and the source (the loader
    decodes them after the split by rank: tests/test_streaming.py); evaluation splits are map-style."""
    dd, report = load_affective_mixture(
        [_fer(fer_dir, streaming=True, weight=1), _mikels(mikels_dir, weight=1)],
        "valence3",
        validation_split_size=5,
    )
    assert isinstance(dd["train"], datasets.IterableDataset)
    assert dd["train"].features == STREAM_FEATURES
    rows = list(dd["train"].take(12))
    assert {r["source"] for r in rows} == {"fer", "mikels"}
    assert all(isinstance(r["image"]["bytes"] or r["image"]["path"], (bytes, str)) for r in rows)
    assert all(r["label"] in (0, 1, 2) for r in rows)
    assert report["sources"]["fer"]["validation"] == 5 and len(dd["validation"]) == 5 + 5
    assert report["sources"]["fer"]["validation_from"] == "first examples of the stream"
    mapped, _ = load_affective_mixture([_fer(fer_dir), _mikels(mikels_dir)], "valence3")
    assert dd["validation"].features == mapped["validation"].features
    assert set(dd) == {"train", "validation", "test"}  # the streamed source's test split, read into memory
    # a streamed source without a ClassLabel column is mapped as labels arrive
    dd, _ = load_affective_mixture([_mikels(mikels_dir, streaming=True)], "valence3", validation_split_size=4)
    rows = list(dd["train"].take(8))
    assert list(rows[0]) == FEATURES and {r["source"] for r in rows} == {"mikels"}
    assert {r["label"] for r in rows} <= {0, 1, 2}


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


def test_a_sources_test_split_is_kept_with_its_true_labels(fer_dir):
    """FER-2013's held-out faces become stage 1's test split; the shuffled control keeps their true labels,
    so its test accuracy says how much real emotion it learned (chance, if the control works)."""
    plain, report = load_affective_mixture([_fer(fer_dir)], "ekman7")
    shuffled, _ = load_affective_mixture([_fer(fer_dir)], "ekman7", shuffle_labels=True)
    assert set(plain) == {"train", "validation", "test"} and len(plain["test"]) == 14
    assert report["sources"]["fer"]["test"] == 14 and report["mixture"]["test_rows"] == 14
    assert _labels_by_image(plain["test"]) == _labels_by_image(shuffled["test"])


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


@pytest.mark.parametrize("bad_file", ["truncated.jpg", "empty.jpg"])
def test_bad_images_error_policy_names_source_split_row(broken_dir, bad_file):
    other = {"truncated.jpg": "sad/empty.jpg", "empty.jpg": "happy/truncated.jpg"}[bad_file]
    (broken_dir / "train" / other).unlink()  # one bad file at a time
    spec = {"path": "imagefolder", "data_dir": str(broken_dir), "source": "broken"}
    for load in (lambda: load_affective_mixture([spec], "valence3"), lambda: load_target_dataset(spec)):
        with pytest.raises(
            ValueError, match=r"source 'broken', split 'train', row \d+: unreadable image"
        ) as info:
            load()
        assert bad_file in str(info.value) and "on_bad_image: skip" in str(info.value)
        if bad_file == "empty.jpg":
            assert "0 bytes" in str(info.value)


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


EXAMPLE_YAML = Path(__file__).resolve().parents[1] / "recipes" / "examples" / "affective_mixture.yaml"


def test_example_yaml_four_schemas_one_weighted_stream(fer_dir, tmp_path):
    """recipes/examples/affective_mixture.yaml, as written, on tiny stand-ins for its four layouts."""
    rng = np.random.default_rng(5)
    root = tmp_path / "affect"
    root.mkdir()
    (root / "fer2013").symlink_to(fer_dir)  # train/<adjective>/*.jpg, grayscale
    for emotion in MIKELS_NAMES:  # FI: <emotion>/*.jpg, no split folders
        (root / "FI" / "emotion_dataset" / emotion).mkdir(parents=True)
        for i in range(3):
            (root / "FI" / "emotion_dataset" / emotion / f"{i}.jpg").write_bytes(
                png_bytes(rng, 96, fmt="JPEG")
            )
    features = datasets.Features(
        {"image": datasets.Image(), "emotion": datasets.Value("string"), "arousal": datasets.Value("float32")}
    )
    for split, n in (("train", 24), ("val", 8)):  # EmoSet: parquet, own validation split
        emotions = [MIKELS_NAMES[i % 8] for i in range(n)]
        cols = {"image": [{"bytes": png_bytes(rng, 64), "path": None} for _ in emotions], "emotion": emotions}
        write_parquet(root / "emoset" / f"{split}-00000.parquet", {**cols, "arousal": [0.5] * n}, features)
    (root / "oasis").mkdir()  # OASIS: flat folder + metadata.csv with a valence_bin column
    rows = ["file_name,valence_bin,valence_mean"]
    for i in range(30):
        (root / "oasis" / f"I{i}.jpg").write_bytes(png_bytes(rng, 80, fmt="JPEG"))
        rows.append(f"I{i}.jpg,{('low', 'mid', 'high')[i % 3]},4.0")
    (root / "oasis" / "metadata.csv").write_text("\n".join(rows) + "\n")

    config = yaml.safe_load(EXAMPLE_YAML.read_text().replace("/data/affect", str(root)))
    assert set(config) == {"taxonomy", "affective_sources"} and len(config["affective_sources"]) == 4
    dd, report = load_affective_mixture(config["affective_sources"], config["taxonomy"], seed=0)
    assert list(dd["train"].features) == FEATURES and dd["train"].features["label"].names == [
        "negative", "neutral", "positive",
    ]  # fmt: skip
    assert set(dd["train"]["source"]) == set(report["sources"]) == {"fer2013", "fi", "emoset", "oasis"}
    assert report["sources"]["fer2013"]["mapping"]["surprise"] == "positive"  # its label_map
    assert report["sources"]["oasis"]["mapping"] == {"high": "positive", "low": "negative", "mid": "neutral"}
    assert report["sources"]["emoset"]["validation_from"] == "validation"  # its own split (data_files)
    assert report["mixture"]["probabilities"]["fi"] == 2 * report["mixture"]["probabilities"]["fer2013"]
    assert {dd["train"][i]["image"].mode for i in range(0, len(dd["train"]), 7)} == {"RGB"}


def _files_without_rows(tmp_path: Path) -> dict:
    """Three ways a data file holds no rows: 0 bytes, a CSV header alone, a parquet split of 0 rows."""
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "header.csv").write_text("emotion,pixels,Usage\n")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rng = np.random.default_rng(0)
    images = [{"bytes": png_bytes(rng, 8), "path": None} for _ in range(4)]
    write_parquet(tmp_path / "pq" / "train.parquet", {"image": images, "label": [0, 1, 0, 1]}, features)
    write_parquet(tmp_path / "pq" / "test.parquet", {"image": [], "label": []}, features)
    return {
        "empty": ({"path": "csv", "data_files": str(tmp_path / "empty.csv"), "source": "faces"}, "train", "empty.csv", "an empty file, 0 bytes"),
        "header": ({"preset": "fer2013", "data_files": str(tmp_path / "header.csv")}, "train", "header.csv", "a header and no row"),
        "parquet": ({"path": "parquet", "data_dir": str(tmp_path / "pq"), "source": "pq"}, "test", "pq/test.parquet", "a parquet file of 0 rows"),
    }  # fmt: skip


@pytest.mark.parametrize("case", ["empty", "header", "parquet"])
def test_a_data_file_without_rows_is_named(tmp_path, case):
    """It was a traceback (0 bytes) or "Instruction 'train' corresponds to no data!", naming no file."""
    spec, split, file, why = _files_without_rows(tmp_path)[case]
    name = spec.get("source", "fer2013")
    message = f"source '{name}', split '{split}': {tmp_path / file} has no rows ({why})"
    with pytest.raises(ValueError) as refused:
        load_target_dataset(spec)
    assert message in str(refused.value)
    if case == "header":  # stage 1 reads a source through the same loader
        with pytest.raises(ValueError, match="has no rows"):
            load_affective_mixture([spec], "ekman7")


def test_an_empty_csv_target_exits_2_without_a_traceback(tmp_path):
    from test_run_safety import BASELINE, recipe, snapshot

    spec = _files_without_rows(tmp_path)["empty"][0]
    before, run = snapshot(tmp_path), tmp_path / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", json.dumps(spec), "--output_dir", run)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert f"finetune.py: error: source 'faces', split 'train': {tmp_path / 'empty.csv'} has no rows" in err
    assert not run.exists() and snapshot(tmp_path) == before


def test_rows_a_data_set_asked_to_drop_are_in_the_run_record_and_on_the_card(tmp_path):
    """`drop_unseen_classes: true` counted the dropped rows in the log only; the record and the card say them."""
    from test_run_safety import BASELINE, image_folder, recipe

    data = image_folder(tmp_path / "photos", {"train": {"cat": 8, "dog": 8}, "test": {"cat": 2, "Dog": 3}})
    spec = {"path": "imagefolder", "data_dir": str(data), "drop_unseen_classes": True}
    loaded = load_target_dataset(spec)
    assert loaded.load_report["test"]["unseen_class_dropped"] == 3
    assert loaded.rows_dropped == {"test": {"class_not_in_train": 3}}
    run = tmp_path / "run"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", json.dumps(spec), "--output_dir", run)
    assert code == 0, err[-2000:]
    record = json.loads((run / "run_info.json").read_text())
    assert record["datasets"][0]["rows_dropped"] == {"test": {"class_not_in_train": 3}}
    assert record["datasets"][0]["split_sizes"]["test"] == 2
    card = (run / "README.md").read_text()
    assert "validation 2 images; left out on loading: 3 test row(s) of a class no training row has " \
        "(drop_unseen_classes)" in card  # fmt: skip


def test_a_random_validation_carve_keeps_a_training_row_of_every_class():
    """Where a class is too rare to stratify (fewer validation rows than classes), the fallback carve must not
    move a class wholly into validation: the model would never see it, while validation and test score it."""
    from emoreg_hf.data.splits import carve_validation

    labels = [c for c in range(40) for _ in range(2)]  # 40 classes, 2 rows each; 8 validation rows
    features = datasets.Features(
        {"label": datasets.ClassLabel(num_classes=40), "row": datasets.Value("int64")}
    )
    ds = datasets.Dataset.from_dict({"label": labels, "row": list(range(len(labels)))}, features=features)
    for seed in range(5):
        train, validation = carve_validation(ds, 0.1, seed, "tiny")
        assert set(train["label"]) == set(range(40)) and len(validation) == 8
        assert sorted([*train["row"], *validation["row"]]) == list(range(80))  # a partition of the rows
    one_each = datasets.Dataset.from_dict(  # nothing can move: every row is its class's only one
        {"label": list(range(10))}, features=datasets.Features({"label": datasets.ClassLabel(num_classes=10)})
    )
    train, validation = carve_validation(one_each, 0.5, 0, "tiny")
    assert len(train) == 10 and len(validation) == 0
