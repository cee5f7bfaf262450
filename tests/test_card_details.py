"""What a card states besides the results: the licence (from the data, or given), the framework versions the
run used, a Reproduce line that runs (placeholders for local paths, never bare names), display rounding
with exact model-index values."""

from __future__ import annotations

import pytest
from records import finetune_record, results, write_run

from emoreg_hf.publish import load_run_folder
from emoreg_hf.publish.card import build_model_card
from emoreg_hf.publish.scrub import runnable_command
from emoreg_hf.run_record import DatasetRecord, framework_versions

ROOT_RECIPE = "recipes/finetune.py"


def card(tmp_path, name="run", **changes) -> str:
    return str(build_model_card(load_run_folder(write_run(tmp_path / name, finetune_record(**changes)))))


def test_licence_from_the_data_when_known_else_other_with_a_note(tmp_path):
    cifar = card(tmp_path, "cifar")
    assert "\nlicense: other\n" in cifar
    assert (
        "**Licence `other`.** These weights were trained on cifar10, whose terms emoreg-hf does not" in cifar
    )
    demo = card(
        tmp_path,
        "demo",
        synthetic_data=True,
        datasets=[DatasetRecord("demo:synthetic-target", "demo", {"train": 10})],
    )
    assert "\nlicense: apache-2.0\n" in demo and "Licence `other`" not in demo
    run = load_run_folder(write_run(tmp_path / "given", finetune_record()))
    given = str(build_model_card(run, license="mit"))
    assert "\nlicense: mit\n" in given and "Licence `other`" not in given


def test_framework_versions_are_the_runs_own(tmp_path):
    versions = framework_versions()
    assert {"python", "torch", "transformers", "datasets", "accelerate"} <= set(versions)
    text = card(tmp_path, framework_versions={"python": "3.11.9", "torch": "2.9.0", "transformers": "5.24.0"})
    assert (
        "## Framework versions\n\n- emoreg-hf 0.1.0\n- Python 3.11.9\n- PyTorch 2.9.0\n- Transformers 5.24.0\n"
        in text
    )
    assert "- emoreg-hf 0.1.0\n\n(the run recorded no other versions" in card(
        tmp_path, "old"
    )  # a record from before the field existed


def test_reproduce_keeps_placeholders_for_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a working directory outside the checkout changes nothing
    from emoreg_hf.publish.scrub import local_roots

    checkout = next(r for r in local_roots() if (r / "recipes").is_dir())
    command = (
        f"accelerate launch {checkout / ROOT_RECIPE} /home/me/configs/fer.yaml --dataset "
        "'{preset: fer2013, data_files: /data/raw/fer2013.csv}' --affect_model_name_or_path "
        f"{checkout / 'outputs/pretrain'} --output_dir /scratch/me/run --hub_token hf_abcdefghijklmnopqrstuvwx"
    )
    shown = runnable_command(command)
    assert shown == (
        f"accelerate launch {ROOT_RECIPE} /path/to/fer.yaml --dataset '{{preset: fer2013, data_files: "
        "/path/to/fer2013.csv}' --affect_model_name_or_path outputs/pretrain --output_dir /path/to/run "
        "--hub_token <redacted>"
    )
    text = card(tmp_path, command=command)
    assert shown in text and "data_files: fer2013.csv" not in text


def test_values_rounded_for_display_exact_in_the_model_index(tmp_path):
    exact = results(0.8999999999999999)
    hyper = {"learning_rate": 0.1 + 0.2, "num_train_epochs": 3.0, "seed": 0, "global_batch_size": 64}
    text = card(tmp_path, results=exact, hyperparameters=hyper)
    assert "| `learning_rate` | `0.3` |" in text and "0.30000000000000004" not in text.split("---", 2)[2]
    assert "value: 0.8999999999999999" in text  # model-index: exact
    assert "| test | 0.9000 |" in text
    assert "| epochs run | 3.00 |" in text


@pytest.mark.slow
def test_push_license_and_the_runs_record(demo_runs, tmp_path):
    import json

    from emoreg_hf.publish import push_to_hub

    record = json.loads((demo_runs.finetune / "run_info.json").read_text())
    assert record["framework_versions"]["transformers"] and record["results"]["epoch"] == pytest.approx(1.0)
    push_to_hub([demo_runs.finetune], "org/emoreg-demo", export_dir=tmp_path / "export", license="mit")
    readme = (tmp_path / "export" / "README.md").read_text()
    assert "\nlicense: mit\n" in readme and "| epochs run | 1.00 |" in readme
    assert "- Transformers " in readme


def test_the_card_names_the_taxonomy_also_from_a_record_that_nested_it(tmp_path):
    """Stage 1 writes `emotion_taxonomy` as {name, names}; stage-2 records of 2026-11-30 and before nested that
    whole mapping as the taxonomy's name, and the card printed it as a dict."""
    from records import EMOTIONS

    from emoreg_hf.taxonomy import taxonomy_name

    nested = {"name": {"name": "valence3", "names": EMOTIONS}, "names": EMOTIONS}
    for taxonomy in (nested, {"name": "valence3", "names": EMOTIONS}):
        text = card(tmp_path, f"t{len(str(taxonomy))}", taxonomy=taxonomy)
        assert "`valence3` taxonomy" in text and "{'name'" not in text
    assert (
        taxonomy_name({"name": "ekman7", "names": ["joy"]}) == "ekman7"
        and taxonomy_name("ekman7") == "ekman7"
    )
