"""FER+ as released (microsoft/FERPlus): `fer2013new.csv`'s votes joined to `fer2013.csv`'s pixels by row,
labelled by the release's rules in its three modes, and trained on through stage 1. Both files are written
by the tests, in the release's exact formats, with votes chosen to hit every rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_run_safety import recipe

from emoreg_hf.balance import balanced_weights, class_counts
from emoreg_hf.data import Collator, LoaderTransform, load_affective_mixture, load_target_dataset
from emoreg_hf.data.ferplus import DISTRIBUTION, FERPLUS_EMOTIONS, HEADER, outcome

# Ten vote counts: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF.
VOTES = {
    "happy": [0, 8, 1, 0, 0, 0, 0, 0, 1, 0],  # 8 of 8 counted votes after the single votes go: happiness
    "tie": [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # no majority; soft: 0.5 / 0.5 (argmax: neutral, the first)
    "contempt": [2, 0, 0, 0, 0, 0, 0, 6, 2, 0],  # majority contempt; soft: 0.25 neutral, 0.75 contempt
    "three": [4, 3, 3, 0, 0, 0, 0, 0, 0, 0],  # no majority (4 of 10); soft: 0.4 / 0.3 / 0.3
    "noise": [1, 1, 1, 1, 1, 1, 1, 0, 3, 0],  # single votes are noise: only `unknown` is left
    "not_face": [0, 0, 0, 0, 0, 0, 0, 0, 0, 10],
    "four": [3, 3, 3, 3, 0, 0, 0, 0, 0, 0],  # soft: four emotions tie at the top, more than 3: unknown
    "some_contempt": [6, 0, 0, 0, 0, 0, 0, 3, 0, 0],  # soft: 2/3 neutral, 1/3 contempt
}
# (Usage, image name, votes) per row, in file order; the empty name is a face FER+ dropped.
ROWS = [
    ("Training", "happy"),
    ("Training", "tie"),
    ("Training", "contempt"),
    ("Training", "not_face"),
    ("Training", "noise"),
    ("Training", "three"),
    ("Training", "happy"),
    ("Training", "four"),
    ("Training", None),
    ("PublicTest", "happy"),
    ("PublicTest", "tie"),
    ("PublicTest", "contempt"),
    ("PrivateTest", "contempt"),
    ("PrivateTest", "not_face"),
    ("PrivateTest", "happy"),
]


def write_ferplus(root: Path, rows=ROWS, votes_usage=None) -> tuple[dict, list[np.ndarray]]:
    """fer2013.csv (emotion, pixels, Usage) and fer2013new.csv (Usage, Image name, ten counts) in one order;
    `votes_usage` overrides the votes file's Usage of some rows. Returns the spec and every row's pixels."""
    rng = np.random.default_rng(0)
    pixels = []
    with (
        open(root / "fer2013.csv", "w", newline="") as fer,
        open(root / "fer2013new.csv", "w", newline="") as new,
    ):
        fer_rows, new_rows = csv.writer(fer), csv.writer(new)
        fer_rows.writerow(["emotion", "pixels", "Usage"])
        new_rows.writerow(HEADER)
        for row, (usage, kind) in enumerate(rows):
            pixels.append(rng.integers(0, 256, (48, 48), dtype=np.uint8))
            fer_rows.writerow([row % 7, " ".join(map(str, pixels[-1].ravel())), usage])
            name = f"fer{row:07d}.png" if kind else ""
            counts = VOTES[kind] if kind else VOTES["not_face"]
            new_rows.writerow([(votes_usage or {}).get(row, usage), name, *counts])
    spec = {
        "preset": "ferplus",
        "data_files": str(root / "fer2013.csv"),
        "votes": str(root / "fer2013new.csv"),
    }
    return spec, pixels


def distribution(**shares) -> list[float]:
    return [shares.get(name, 0.0) for name in FERPLUS_EMOTIONS]


def test_the_release_rules_vote_by_vote():
    index = FERPLUS_EMOTIONS.index
    assert outcome(VOTES["happy"], "majority") == (index("happiness"), distribution(happiness=1.0))
    assert outcome(VOTES["contempt"], "majority") == (index("contempt"), distribution(contempt=1.0))
    for kind in ("tie", "three", "noise"):  # no emotion has more than half the votes: unknown
        assert outcome(VOTES[kind], "majority") == (8, None)
    assert outcome(VOTES["not_face"], "majority") == (9, None)
    assert outcome(VOTES["tie"], "crossentropy") == (0, distribution(neutral=0.5, happiness=0.5))
    assert outcome(VOTES["contempt"], "probability") == (7, distribution(neutral=0.25, contempt=0.75))
    np.testing.assert_allclose(
        outcome(VOTES["three"], "crossentropy")[1], distribution(neutral=0.4, happiness=0.3, surprise=0.3)
    )
    assert outcome(VOTES["noise"], "crossentropy") == (8, None)
    assert outcome(VOTES["four"], "probability") == (8, None)  # four emotions: more than 3, discarded
    assert outcome(VOTES["not_face"], "crossentropy") == (9, None)
    assert outcome([0] * 10, "majority") == (8, None)  # no vote left at all


def test_ferplus_joins_votes_by_row_with_each_mode_and_counts_what_it_drops(tmp_path):
    spec, pixels = write_ferplus(tmp_path)
    kept = {}
    for mode in ("majority", "probability", "crossentropy"):
        splits, report = load_affective_mixture([{**spec, "label_mode": mode}], "ferplus8", seed=0)
        votes = report["sources"]["ferplus"]["votes"]
        assert votes["label_mode"] == mode and votes["evaluation_mode"] == "majority"
        train = votes["splits"]["train"]
        assert train["rows_read"] == 9 and train["no_image"] == 1 and train["not_face"] == 1
        assert train["kept"] == len(splits["train"]) == train["kept_by_mode"][mode]
        kept[mode] = len(splits["train"])
        # validation and test are read by majority in every mode, as the release reads them
        assert votes["splits"]["validation"] == {
            "rows_read": 3, "kept": 2, "no_image": 0, "unknown": 1, "not_face": 0,
            "kept_by_mode": {"majority": 2, "probability": 3, "crossentropy": 3}, "repeated_name": 0,
        }  # fmt: skip
        assert votes["splits"]["test"]["not_face"] == 1 and len(splits["test"]) == 2
        assert DISTRIBUTION not in splits["validation"].column_names + splits["test"].column_names
        names = splits["test"].features["label"].names
        assert names == list(FERPLUS_EMOTIONS)
        assert [names[y] for y in splits["test"]["label"]] == ["contempt", "happiness"]
        # joined by row: the test faces are the pixels of rows 12 and 14 of fer2013.csv
        faces = [np.asarray(image.convert("L")) for image in splits["test"]["image"]]
        assert np.array_equal(faces[0], pixels[12]) and np.array_equal(faces[1], pixels[14])
    # majority keeps happy, contempt, happy; the soft modes add tie and three (noise: unknown, four: > 3)
    assert kept == {"majority": 3, "probability": 5, "crossentropy": 5}
    assert report["sources"]["ferplus"]["votes"]["splits"]["train"]["unknown"] == 2
    rows = {
        tuple(round(p, 3) for p in d): y
        for d, y in zip(splits["train"][DISTRIBUTION], splits["train"]["label"])
    }
    assert rows[tuple(distribution(neutral=0.5, happiness=0.5))] == 0  # a tie's hard label: its first class
    assert rows[tuple(distribution(neutral=0.25, contempt=0.75))] == FERPLUS_EMOTIONS.index("contempt")
    soft = report["sources"]["ferplus"]["soft_class_counts"]["train"]
    assert soft["happiness"] == pytest.approx(2.8) and soft["contempt"] == pytest.approx(0.75)


def test_an_image_name_given_twice_keeps_both_rows_and_is_counted(tmp_path):
    """fer2013new.csv as released names a few images twice; each row keeps its own pixels and votes."""
    spec, _ = write_ferplus(tmp_path)
    votes = Path(spec["votes"])
    votes.write_text(votes.read_text().replace("fer0000006.png", "fer0000000.png"))
    splits, report = load_affective_mixture([spec], "ferplus8", seed=0)
    train = report["sources"]["ferplus"]["votes"]["splits"]["train"]
    assert train["repeated_name"] == 2 and train["kept"] == len(splits["train"]) == 3


def test_soft_targets_are_summed_onto_a_coarser_taxonomy_and_an_unmapped_share_is_refused(tmp_path):
    spec, _ = write_ferplus(tmp_path)
    splits, _ = load_affective_mixture([{**spec, "label_mode": "crossentropy"}], "valence3", seed=0)
    names = splits["train"].features["label"].names
    targets = {tuple(round(p, 3) for p in d) for d in splits["train"][DISTRIBUTION]}
    contempt = [0.0] * 3
    contempt[names.index("neutral")], contempt[names.index("negative")] = 0.25, 0.75
    assert tuple(contempt) in targets  # neutral 0.25 + contempt (negative) 0.75
    rows = [
        ("Training", "happy"),
        ("Training", "some_contempt"),
        ("PublicTest", "happy"),
        ("PrivateTest", "happy"),
    ]
    spec, _ = write_ferplus(tmp_path, rows=rows)
    with pytest.raises(ValueError, match=r"split 'train', row 1: its soft target gives 'contempt' a share"):
        load_affective_mixture(
            [{**spec, "label_mode": "probability", "drop_unmapped": True}], "ekman7", seed=0
        )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"votes_usage": {4: "PublicTest"}}, r"row 4: Usage is 'Training' in the FER-2013 file but 'PublicTest' in .*fer2013new\.csv \(line 6\)"),
        ({"rows": ROWS[:-1]}, r"fer2013new\.csv has 14 rows of votes but the FER-2013 file has 15 rows"),
    ],
)  # fmt: skip
def test_the_two_files_must_agree_row_by_row(tmp_path, change, message):
    if "rows" in change:  # a votes file one row short: write the full pair, then drop the votes' last line
        spec, _ = write_ferplus(tmp_path)
        votes = Path(spec["votes"])
        votes.write_text("".join(votes.read_text().splitlines(keepends=True)[:-1]))
    else:
        spec, _ = write_ferplus(tmp_path, **change)
    with pytest.raises(ValueError, match=message):
        load_affective_mixture([spec], "ferplus8", seed=0)


def test_bad_votes_and_modes_are_refused_naming_what_is_wrong(tmp_path):
    spec, _ = write_ferplus(tmp_path)
    with pytest.raises(
        ValueError, match=r"label_mode must be one of \['majority', 'probability', 'crossentropy'\]"
    ):
        load_affective_mixture([{**spec, "label_mode": "soft"}], "ferplus8")
    with pytest.raises(ValueError, match=r"source 'fer': label_mode needs `votes`"):
        load_affective_mixture([{"path": "csv", "source": "fer", "label_mode": "majority"}], "ferplus8")
    with pytest.raises(
        ValueError, match=r"with `votes` the labels are FER\+'s .* not 'emotion'; use `preset: ferplus`"
    ):
        load_affective_mixture([{**spec, "preset": "fer2013"}], "ferplus8")
    votes = Path(spec["votes"])
    lines = votes.read_text().splitlines()
    votes.write_text("\n".join([lines[0], "Training,fer0000000.png,0,8,1,0,0,0,0,0,x,0", *lines[2:]]))
    with pytest.raises(ValueError, match=r"row 0 \(line 2\), column 'unknown': 'x' is not a vote count"):
        load_affective_mixture([spec], "ferplus8")
    votes.write_text("Usage,Image name,neutral\n")
    with pytest.raises(ValueError, match=r"the header must be Usage,Image name,neutral,happiness"):
        load_affective_mixture([spec], "ferplus8")
    with pytest.raises(ValueError, match=r"a target data set needs `label_mode: majority`"):
        load_target_dataset({**spec, "label_mode": "crossentropy"})


def _examples(targets: list[list[float]]) -> list[dict]:
    return [
        {
            "pixel_values": torch.zeros(3, 4, 4, dtype=torch.uint8),
            "labels": int(np.argmax(t)),
            DISTRIBUTION: t,
        }
        for t in targets
    ]


def test_the_collator_gives_distributions_or_draws_a_class_per_sighting():
    face = Image.fromarray(np.zeros((8, 8), dtype=np.uint8))
    loaded = LoaderTransform(8, train=True)(
        {"image": [face], "label": [2], DISTRIBUTION: [[0.0, 0.25, 0.75]]}
    )
    assert loaded[DISTRIBUTION] == [[0.0, 0.25, 0.75]]  # the loader hands a training row's target on
    targets = [[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]] * 200
    soft = Collator(num_classes=3)(_examples(targets))["labels"]
    assert soft.dtype == torch.float32 and torch.equal(soft, torch.tensor(targets))
    draw = Collator(num_classes=3, draw_targets=True)
    torch.manual_seed(0)
    first = draw(_examples(targets))["labels"]
    second = draw(_examples(targets))["labels"]
    torch.manual_seed(0)
    again = draw(_examples(targets))["labels"]
    assert first.dtype == torch.int64 and torch.equal(first, again)  # seeded: the run's seed decides
    assert not torch.equal(first, second)  # a fresh draw each time a face is seen
    assert set(first[1::2].tolist()) == {0} and set(first[0::2].tolist()) == {1, 2}
    assert 0.6 < (first[0::2] == 2).float().mean() < 0.9  # drawn as the votes say (0.75)
    mixed = Collator(num_classes=3, mixup_alpha=0.4)(_examples(targets[:2]))["labels"]
    np.testing.assert_allclose(mixed.sum(-1), 1.0, rtol=1e-6)  # mixup blends the distributions


def test_class_weighting_counts_each_class_by_its_share_of_the_targets(tmp_path):
    spec, _ = write_ferplus(tmp_path)
    splits, _ = load_affective_mixture([{**spec, "label_mode": "crossentropy"}], "ferplus8", seed=0)
    counts = class_counts(splits["train"], 8)
    assert counts.sum() == pytest.approx(5) and counts[FERPLUS_EMOTIONS.index("surprise")] == pytest.approx(
        0.3
    )
    weights = balanced_weights(counts)
    assert weights[FERPLUS_EMOTIONS.index("sadness")] == 0  # never a target: weight 0
    assert weights[FERPLUS_EMOTIONS.index("surprise")] == pytest.approx(5 / (4 * 0.3))


TINY_STAGE1 = [
    "--taxonomy", "ferplus8",
    "--model_config", "{model_type: resnet, embedding_size: 8, hidden_sizes: [8], depths: [1], layer_type: basic}",
    "--image_size", "32", "--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--report_to", "none",
    "--dataloader_num_workers", "0",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["majority", "probability", "crossentropy"])
def test_stage1_trains_on_ferplus_in_each_label_mode(tmp_path, mode):
    spec, _ = write_ferplus(tmp_path)
    out = tmp_path / "run"
    code, _, err = recipe(
        "pretrain.py", "--affective_sources", json.dumps([{**spec, "label_mode": mode}]), "--output_dir", out,
        *TINY_STAGE1, "--class_weighting", "balanced", "--label_smoothing_factor", "0.1", "--seed", "3",
    )  # fmt: skip
    assert code == 0, err[-3000:]
    record = json.loads((out / "run_info.json").read_text())
    report = json.loads((out / "data_report.json").read_text())["sources"]["ferplus"]["votes"]
    assert report["label_mode"] == mode
    assert record["results"]["train_samples"] == report["splits"]["train"]["kept"]
    assert record["results"]["test_rows_before_cap"] == 2 and 0 <= record["results"]["test_accuracy"] <= 1
    dropped = {
        "ferplus_no_image": 1,
        "ferplus_not_face": 1,
        "ferplus_unknown": 4 if mode == "majority" else 2,
    }
    assert record["datasets"][0]["rows_dropped"]["train"] == dropped  # the card says them
    card = (out / "README.md").read_text()
    assert "1 train row(s) voted not a face by FER+'s annotators" in card
    counts = record["class_balance"]["train_counts"]
    assert sum(counts.values()) == pytest.approx(report["splits"]["train"]["kept"])
    assert (counts["surprise"] == pytest.approx(0.3)) == (mode != "majority")  # soft counts in soft modes


@pytest.mark.slow
def test_probability_mode_draws_the_same_targets_under_the_same_seed(tmp_path):
    spec, _ = write_ferplus(tmp_path)
    losses = []
    for run in ("a", "b"):
        code, _, err = recipe(
            "pretrain.py", "--affective_sources", json.dumps([{**spec, "label_mode": "probability"}]),
            "--output_dir", tmp_path / run, *TINY_STAGE1, "--seed", "5", "--logging_steps", "1",
        )  # fmt: skip
        assert code == 0, err[-3000:]
        history = json.loads((tmp_path / run / "trainer_state.json").read_text())["log_history"]
        losses.append([entry["loss"] for entry in history if "loss" in entry])
    assert len(losses[0]) > 1 and losses[0] == losses[1]
