"""FER-2013 as released (one CSV: `emotion`, `pixels` as space-separated 48x48 grayscale, `Usage`) and any
pixel-string column with a size, read as a source: tiny CSVs written by the tests, in the release's exact
format."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import *  # noqa: F403
from test_run_safety import BASELINE, recipe, snapshot

from emoreg_hf.data import load_affective_mixture, load_target_dataset

FER_CODES = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # emotion 0..6 of the release
USAGE = {"Training": 3, "PublicTest": 2, "PrivateTest": 1}  # rows per class and Usage value


def write_fer_csv(
    path: Path, *, rows=USAGE, header=("emotion", "pixels", "Usage"), rgb=False, bad=None
) -> dict:
    """A FER-2013-format CSV; returns {(usage, emotion): [pixel arrays]} to compare the decoded images with."""
    rng = np.random.default_rng(0)
    written: dict = {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for usage, per_class in rows.items():
            for emotion in range(7):
                for _ in range(per_class):
                    pixels = rng.integers(0, 256, (48, 48, 3) if rgb else (48, 48), dtype=np.uint8)
                    written.setdefault((usage, emotion), []).append(pixels)
                    text = " ".join(map(str, pixels.ravel()))
                    values = {"emotion": emotion, "pixels": text, "Usage": usage}
                    writer.writerow([values[name.strip()] for name in header])
        if bad is not None:
            writer.writerow(bad)
    return written


def test_fer2013_csv_is_a_source_with_the_challenge_splits(tmp_path):
    written = write_fer_csv(tmp_path / "fer2013.csv")
    splits, report = load_affective_mixture(
        [{"preset": "fer2013", "data_files": str(tmp_path / "fer2013.csv")}], "ekman7", seed=0
    )
    assert {name: len(split) for name, split in splits.items()} == {"train": 21, "validation": 14, "test": 7}
    source = report["sources"]["fer2013"]
    assert source["split_column"] == {
        "column": "Usage",
        "rows": {"PrivateTest": 7, "PublicTest": 14, "Training": 21},
        "splits": {"train": ["Training"], "validation": ["PublicTest"], "test": ["PrivateTest"]},
    }
    assert source["validation_from"] == "validation" and source["test"] == 7
    assert source["mapping"] == {  # the release's codes, through its adjectives, onto ekman7
        "0": "anger", "1": "disgust", "2": "fear", "3": "happiness", "4": "sadness", "5": "surprise", "6": "neutral",
    }  # fmt: skip
    assert source["class_counts"]["test"] == {name: 1 for name in splits["test"].features["label"].names}
    happy = splits["test"].features["label"].str2int("happiness")
    row = next(r for r in splits["test"] if r["label"] == happy)
    assert row["image"].size == (48, 48) and row["source"] == "fer2013"
    gray = np.asarray(row["image"].convert("L"))
    assert np.array_equal(gray, written[("PrivateTest", 3)][0])  # the very pixels of the CSV


def test_fer2013_csv_as_a_target_and_a_copy_with_spaces_in_its_header(tmp_path):
    write_fer_csv(tmp_path / "icml_face_data.csv", header=("emotion", " Usage", " pixels"))
    target = load_target_dataset({"preset": "fer2013", "data_files": str(tmp_path / "icml_face_data.csv")})
    assert target["train"].features["label"].names == FER_CODES
    assert (len(target["train"]), len(target["validation"]), len(target["test"])) == (21, 14, 7)
    assert target.split_counts["rows"] == {"PrivateTest": 7, "PublicTest": 14, "Training": 21}


def test_any_pixel_string_column_with_a_size(tmp_path):
    """Not FER: RGB pixel strings in a column of another name, one split column of its own words."""
    rng = np.random.default_rng(1)
    path = tmp_path / "faces.csv"
    images = {}
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["face", "mood", "part"])
        for i in range(12):
            pixels = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
            part = "fit" if i < 8 else "holdout"
            images[i] = pixels
            writer.writerow([" ".join(map(str, pixels.ravel())), ["calm", "tense"][i % 2], part])
    spec = {
        "path": "csv",
        "data_files": str(path),
        "image_column": "face",
        "label_column": "mood",
        "pixels_size": [4, 6],
        "split_column": "part",
        "split_map": {"fit": "train", "holdout": "test"},
    }
    target = load_target_dataset(spec, validation_split_size=0.25, seed=0)
    assert target["train"].features["label"].names == ["calm", "tense"]
    assert len(target["test"]) == 4 and len(target["train"]) + len(target["validation"]) == 8
    first = target["test"][0]["image"]
    assert first.mode == "RGB" and first.size == (6, 4)
    assert any(np.array_equal(np.asarray(first), images[i]) for i in range(8, 12))


@pytest.mark.parametrize(
    "bad_row, spec_change, message",
    [
        (
            [3, "1 2 3", "Training"],
            {},
            r"source 'fer2013', split 'train', row 21, column 'pixels': 3 pixel values, but pixels_size 48x48 needs 2304",
        ),
        (
            [3, " ".join(["300"] * 2304), "PrivateTest"],
            {},
            r"row 7, column 'pixels': pixel values must lie in 0..255, found 300..300",
        ),
        (
            [3, " ".join(["1"] * 2304), "Validation"],
            {},
            r"column 'Usage' has values \['Validation'\] that split_map .* does not name",
        ),
        (
            None,
            {"pixels_size": "big"},
            r"pixels_size must be a size in pixels, 48 or \[height, width\]; got 'big'",
        ),
        (
            None,
            {"split_column": "Use"},
            r"split_column 'Use' not found; columns are \['emotion', 'pixels', 'Usage'\]",
        ),
    ],
)
def test_bad_pixel_strings_and_split_values_are_named(tmp_path, bad_row, spec_change, message):
    write_fer_csv(tmp_path / "fer2013.csv", bad=bad_row)
    with pytest.raises(ValueError, match=message):
        load_affective_mixture(
            [{"preset": "fer2013", "data_files": str(tmp_path / "fer2013.csv"), **spec_change}], "ekman7"
        )


def test_a_code_outside_the_release_is_refused_as_a_target_naming_split_row_and_value(tmp_path):
    """Stage 2 as stage 1: emotion 7 is no FER-2013 class. It was a class "7" of its own, and the run
    exited 0 with a test accuracy of 0; now nothing is loaded further, trained or written."""
    data = tmp_path / "fer2013.csv"
    write_fer_csv(data, bad=[7, " ".join(["1"] * 2304), "Training"])
    before, run = snapshot(tmp_path), tmp_path / "run"
    spec = f"{{preset: fer2013, data_files: {data}}}"
    code, out, err = recipe("finetune.py", *BASELINE, "--dataset", spec, "--output_dir", run)
    assert code == 2 and "Traceback" not in err, err[-2000:]
    assert (
        "source 'fer2013', split 'train', row 21: label '7' was not in the label mapping ['0', '1', " in err
    )
    assert "drop_unmapped: true" in err and not run.exists() and snapshot(tmp_path) == before
    target = load_target_dataset({"preset": "fer2013", "data_files": str(data), "drop_unmapped": True})
    assert target["train"].features["label"].names == FER_CODES  # dropped and counted, no class "7"
    assert target.load_report["train"]["unmapped_dropped"] == 1 and len(target["test"]) == 7


def test_decimal_codes_are_refused_as_a_target(tmp_path):
    """`3.0` for `3` (a copy saved through a float column) made classes '0.0'..'6.0' that no name matched."""
    data = tmp_path / "fer2013.csv"
    write_fer_csv(data)
    header, *rows = data.read_text().splitlines()
    data.write_text("\n".join([header, *(row.replace(",", ".0,", 1) for row in rows)]) + "\n")
    with pytest.raises(ValueError, match=r"split 'train', row 0: label '0\.0' was not in the label mapping "
                       r"\['0', .*\] \(a number with a decimal point: '0\.0' is not the code '0'\)"):  # fmt: skip
        load_target_dataset({"preset": "fer2013", "data_files": str(data)})
