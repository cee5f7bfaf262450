"""A study's reference cards from its records alone (emoreg_hf.ablation.cards), on a study written by hand
(tests/records.py: no training): the records keep the predictions file (compact), a stage-2 card found in the
records names its stage 1 and how to reproduce it, each card is what push renders from the run folders, and
`ablate.py --report STUDY --cards DIR` writes them (a study without records is said to have none)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from records import finetune_record, pretrain_record, write_predictions, write_run

from emoreg_hf import ablation
from emoreg_hf.ablation.cards import (
    NoRecordsError,
    compared_with,
    render_reference_cards,
    repo_id,
    study_runs,
    write_reference_cards,
)
from emoreg_hf.ablation.records import PREDICTION_DECIMALS, RECORDS, store_run
from emoreg_hf.publish import load_run_folder, push_to_hub

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
METHODS = ["baseline", "emoreg_adaptive", "shuffled_emotion"]
STATE = {
    "global_step": 12,
    "log_history": [{"step": s, "loss": 2.0 - 0.1 * s, "eval_accuracy": 0.3 + 0.02 * s} for s in (4, 8, 12)],
    "best_model_checkpoint": None,
}


def _run(root: Path, key: str, record) -> Path:
    """A finished run of the study in `root` as the runner leaves it (folder, predictions, log history)
    and its copy in `root/records/`."""
    folder = root / key
    folder.mkdir(parents=True)
    write_predictions(folder, record)
    write_run(folder, record)
    (folder / "trainer_state.json").write_text(json.dumps({**STATE, "best_model_checkpoint": str(folder)}))
    store_run(folder, key, root)
    return folder


def _study(root: Path) -> Path:
    """A finished 2-seed study: stage 1 normal and shuffled; baseline, EmoReg adaptive and its shuffled control,
    each EmoReg run reading the stage-1 folder of its seed."""
    accuracy = {"baseline": 0.55, "emoreg_adaptive": 0.60, "shuffled_emotion": 0.57}
    for seed in (0, 1):
        for variant, shuffled in (("normal", False), ("shuffled", True)):
            _run(
                root, f"pretrain/{variant}/seed{seed}", pretrain_record(seed, 0.7 - 0.3 * shuffled, shuffled)
            )
        for method in METHODS:
            kind = "baseline" if method == "baseline" else "emoreg"
            record = finetune_record(seed, accuracy[method] + 0.01 * seed, kind)
            record.command = f"python {RECIPES / 'finetune.py'} {root / 'finetune' / method / f'seed{seed}'}/ablation_run.yaml"
            if kind == "emoreg":
                stage1 = str(root / "pretrain" / ("shuffled" if method == "shuffled_emotion" else "normal"))
                stage1 += f"/seed{seed}"
                record.models.update(affect=stage1, affect_path=stage1)
                record.base_models = ["google/vit-base-patch16-224-in21k", stage1]
                record.config["affect_model_name_or_path"] = stage1
                record.controls["shuffled_emotion"] = method == "shuffled_emotion"
            _run(root, f"finetune/{method}/seed{seed}", record)
    config = ablation.load_config(
        {
            "pretrain": {},
            "finetune": {},
            "methods": METHODS,
            "seeds": 2,
            "output_dir": str(root),
            "title": "t",
        }
    )
    ablation.write_report(config, command="python recipes/ablate.py study.yaml")
    return root


@pytest.fixture
def study(tmp_path) -> Path:
    return _study(tmp_path / "outputs" / "study")


def _shipped(study: Path, where: Path) -> Path:
    """The study as the repository ships it: its records only, under another name and elsewhere."""
    shutil.copytree(study / RECORDS, where / RECORDS)
    return where


def test_records_keep_the_predictions_file_compact_and_a_card_reads_it_back(study):
    run, stored = study / "finetune/emoreg_adaptive/seed1", study / RECORDS / "finetune/emoreg_adaptive/seed1"
    original = json.loads((run / "predictions_test.json").read_text())
    text = (stored / "predictions_test.json").read_text()
    assert "\n" not in text.strip() and ", " not in text  # compact separators, one line
    kept = load_run_folder(stored).predictions
    assert kept["labels"] == original["labels"] and kept["predictions"] == original["predictions"]
    assert all(isinstance(v, int) for v in kept["labels"] + kept["predictions"])
    assert kept["regulation"] == [round(r, PREDICTION_DECIMALS) for r in original["regulation"]]
    assert kept["regulation"] != original["regulation"]  # the 5-decimal values were rounded
    stage1 = load_run_folder(study / RECORDS / "pretrain/normal/seed0").predictions
    assert stage1["regulation"] is None and stage1["label_names"] == ["negative", "neutral", "positive"]


def test_a_records_tree_names_stage_1_and_its_command(study, tmp_path):
    cards = render_reference_cards(_shipped(study, tmp_path / "benchmarks" / "renamed"))
    assert sorted(cards) == [
        "finetune/baseline",
        "finetune/emoreg_adaptive",
        "finetune/shuffled_emotion",
        "pretrain/normal",
        "pretrain/shuffled",
    ]
    adaptive, control = str(cards["finetune/emoreg_adaptive"]), str(cards["finetune/shuffled_emotion"])
    assert (
        "# stage 1: the affective pathway (seed0)\npython recipes/pretrain.py fer.yaml --seed 0\n" in adaptive
    )
    assert "python recipes/pretrain.py fer.yaml --seed 0 --shuffle_labels true" in control
    assert "python recipes/finetune.py /path/to/ablation_run.yaml" in adaptive
    assert "![Histogram of ρ](plots/rho_histogram.png)" in adaptive
    assert "rho_histogram" not in str(cards["finetune/baseline"])
    assert "(run once per seed: 0, 1, changing `--seed`)" in adaptive
    assert str(tmp_path) not in "".join(str(card) for card in cards.values())
    per_class = str(cards["pretrain/normal"])  # stage 1's per-class recall, from its predictions file
    assert "| negative |" in per_class and "Confusion matrix over emotions" in per_class


def test_each_card_compares_what_the_study_ran_that_it_needs(study):
    runs = study_runs(study)["finetune"]
    assert compared_with("baseline", runs) == []
    assert compared_with("emoreg_adaptive", runs) == ["baseline", "shuffled_emotion"]
    assert compared_with("shuffled_emotion", runs) == ["baseline", "emoreg_adaptive"]
    card = str(render_reference_cards(study)["finetune/emoreg_adaptive"])
    assert "| baseline | 2 |" in card and "| emoreg (adaptive, concat), shuffled_emotion | 2 |" in card
    assert "Not attached to this card: transfer, no-pretraining control" in card
    assert (
        repo_id("fer_cifar10_fair", "pretrain", "normal") == "your-org/emoreg-fer-cifar10-fair-stage1-normal"
    )


def test_the_reference_card_is_what_push_exports_from_the_run_folders(study, tmp_path):
    import torch
    from safetensors.torch import save_file

    runs = study / "finetune" / "emoreg_adaptive"
    save_file({"weight": torch.zeros(2, 2)}, str(runs / "seed0" / "model.safetensors"))
    compare = [study / "finetune" / m / f"seed{s}" for m in ("baseline", "shuffled_emotion") for s in (0, 1)]
    exported = tmp_path / "export"
    repo = repo_id("study", "finetune", "emoreg_adaptive")
    push_to_hub([runs / "seed0", runs / "seed1"], repo, export_dir=exported, compare_dirs=compare)
    shipped = _shipped(study, tmp_path / "elsewhere" / "study")
    assert (exported / "README.md").read_text() == str(
        render_reference_cards(shipped)["finetune/emoreg_adaptive"]
    )


def test_report_with_cards_writes_each_card_and_its_plots(study, tmp_path, capsys):
    shipped = _shipped(study, tmp_path / "shipped" / "study")
    cards = tmp_path / "cards"
    stale = cards / "study" / "finetune" / "transfer"  # a method the records no longer hold
    (stale / "plots").mkdir(parents=True)
    (stale / "README.md").write_text("old")
    mine = cards / "study" / "notes" / "mine"  # not a card: kept
    mine.mkdir(parents=True)
    (mine / "todo.txt").write_text("keep")
    ablation.main(["--report", str(shipped), "--cards", str(cards)], recipes_dir=RECIPES, default_config="x")
    assert (shipped / "results.md").is_file()
    rendered = render_reference_cards(shipped)
    for key, card in rendered.items():
        folder = cards / "study" / key
        assert (folder / "README.md").read_text() == str(card), key
        linked = {line.split("](")[1].rstrip(")") for line in str(card).splitlines() if line.startswith("![")}
        assert linked and linked == {
            p.relative_to(folder).as_posix() for p in (folder / "plots").glob("*.png")
        }
    assert not stale.exists() and (mine / "todo.txt").is_file()
    assert "cards: 5 reference cards" in capsys.readouterr().out


def test_a_study_without_records_is_said_to_have_no_cards(study, tmp_path, capsys):
    kept = tmp_path / "kept"  # a study that kept its results.json only
    kept.mkdir()
    shutil.copy(study / "results.json", kept)
    with pytest.raises(NoRecordsError, match="keeps no records/study.yaml, so it has no reference cards"):
        write_reference_cards(kept, tmp_path / "cards")
    ablation.main(
        ["--report", str(kept), "--cards", str(tmp_path / "cards")], recipes_dir=RECIPES, default_config="x"
    )
    assert f"cards: none for {kept}: " in capsys.readouterr().out
    assert (kept / "results.md").is_file() and not (tmp_path / "cards").exists()
    with pytest.raises(ValueError, match="--cards needs the folder"):
        ablation.main(["--report", str(kept), "--cards"], recipes_dir=RECIPES, default_config="x")


def test_records_without_predictions_say_how_to_write_them_again(study):
    (study / RECORDS / "finetune/baseline/seed1/predictions_test.json").unlink()
    with pytest.raises(FileNotFoundError, match="predate the predictions file in records/"):
        render_reference_cards(study)


def test_seeds_on_stage_1_runs_of_other_configurations_are_not_averaged(study):
    """Seeds read their own stage-1 run: one card only when those are seeds of one configuration."""
    stage1 = study / RECORDS / "pretrain/normal/seed1/run_info.json"
    record = json.loads(stage1.read_text())
    record["hyperparameters"]["learning_rate"] = 0.1
    stage1.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="differ in affect_model_name_or_path"):
        render_reference_cards(study)


def test_a_study_inside_the_project_finds_stage_1_in_its_records_too(study):
    """The runner's records name a folder inside the project relative to it (`outputs/ablations/...`), not by
    a placeholder: stage 1 is still the record at the same place in records/ (not a run folder of the checkout)."""
    for seed in (0, 1):
        path = study / RECORDS / f"finetune/emoreg_adaptive/seed{seed}/run_info.json"
        record = json.loads(path.read_text())
        inside = f"outputs/ablations/study/pretrain/normal/seed{seed}"
        record["models"].update(affect=inside, affect_path=inside)
        record["config"]["affect_model_name_or_path"] = inside
        path.write_text(json.dumps(record))
    card = str(render_reference_cards(study)["finetune/emoreg_adaptive"])
    assert "# stage 1: the affective pathway (outputs/ablations/study/pretrain/normal/seed0)" in card
    assert "python recipes/pretrain.py fer.yaml --seed 0\n" in card
