"""A study's reference model cards: each card as `recipes/push.py` would put it on the Hub for the study's
runs, rendered from the study's `records/` alone (the run folders, with their weights, are not needed).

For every stage-2 method of the matrix one card over all its seeds, and for every stage-1 variant one card
over its seeds, written to `<cards_dir>/<study>/<stage>/<name>/README.md` with the plots it links. A stage-2
card compares its method (push's `--compare`) with what the study ran of: the baseline (every row of the
report is measured against it), the registry's expected comparisons of the method (for EmoReg the
unregulated methods and the emotion controls, so the card's "Not attached" line names only what the study
did not run) and the control the report pairs with it (or, for a control, the arm it controls).
The project's published studies keep theirs in `model_cards/reference/` (`make results`)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import ModelCard

from .. import registry
from ..publish.card import CARD_NAME, build_model_card, write_model_card
from ..publish.plots import PLOTS_DIR, plot_paths
from ..publish.runs import RunFolder, load_run_folder
from .records import RECORDS, STUDY_FILE, load_study
from .summary import collect_records

STAGES = ("finetune", "pretrain")
# The namespace the reference cards name (a card needs a repo id: its title and its usage code read it).
REFERENCE_OWNER = "your-org"


class NoRecordsError(FileNotFoundError):
    """The study keeps no `records/`, so its runs' cards cannot be rendered without running it again."""


def repo_id(study: str, stage: str, name: str) -> str:
    """The Hub id a reference card names: `your-org/emoreg-<study>-<name>` (stage 1: `...-stage1-<name>`)."""
    parts = ["emoreg", study, *(["stage1"] if stage == "pretrain" else []), name]
    return f"{REFERENCE_OWNER}/" + "-".join(parts).replace("_", "-")


def study_runs(study_dir: str | Path) -> dict[str, dict[str, list[RunFolder]]]:
    """`{"finetune": {method: [RunFolder per seed]}, "pretrain": {variant: [...]}}` of the study's records, in
    the order of the matrix; each record folder read once. Raises `NoRecordsError` for a study without
    records and `FileNotFoundError` naming the fix for records without the predictions file a card draws."""
    root = Path(study_dir)
    if not (root / RECORDS / STUDY_FILE).is_file():
        raise NoRecordsError(
            f"{root} keeps no {RECORDS}/{STUDY_FILE}, so it has no reference cards: a card is rendered from "
            "its runs' records, which this study does not keep; where its run folders are, its own command "
            "(recipes/ablate.py CONFIG ...) skips the finished runs and writes them, else only running the "
            "study again does."
        )
    config, _ = load_study(root)
    collected = collect_records(root, config.methods, config.seeds, config.stage1_seeds)
    runs: dict[str, dict[str, list[RunFolder]]] = {}
    for stage in STAGES:
        for name, seeds in collected[stage].items():
            folders = []
            for seed in seeds:
                folder = root / RECORDS / stage / name / f"seed{seed}"
                try:
                    folders.append(load_run_folder(folder))
                except FileNotFoundError as error:
                    raise FileNotFoundError(
                        f"{error} The records of {root} predate the predictions file in records/ (what a card's "
                        "confusion matrix and ρ plots draw): run the study's command again where its run "
                        "folders are (it skips finished runs and copies their records again)."
                    ) from None
            runs.setdefault(stage, {})[name] = folders
    return runs


def compared_with(name: str, runs: dict[str, list[RunFolder]]) -> list[str]:
    """The study's other stage-2 entries the card of `name` compares with (the module's docstring says why)."""
    pairs = set(registry.control_pairs())
    expected = registry.expected_comparisons(runs[name][0].method)
    out = []
    for other, folders in runs.items():
        first = folders[0]
        if other != name and (
            other == registry.REFERENCE_ARM
            or (name, other) in pairs
            or (other, name) in pairs
            or any(kind.matches(first.method, first.record.controls) for kind in expected)
        ):
            out.append(other)
    return out


def _cards(study_dir: str | Path):
    """(stage, name, runs, comparison runs, repo id) of each reference card of the study."""
    study = Path(study_dir).resolve().name
    runs = study_runs(study_dir)
    for stage, names in runs.items():
        for name, folders in names.items():
            others = compared_with(name, names) if stage == "finetune" else []
            compare = [run for other in others for run in names[other]]
            yield stage, name, folders, compare, repo_id(study, stage, name)


def render_reference_cards(study_dir: str | Path) -> dict[str, ModelCard]:
    """The study's reference cards, rendered without drawing their plots (the card links what `make_plots`
    would draw): `{"<stage>/<name>": ModelCard}`. What the test of the shipped cards compares."""
    return {
        f"{stage}/{name}": build_model_card(
            folders, repo_id=repo, plots=plot_paths(folders[0]), compare_dirs=compare
        )
        for stage, name, folders, compare, repo in _cards(study_dir)
    }


def _ours(folder: Path) -> bool:
    """A folder holding only a card and its plots (what `write_reference_cards` writes)."""
    files = [p.relative_to(folder) for p in folder.rglob("*") if p.is_file()]
    return all(f == Path(CARD_NAME) or (f.parent == Path(PLOTS_DIR) and f.suffix == ".png") for f in files)


def write_reference_cards(
    study_dir: str | Path, cards_dir: str | Path, *, log: Callable[[str], None] | None = None
) -> list[Path]:
    """Write the study's reference cards (README.md and the plots it links) to
    `<cards_dir>/<study>/<stage>/<name>/`; a card of a method or variant the records no longer hold is
    removed (only folders holding nothing but a card and its plots). Returns the README paths."""
    target = Path(cards_dir) / Path(study_dir).resolve().name
    written = []
    for stage, name, folders, compare, repo in _cards(study_dir):
        out = target / stage / name
        out.mkdir(parents=True, exist_ok=True)
        written.append(write_model_card(folders, out, repo_id=repo, compare_dirs=compare))
    for folder in sorted(target.glob("*/*")):
        if folder.is_dir() and folder / CARD_NAME not in written and _ours(folder):
            shutil.rmtree(folder)
            if log:
                log(f"cards: removed {folder} (no longer in the records)")
    if log:
        log(f"cards: {len(written)} reference cards of {Path(study_dir)} in {target}")
    return written
