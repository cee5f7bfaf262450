"""The card templates have one home, the top-level `model_cards/`, and travel in the wheel as package data:
a wheel built from the project renders cards in a process that never sees the checkout."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from demo_runs import ROOT
from records import finetune_record, write_run

from emoreg_hf import templates


def test_the_checkout_reads_the_templates_from_model_cards():
    assert templates.template_dir() == ROOT / "model_cards"
    for name in templates.TEMPLATES:
        assert (ROOT / "model_cards" / name).is_file()
    # one home: no copy of a template inside the package's sources
    assert not [p for name in templates.TEMPLATES for p in (ROOT / "emoreg_hf").rglob(name)]


@pytest.mark.slow
def test_a_wheel_carries_the_templates_and_renders_a_card(tmp_path):
    """Build the wheel (no network: no build isolation, no dependencies), unpack it and render a card in a
    fresh process whose only emoreg_hf is the unpacked wheel."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("emoreg_hf", "model_cards"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
        + [str(source)],
        check=True,
        env=env,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("emoreg_hf-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in templates.TEMPLATES:
        assert f"emoreg_hf/model_cards/{name}" in names
    assert "emoreg_hf/model_cards/README.md" not in names  # the folder's own README is not a template
    assert not any(n.startswith("model_cards/") for n in names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    run = write_run(tmp_path / "run", finetune_record())
    script = (
        "import json, sys\n"
        "import emoreg_hf, emoreg_hf.templates\n"
        "from emoreg_hf.publish import build_model_card\n"
        "card = build_model_card([sys.argv[1]], repo_id='org/emoreg-test')\n"
        "print(json.dumps({'package': emoreg_hf.__file__, 'templates': str(emoreg_hf.templates.template_dir()),"
        " 'card': str(card)}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(run)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(site)},
        check=True,
        capture_output=True,
        text=True,
    )
    rendered = json.loads(out.stdout.strip().splitlines()[-1])
    assert rendered["package"].startswith(str(site))
    assert rendered["templates"] == str(site / "emoreg_hf" / "model_cards")
    assert "## Method, with this checkpoint's settings" in rendered["card"]
    assert "org/emoreg-test" in rendered["card"]
