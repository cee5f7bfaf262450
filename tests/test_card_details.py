"""What a card states besides the results: the licence (from the data, or given), the framework versions the
run used, a Reproduce line that runs (placeholders for local paths, never bare names), display rounding
with exact model-index values."""

from __future__ import annotations

import socket

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


def test_the_card_says_when_and_on_what_the_run_trained_only_when_recorded(tmp_path):
    machine = {"cpu_model": "AMD EPYC 7B13", "cpu_capability": "AVX2", "torch_threads": 4, "gpu": None}
    text = card(
        tmp_path,
        started="2026-12-07T10:00:00Z",
        finished="2026-12-07T10:05:00Z",
        resumed_from_step=5,
        machine={**machine, "world_size": 2},
    )
    assert (
        "\nTrained from 2026-12-07T10:00:00Z to 2026-12-07T10:05:00Z (resumed from step 5) on AMD EPYC 7B13 "
        "(torch CPU capability AVX2, 4 threads), no GPU, 2 processes.\n"
    ) in text
    assert "\nTrained " not in card(tmp_path, "older")  # a record without them: the line is left out


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
    assert record["started"] <= record["finished"] and record["finished"].endswith("Z")
    assert isinstance(record["machine"]["cpu_capability"], str) and record["machine"]["world_size"] == 1
    push_to_hub([demo_runs.finetune], "org/emoreg-demo", export_dir=tmp_path / "export", license="mit")
    readme = (tmp_path / "export" / "README.md").read_text()
    assert "\nlicense: mit\n" in readme and "| epochs run | 1.00 |" in readme
    assert "- Transformers " in readme and f"\nTrained from {record['started']} to " in readme
    assert socket.gethostname() not in readme


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


def stage1_card(tmp_path, name, **changes) -> str:
    from records import pretrain_record

    return str(build_model_card(load_run_folder(write_run(tmp_path / name, pretrain_record(**changes)))))


def test_a_cap_is_a_subsample_only_when_it_dropped_rows(tmp_path):
    """`--max_train_samples` as large as the split ("28709 of 28,709") is no subsample; the rows before the
    caps are recorded (`<split>_rows_before_cap`); an old record that cannot tell says so."""
    capped = {"max_train_samples": 900, "max_eval_samples": 100}
    kept_all = {**results(0.6, None), "train_samples": 900, "train_rows_before_cap": 900}
    kept_all |= {"validation_rows_before_cap": 100, "test_rows_before_cap": 120}
    text = stage1_card(tmp_path, "all", config=capped, results=kept_all)
    assert "Subsampled" not in text and "capped" not in text
    dropped = kept_all | {"train_rows_before_cap": 5000, "test_rows_before_cap": 300}
    text = stage1_card(tmp_path, "some", config=capped, results=dropped)
    assert (
        "Subsampled run: training used a class-stratified sample of 900 of the 5000 training images "
        "(`--max_train_samples 900`). Evaluation was capped at 100 images per split (`--max_eval_samples`): "
        "test 120 of 300." in text
    )
    old = stage1_card(tmp_path, "old", config=capped, results={**results(0.6, None), "train_samples": 900})
    assert "Subsampled" not in old
    assert "and used 900; this run's record does not say whether the training split had more" in old
    fewer = stage1_card(tmp_path, "fewer", config={"max_train_samples": 5000}, results=results(0.6, None))
    assert "Subsampled" not in fewer and "capped" not in fewer  # 900 rows used < 5000: nothing dropped


def test_the_stage1_snippet_trusts_remote_code_only_where_the_checkpoint_ships_it(tmp_path):
    ships = stage1_card(tmp_path, "small", models={"architecture": "small_resnet"})  # records only: by type
    assert 'model="path/to/this/folder",\n    trust_remote_code=True,\n)' in ships
    assert "`small_resnet` model carries its own code" in ships
    plain = stage1_card(tmp_path, "vit")
    assert "trust_remote_code" not in plain
    folder = write_run(tmp_path / "with_config", __import__("records").pretrain_record())
    (folder / "config.json").write_text('{"model_type": "resnet", "auto_map": {"AutoConfig": "x.Y"}}')
    assert "trust_remote_code=True" in str(build_model_card(load_run_folder(folder)))  # its config decides


def test_a_run_folders_own_card_is_titled_after_its_model_and_loads_a_placeholder(tmp_path):
    text = card(tmp_path, "finetune")
    assert "\n# emoreg (adaptive, concat) · google/vit-base-patch16-224-in21k · CIFAR-10\n" in text
    assert "your-org" not in text and "# finetune\n" not in text
    assert (
        'repo = "path/to/this/folder"  # where this run folder is (or the Hub repo id it was pushed to)'
        in text
    )
    negative = results(0.6) | {"test_reliance_permuted": -0.0004, "test_reliance_mean": 0.0012}
    text = card(tmp_path, "neg", results=negative)
    assert "Its answers gain 0.04 points of accuracy when h_A and e(x) are permuted" in text
    assert "and lose 0.12 points when they are replaced by their mean" in text and "lose -" not in text


def test_the_mechanism_table_shows_each_part_and_is_left_out_for_older_records(tmp_path):
    """h_A alone, e(x) alone and each response alone get their own table; a record evaluated before these
    figures existed renders the regulation section as before, without it."""
    text = card(tmp_path, "new")
    heading = "| Split | h_A permuted (pp) | e(x) permuted (pp) | h_A mean (pp) | e(x) mean (pp) | z_N alone accuracy |"
    assert heading in text and "| test | 0.21 | 1.07 | -0.03 | 0.39 | 0.5500 | 0.5900 |" in text
    assert "with adaptive regulation ρ is recomputed from it too" in text
    older = {k: v for k, v in results(0.6).items() if not k.endswith(("_affect", "_emotion", "_emotional"))}
    assert len(older) == len(results(0.6)) - 12
    old = card(tmp_path, "old", results=older)
    assert "| test | 0.4000 | 0.1000 | 0.9000 | 1.23 | 0.45 |" in old
    assert "h_A permuted" not in old and "z_N alone" not in old and "e(x) is changed" not in old


def test_stage1_controls_describe_their_own_classes(tmp_path):
    """A k-means or positive-control stage 1 is not an emotion recogniser; one source is not a mixture."""
    clusters = ["cluster 1", "cluster 2", "cluster 3"]
    report = {
        "sources": {
            "fer2013": {"class_counts": {"train": {"negative": 500, "neutral": 300, "positive": 100}}}
        },
        "mixture": {"train_rows": 900},
        "kmeans_labels": {
            "features": "16x16 px grayscale, standardised",
            "train": {
                "cramers_v": 0.066,
                "mutual_information": 0.0129,
                "information_share": 0.0071,
                "sizes": [400, 350, 150],
            },
        },
    }
    kmeans = stage1_card(
        tmp_path,
        "kmeans",
        label_names=clusters,
        taxonomy={"name": "k-means clusters of the valence3 images (non-emotion control)", "names": clusters},
        controls={"shuffle_labels": False, "kmeans_labels": True, "target_dataset": False},
        data_report=report,
    )
    assert "recognises the 3 emotions" not in kmeans and "Images per emotion" not in kmeans
    assert "sorts images into the 3 clusters of `k-means clusters of the valence3 images" in kmeans
    assert "| Cluster | all sources | total |\n|---|---:|---:|\n| cluster 1 | 400 | 400 |" in kmeans
    assert "Cramér's V\n0.066" in kmeans and "Use it only as the non-emotion control" in kmeans
    assert "This checkpoint is the non-emotion control." in kmeans
    classes = ["cat", "dog"]
    target = stage1_card(
        tmp_path,
        "target",
        label_names=classes,
        taxonomy={"name": "cifar10 classes (positive control)", "names": classes},
        controls={"shuffle_labels": False, "kmeans_labels": False, "target_dataset": True},
        data_report={"sources": {"cifar10": {"class_counts_train": {"cat": 40, "dog": 60}}}},
    )
    assert "recognises the 2 emotions" not in target and "Use it only as\n> the positive control" in target
    assert "recognises the 2 classes of the target task (cat, dog)" in target
    assert "| Class | cifar10 | total |" in target and "| dog | 60 | 60 |" in target
    assert "Data report (per source, per class)" not in target
    normal = stage1_card(tmp_path, "normal")
    assert "from one affective image set, FER-2013, its labels" in normal and "a mixture" not in normal
    assert "Emotion recognition on the held-out part of FER-2013." in normal


def test_cards_point_at_the_non_emotion_control_and_a_control_is_not_missing_from_its_own_card(tmp_path):
    alone = card(tmp_path, "alone")
    assert (
        "If EmoReg\ndoes not beat the non-emotion control, a gain cannot be attributed to emotion." in alone
    )
    assert "If EmoReg does not beat the shuffled-emotion control" not in alone
    assert "is a diagnostic that usually learns nothing" in " ".join(stage1_card(tmp_path, "s1").split())
    flags = {"no_pretraining": False, "shuffled_emotion": False, "kmeans_labels": True}
    kmeans = write_run(tmp_path / "kmeans", finetune_record(controls=flags))
    baseline = write_run(tmp_path / "baseline", finetune_record(method="baseline"))
    text = str(build_model_card(load_run_folder(kmeans), compare_dirs=[baseline]))
    missing = text.split("Not attached to this card: ")[1].split("\n")[0]
    assert "non-emotion (k-means) control" not in missing and "attributed to emotion" not in missing
    assert "trained on 3 k-means clusters of its images instead of emotions" in text
    emoreg = write_run(tmp_path / "emoreg", finetune_record())
    text = str(build_model_card(load_run_folder(emoreg), compare_dirs=[baseline]))
    assert "Without the non-emotion (k-means) control, a gain cannot be attributed to emotion." in text
