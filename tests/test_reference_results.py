"""The published studies' reports and reference cards are current: each `benchmarks/results/<study>/` renders,
with today's code and template, exactly the `results.md` it ships (from its `results.json`), a study that keeps
its runs' records (`records/`, written by recipes/ablate.py) renders exactly its `results.json` from them, and
exactly the README.md of each of its reference cards in `model_cards/reference/<study>/`. A change meant to
change them regenerates them with `python recipes/ablate.py --report benchmarks/results/<study> --cards
model_cards/reference` (every study: `make results`). The cards' PNGs are not compared: matplotlib does not
draw byte-identical files across its versions and platforms; that each plot a card links is there is checked."""

from __future__ import annotations

import difflib
import shutil

import pytest
from demo_runs import ROOT

from emoreg_hf import ablation
from emoreg_hf.ablation.cards import render_reference_cards
from emoreg_hf.ablation.records import RECORDS, STUDY_FILE

RESULTS = ROOT / "benchmarks" / "results"
STUDIES = sorted(path.parent for path in RESULTS.glob("*/results.json"))
WITH_RECORDS = [study for study in STUDIES if (study / RECORDS / STUDY_FILE).is_file()]
CARDS = ROOT / "model_cards" / "reference"


def test_the_published_studies_are_found():
    assert {study.name for study in STUDIES} >= {"real_small", "fer_full_cifar10"}


@pytest.mark.parametrize("study", STUDIES, ids=lambda path: path.name)
def test_the_shipped_report_is_what_today_renders(study, tmp_path):
    shutil.copy(
        study / "results.json", tmp_path / "results.json"
    )  # rendered elsewhere: the shipped one stays
    if (study / RECORDS).is_dir():
        shutil.copytree(study / RECORDS, tmp_path / RECORDS)
    ablation.render_report(tmp_path)
    for name in ("results.json", "results.md"):
        shipped, rendered = (study / name).read_text(), (tmp_path / name).read_text()
        diff = difflib.unified_diff(shipped.splitlines(True), rendered.splitlines(True), "shipped", "today")
        assert rendered == shipped, (
            f"{study.relative_to(ROOT)}/{name} is not what today's code renders; if the change is meant, "
            f"regenerate it: python recipes/ablate.py --report {study.relative_to(ROOT)} (a results.json without "
            "its 'study' block predates records/: rerun the study's own ablate.py command, which skips its "
            "finished runs and writes records/ and the report)\n" + "".join(list(diff)[:60])
        )


@pytest.mark.parametrize("study", WITH_RECORDS, ids=lambda path: path.name)
def test_the_shipped_reference_cards_are_what_today_renders(study):
    regenerate = (
        f"regenerate them: python recipes/ablate.py --report {study.relative_to(ROOT)} --cards "
        "model_cards/reference (every study: make results)"
    )
    rendered = render_reference_cards(study)
    shipped = {
        p.parent.relative_to(CARDS / study.name).as_posix()
        for p in (CARDS / study.name).glob("*/*/README.md")
    }
    assert shipped == set(rendered), (
        f"model_cards/reference/{study.name} holds other cards than its records give; {regenerate}"
    )
    for key, card in rendered.items():
        folder = CARDS / study.name / key
        text = (folder / "README.md").read_text(encoding="utf-8")
        diff = difflib.unified_diff(text.splitlines(True), str(card).splitlines(True), "shipped", "today")
        assert str(card) == text, (
            f"{folder.relative_to(ROOT)}/README.md is not what today's code renders; {regenerate}\n"
            + "".join(list(diff)[:60])
        )
        for line in text.splitlines():
            if line.startswith("![") and "](plots/" in line:
                assert (folder / line.split("](")[1].rstrip(")")).is_file(), (
                    f"{folder}: {line} is missing; {regenerate}"
                )


def test_reference_cards_are_shipped_for_the_studies_with_records_and_the_readme_says_which():
    """Cards only where records are (a card from anything else could not be checked), and model_cards/README.md
    names every published study, so a reader learns why one has no cards."""
    kept = {path.name for path in CARDS.iterdir() if path.is_dir()} if CARDS.is_dir() else set()
    assert kept == {study.name for study in WITH_RECORDS}
    readme = (ROOT / "model_cards" / "README.md").read_text(encoding="utf-8")
    for study in STUDIES:
        assert f"`{study.name}`" in readme, (
            f"model_cards/README.md does not say whether {study.name} has cards"
        )
