"""The published studies' reports are current: each `benchmarks/results/<study>/` renders, with today's code
and template, exactly the `results.md` it ships (from its `results.json`), and a study that keeps its runs'
records (`records/`, written by recipes/ablate.py) renders exactly its `results.json` from them. A change
meant to change them regenerates them with `python recipes/ablate.py --report benchmarks/results/<study>`
(every study: `make results`)."""

from __future__ import annotations

import difflib
import shutil

import pytest
from demo_runs import ROOT

from emoreg_hf import ablation
from emoreg_hf.ablation.records import RECORDS

RESULTS = ROOT / "benchmarks" / "results"
STUDIES = sorted(path.parent for path in RESULTS.glob("*/results.json"))


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
