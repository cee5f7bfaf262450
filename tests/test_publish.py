"""Model cards, plots, export and push, on REAL run folders: the `demo_runs` fixture (tests/demo_runs.py) runs
the demo pretrain and finetune recipes, tiny. Tests never change those folders: they write elsewhere or copy.

Push is tested at the `huggingface_hub` boundary with a recording `HfApi` stand-in, with sockets refused.
What needs only a run record (seeds averaged, Hub metadata, the Controls table, the ablation's verdict) is
tested on records written by hand (tests/records.py), in the quick tier; what needs a real run's files (a
leaked token in its record, its weights, plots, export) edits a copy of the demo runs. Cards are checked
through their data (`card_context`) plus one reference rendering of a hand-written record.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from demo_runs import ROOT
from huggingface_hub import EvalResult, ModelCard
from PIL import Image
from records import finetune_record, write_run, write_study_run
from transformers import AutoModelForImageClassification

import emoreg_hf  # noqa: F401  (registers EmoReg with the Auto classes)
from emoreg_hf import ablation, stats
from emoreg_hf.publish import (
    CardExistsError,
    HubCredentialsError,
    HubUnreachableError,
    build_model_card,
    card_context,
    check_export,
    export_for_hub,
    load_run_folder,
    push_from_training_args,
    push_to_hub,
    reported_metrics,
    scrub,
    write_model_card,
)
from emoreg_hf.publish.push import start_push

FAKE_TOKEN = "hf_" + "x" * 34
SPLIT_PREFIX = {"validation": "eval", "test": "test"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FORBIDDEN = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def copy_run(run: Path, dest: Path) -> Path:
    return Path(shutil.copytree(run, dest, ignore=shutil.ignore_patterns("checkpoint-*")))


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def variant(run: Path, dest: Path, *, shift: float = 0.0, info=None) -> Path:
    """A copy of a real run whose metrics are shifted by `shift` and whose run record is edited by `info`."""
    dest = copy_run(run, dest)
    metrics = ("accuracy", "macro_f1", "balanced_accuracy", "top5_accuracy")

    def shifted(results):
        for key, value in results.items():
            if key.startswith(("eval_", "test_")) and key.split("_", 1)[1] in metrics:
                results[key] = value + shift  # may leave [0, 1]: only the arithmetic is tested

    edit_json(dest / "all_results.json", shifted)

    def edit_record(record):
        shifted(record["results"])
        if info is not None:
            info(record)

    edit_json(dest / "run_info.json", edit_record)
    return dest


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def exports(demo_runs, tmp_path_factory):
    """Both demo runs exported as their Hub repos would hold them."""
    root = tmp_path_factory.mktemp("exports")
    return {
        "pretrain": export_for_hub(demo_runs.pretrain, root / "pretrain", repo_id="org/emoreg-demo-affect"),
        "finetune": export_for_hub(demo_runs.finetune, root / "finetune", repo_id="org/emoreg-demo"),
    }


# --------------------------------------------------------------------------------------------- cards


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_card_round_trips_and_model_index_equals_all_results(demo_runs, exports, stage):
    run, folder = getattr(demo_runs, stage), exports[stage]
    card = ModelCard.load(folder / "README.md")
    assert ModelCard(str(card)).data.to_dict() == card.data.to_dict()  # serialised and parsed back unchanged
    data = card.data
    repo = "emoreg-demo-affect" if stage == "pretrain" else "emoreg-demo"
    assert data.model_name == repo  # the model-index name is the repo name
    assert data.library_name == "transformers" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0"
    assert {"emoreg", "emotional-regulation", "synthetic-data"} <= set(data.tags)

    results = json.loads((run / "all_results.json").read_text())
    metrics = reported_metrics(load_run_folder(run))
    assert all(isinstance(r, EvalResult) for r in data.eval_results)
    reported = {f"{SPLIT_PREFIX[r.dataset_split]}_{r.metric_type}": r.metric_value for r in data.eval_results}
    expected = {
        k: v
        for k, v in results.items()
        if k.partition("_")[::2] in {(p, m) for p in ("eval", "test") for m in metrics}
    }
    assert (
        reported == expected and expected
    )  # one EvalResult per split x metric, values as in all_results.json
    assert {r.task_type for r in data.eval_results} == {"image-classification"}
    assert data.metrics == [m for m in metrics if f"eval_{m}" in results]

    text = card.text
    assert "synthetic data" in text and "arXiv:2606.13081" in text and "archivePrefix = {arXiv}" in text
    assert "--seed 7" in text and "--max_train_samples 128" in text  # the reproduce command is the real one
    assert "One run (seed 7)" in text
    for name in ("training_curves", "confusion_matrix"):
        assert f"](plots/{name}.png)" in text
    for name in re.findall(r"\]\((plots/[\w.]+\.png)\)", text):
        assert (folder / name).is_file(), name  # every embedded plot is in the folder

    context = card_context([load_run_folder(run)], repo_id=f"org/{repo}")[1]
    if stage == "pretrain":
        record = load_run_folder(run).record
        assert len(record.label_names) == 3 and "top5_accuracy" not in metrics  # trivially 1.0
        # the demo sources have test splits of their own: stage 1 is scored on them too (true labels)
        assert {r.dataset_split for r in data.eval_results} == {"validation", "test"}
        assert not data.datasets and not data.base_model  # demo sources are not Hub data sets
        report = record.data_report["sources"]
        for source in report:
            assert f"**{source}**" in text
        table = context["data_report"]  # classes x sources, from each source's train counts
        assert table["sources"] == list(report)
        for row in table["rows"]:
            counts = [report[s]["class_counts"]["train"].get(row["name"], 0) for s in report]
            assert row["values"] == counts and row["total"] == sum(counts)
        assert table["total"] == sum(sum(report[s]["class_counts"]["train"].values()) for s in report)
        used = {d.name: d.split_sizes for d in record.datasets}  # rows used after the caps, per source
        assert sum(sizes["train"] for sizes in used.values()) == 128
        assert "How each source's labels were mapped" in text and "id2label=dict(enumerate(classes))" in text
        assert (
            "python recipes/pretrain.py --output_dir /path/to/pretrain" in text
        )  # a local path outside the checkout: a placeholder
    else:
        record = load_run_folder(run).record
        assert {r.dataset_split for r in data.eval_results} == {"validation", "test"}
        assert "top5_accuracy" in metrics  # 10 classes
        emoreg = record.emoreg
        assert r"\rho(x) = \sigma" in text and f"initialised at }} \\approx {emoreg['rho_init']}" in text
        assert f"+ {emoreg['aux_loss_weight']} \\cdot" in text and "**frozen**" in text
        assert "Regulation statistics" in text and "On the test split ρ averaged" in text
        assert "](plots/rho_histogram.png)" in text and "](plots/rho_per_class.png)" in text
        assert "a `resnet` backbone trained from scratch" in text
        # the reproduce section has both stages, stage 1 found through the affective checkpoint's folder
        assert (
            "python recipes/pretrain.py --output_dir /path/to/pretrain" in text
        )  # a local path outside the checkout: a placeholder
        assert "python recipes/finetune.py --output_dir /path/to/finetune" in text
        assert "No control runs were attached" in text


def test_plots_are_valid_pngs(demo_runs, tmp_path):
    written = write_model_card(demo_runs.finetune, tmp_path, repo_id="org/emoreg-demo")
    assert written == tmp_path / "README.md"
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert [p.stem for p in pngs] == ["confusion_matrix", "rho_histogram", "rho_per_class", "training_curves"]
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_several_seeds_give_mean_and_std(tmp_path):
    seed7, seed8 = (
        write_run(tmp_path / f"seed{s}", finetune_record(s, a)) for s, a in ((7, 0.62), (8, 0.60))
    )
    card = build_model_card([seed7, seed8], repo_id="org/x")
    a, b = (json.loads((d / "all_results.json").read_text()) for d in (seed7, seed8))
    test_accuracy = next(
        r for r in card.data.eval_results if r.dataset_split == "test" and r.metric_type == "accuracy"
    )
    assert test_accuracy.metric_value == pytest.approx((a["test_accuracy"] + b["test_accuracy"]) / 2)
    mean, std = (
        np.mean([a["test_accuracy"], b["test_accuracy"]]),
        np.std([a["test_accuracy"], b["test_accuracy"]], ddof=1),
    )
    runs = [load_run_folder(d) for d in (seed7, seed8)]
    context = card_context(runs, repo_id="org/x")[1]
    (test_row,) = [row for row in context["results"]["rows"] if row["split"] == "test"]
    assert test_row["values"][context["results"]["columns"].index("Accuracy")] == f"{mean:.4f} ± {std:.4f}"
    assert context["seeds"] == [7, 8]
    assert "**2 seeds** (7, 8)" in card.text and "mean of 2 seeds" in str(card)

    hyperparameters = {**finetune_record(9).hyperparameters, "learning_rate": 0.1}
    other_lr = write_run(tmp_path / "lr", finetune_record(9, hyperparameters=hyperparameters))
    with pytest.raises(ValueError, match="hyperparameters.learning_rate"):
        build_model_card([seed7, other_lr])
    fixed = write_run(
        tmp_path / "fixed", finetune_record(9, emoreg={**finetune_record().emoreg, "regulation": "fixed"})
    )
    with pytest.raises(ValueError, match="differ in emoreg"):
        build_model_card([seed7, fixed])


def test_hub_backbones_and_dataset_become_metadata(tmp_path):
    """A run on Hub checkpoints and a Hub data set (as with real configs): both base models, the data set id."""
    task, affect = "google/vit-base-patch16-224-in21k", "org/emoreg-vit-affect"
    record = finetune_record()
    assert record.models["task"] == task and record.models["affect"] == affect and not record.synthetic_data
    card = build_model_card(write_run(tmp_path / "run", record), repo_id="org/emoreg-vit-cifar10")
    data = card.data
    assert data.base_model == [task, affect] and data.base_model_relation == "finetune"
    assert data.datasets == ["uoft-cs/cifar10"] and "synthetic-data" not in data.tags
    assert {(r.dataset_type, r.dataset_name) for r in data.eval_results} == {("uoft-cs/cifar10", "CIFAR-10")}
    assert f"[`{affect}`](https://huggingface.co/{affect})" in card.text and "**CIFAR-10**" in card.text
    assert "stage 1: the affective pathway" not in card.text  # stage 1 lives in its own Hub repo
    assert "synthetic data" not in card.text


def with_weights(folder: Path) -> Path:
    """A hand-written run folder with weights, enough for an export."""
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2, 2)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")
    return folder


def test_controls_table_from_compare_dirs(tmp_path, no_network, capsys):
    run = with_weights(write_run(tmp_path / "run", finetune_record(7, 0.6)))
    baselines = [
        write_run(tmp_path / f"baseline{s}", finetune_record(s, 0.6 + 0.1 + 0.01 * s, method="baseline"))
        for s in (7, 8)
    ]
    card = build_model_card(run, repo_id="org/emoreg-demo", compare_dirs=baselines).text
    assert "| emoreg (adaptive, concat) (this checkpoint) | 1 | 0.6000 | – |" in card
    # seed 7 is the only seed both ran: one paired difference, too few for an interval
    assert re.search(
        r"\| baseline \| 2 \| [\d.]+ ± [\d.]+ \| Δ -0\.1700 over 1 paired seed: too few paired seeds", card
    )
    assert "Not attached to this card: transfer, shuffled-emotion control, no-pretraining control" in card
    assert "# the configurations in the Controls table" in card and "--method baseline" in card

    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    argv = [str(run), "--repo_id", "org/emoreg-demo", "--dry_run", "--compare", *map(str, baselines)]
    assert push.main(argv) == 0
    assert "| baseline | 2 |" in capsys.readouterr().out

    stage1 = write_run(tmp_path / "stage1", finetune_record(7, stage="pretrain"))
    with pytest.raises(ValueError, match="same stage"):
        build_model_card(run, compare_dirs=[stage1])


@pytest.mark.parametrize(
    "emoreg, baseline, expected",
    [
        ([0.60, 0.62, 0.61], [0.50, 0.53, 0.51], "higher"),
        ([0.50, 0.51, 0.49], [0.60, 0.62, 0.61], "lower"),
        ([0.60, 0.52, 0.61], [0.55, 0.58, 0.54], "noise"),
    ],
)
def test_card_and_ablation_report_give_the_same_verdict(tmp_path, emoreg, baseline, expected):
    """The same runs, read by the card's Controls table and by the ablation's results.md: one verdict."""
    root = tmp_path / "matrix"
    for seed in range(3):
        for method, accuracy in (("emoreg_adaptive", emoreg[seed]), ("baseline", baseline[seed])):
            key = f"finetune/{method}/seed{seed}"
            record = finetune_record(
                seed, accuracy, method="emoreg" if method == "emoreg_adaptive" else method
            )
            write_study_run(root, key, record)
    config = ablation.load_config(
        {"pretrain": {}, "finetune": {}, "methods": ["baseline", "emoreg_adaptive"], "output_dir": str(root)}
    )
    summary = ablation.write_report(config)
    difference = summary["methods"]["emoreg_adaptive"]["vs_baseline"]
    runs = [load_run_folder(root / "finetune" / "emoreg_adaptive" / f"seed{s}") for s in range(3)]
    compare = [root / "finetune" / "baseline" / f"seed{s}" for s in range(3)]
    row = card_context(runs, repo_id="org/x", compare_dirs=compare)[1]["comparisons"]["rows"][1]
    assert row["verdict"] == difference["verdict"] == expected
    words = stats.difference_words(difference)
    assert row["difference"]["words"] == words and f"**{words}**" in (root / "results.md").read_text()
    assert (row["difference"]["ci_low"], row["difference"]["ci_high"]) == (
        difference["ci_low"],
        difference["ci_high"],
    )  # the same interval, which the card prints
    card = build_model_card(runs, repo_id="org/x", compare_dirs=compare).text
    assert f"{words}: Δ {difference['mean']:+.4f}, 95% CI [{difference['ci_low']:+.4f}" in card


def test_reference_rendering_of_a_card(tmp_path):
    """One full card from a hand-written record, against tests/reference/emoreg_card.md. Rerun with
    EMOREG_UPDATE_REFERENCE=1 after an intended template change, and read the diff."""
    run = write_run(tmp_path / "run", finetune_record(seed=0, accuracy=0.6))
    baselines = [write_run(tmp_path / f"b{s}", finetune_record(s, 0.55, method="baseline")) for s in (0, 1)]
    text = str(build_model_card(run, repo_id="org/emoreg-vit-cifar10", compare_dirs=baselines))
    reference = ROOT / "tests" / "reference" / "emoreg_card.md"
    if os.environ.get("EMOREG_UPDATE_REFERENCE"):
        reference.write_text(text)
    assert text == reference.read_text()


def test_scrub_rewrites_paths_and_drops_secrets(tmp_path):
    data = {
        "hub_token": FAKE_TOKEN,
        "output_dir": str(tmp_path / "run"),
        "command": f"accelerate launch {ROOT / 'recipes/finetune.py'} --output_dir {tmp_path / 'run'}",
        "model": "org/name",
        "url": "https://huggingface.co/org/name",
        "note": f"token {FAKE_TOKEN}",
    }
    clean = scrub(data)
    assert "hub_token" not in clean and clean["output_dir"] == "run"
    assert clean["command"] == "accelerate launch recipes/finetune.py --output_dir run"
    assert (
        clean["model"] == "org/name" and clean["url"] == data["url"] and clean["note"] == "token <redacted>"
    )


# -------------------------------------------------------------------------------------------- export


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_export_holds_only_publishable_files(demo_runs, exports, stage):
    run, folder = getattr(demo_runs, stage), exports[stage]
    left_behind = files_of(run) - files_of(folder)
    assert "training_args.bin" in left_behind and any(f.startswith("checkpoint-") for f in left_behind)
    files = files_of(folder)
    assert {
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "README.md",
        "all_results.json",
    } <= files
    assert {"trainer_state.json", "run_info.json", "plots/training_curves.png"} <= files
    if stage == "finetune":
        assert {
            "configuration_emoreg.py",
            "modeling_emoreg.py",
            "backbones.py",
            "predictions_test.json",
        } <= files
        assert json.loads((folder / "config.json").read_text())["auto_map"]["AutoModelForImageClassification"]
    assert not any(f.endswith(FORBIDDEN) or "checkpoint-" in f or "optimizer" in f for f in files), files
    assert check_export(folder, local_paths=[run]) == []
    local = [str(demo_runs.root), str(ROOT), str(Path.home()) + "/", "/tmp/"]
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".md", ".py"):
            text = path.read_text()
            assert not any(p in text for p in local), (path, [p for p in local if p in text])
            assert not re.search(r"\bhf_[A-Za-z0-9]{20,}", text), path


def test_export_scrubs_tokens_and_check_export_catches_leaks(demo_runs, tmp_path):
    def leak(record):
        record["config"]["hub_token"] = FAKE_TOKEN  # as an older or hand-edited record might hold
        record["command"] += f" --hub_token {FAKE_TOKEN} --logging_dir {Path.home() / 'logs'}"

    run = variant(demo_runs.finetune, tmp_path / "run", info=leak)
    folder = export_for_hub(run, tmp_path / "export", repo_id="org/emoreg-demo")
    for path in folder.rglob("*.*"):
        if path.suffix in (".json", ".md"):
            assert FAKE_TOKEN not in path.read_text() and str(Path.home()) not in path.read_text(), path
    assert "hub_token" not in json.loads((folder / "run_info.json").read_text())["config"]

    (folder / "optimizer.pt").write_bytes(b"x")
    (folder / "notes.json").write_text(json.dumps({"path": "/home/someone/data"}))
    (folder / "secret.md").write_text(f"token {FAKE_TOKEN}")
    problems = "\n".join(check_export(folder))
    assert "optimizer.pt" in problems and "notes.json" in problems and "secret.md" in problems


def test_export_refuses_pickle_only_weights(demo_runs, tmp_path):
    run = copy_run(demo_runs.pretrain, tmp_path / "run")
    (run / "model.safetensors").rename(run / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors weights \(found pytorch_model.bin"):
        export_for_hub(run, tmp_path / "export")


def python_blocks(card: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", card.read_text(), flags=re.S)


def test_export_loads_in_a_fresh_process_and_the_cards_usage_code_runs(demo_runs, exports, tmp_path):
    """The finetune export gives the trained model's logits without emoreg_hf; both cards' snippets run."""
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(pixels, tmp_path / "pixels.pt")
    trained = AutoModelForImageClassification.from_pretrained(demo_runs.finetune).eval()
    assert type(trained).__name__ == "EmoRegForImageClassification"
    with torch.no_grad():
        expected = trained(pixels).logits
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)).save(tmp_path / "image.jpg")

    snippets = []
    for stage, repo in (("finetune", "org/emoreg-demo"), ("pretrain", "org/emoreg-demo-affect")):
        code = python_blocks(exports[stage] / "README.md")[0]  # the first block: plain transformers usage
        assert f'"{repo}"' in code
        snippets.append(code.replace(f'"{repo}"', repr(str(exports[stage]))))
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(exports["finetune"])!r}, trust_remote_code=True)
        model.eval()
        assert "emoreg_hf" not in sys.modules, "the export must not need emoreg_hf"
        with torch.no_grad():
            torch.save(model(torch.load("pixels.pt")).logits, "logits.pt")
        for snippet in {snippets!r}:
            exec(snippet, {{"__name__": "__main__"}})
            print("---")
        assert "emoreg_hf" not in sys.modules
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-4000:]
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-5)
    finetune_out, pretrain_out = result.stdout.split("---\n")[:2]
    labels = trained.config.id2label.values()
    assert any(label in finetune_out for label in labels) and "rho: " in finetune_out
    assert all(e in finetune_out for e in trained.config.emotion_labels)  # the emotion_probs dict
    assert "'score'" in pretrain_out and any(e in pretrain_out for e in trained.config.emotion_labels)


# ---------------------------------------------------------------------------------------------- push


class RecordingApi:
    """Stands in for `HfApi`: records every call, holds `existing` (revision, file) pairs, never networks."""

    def __init__(self, existing=(), token=FAKE_TOKEN):
        self.token, self.existing, self.calls = token, set(existing), []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def file_exists(self, repo_id, filename, **kwargs):
        self.calls.append(("file_exists", repo_id, {"filename": filename, **kwargs}))
        return (kwargs.get("revision"), filename) in self.existing

    def upload_folder(self, **kwargs):
        from concurrent.futures import Future

        from huggingface_hub.utils import filter_repo_objects

        files = set(
            filter_repo_objects(
                files_of(Path(kwargs["folder_path"])),
                allow_patterns=kwargs.get("allow_patterns"),
                ignore_patterns=kwargs.get("ignore_patterns"),
            )
        )
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs | {"files": files}))
        url = "https://huggingface.co/org/emoreg-demo/commit/abc"
        if not kwargs.get("run_as_future"):
            return url
        future = Future()  # as HfApi's background upload hands it back
        future.set_result(url)
        return future

    def names(self):
        return [c[0] for c in self.calls]


def test_push_uploads_the_export_to_the_repo_and_branch(demo_runs, exports, no_network):
    api = RecordingApi()
    url = push_to_hub([demo_runs.finetune], "org/emoreg-demo", private=True, revision="v1", api=api)
    assert url.endswith("/commit/abc")
    assert api.names() == ["create_repo", "create_branch", "file_exists", "upload_folder"]
    _, repo_id, create = api.calls[0]
    assert repo_id == "org/emoreg-demo" and create["exist_ok"] is True and create["private"] is True
    assert api.calls[1][2]["branch"] == "v1" and api.calls[2][2]["revision"] == "v1"
    upload = api.calls[3][2]
    assert upload["repo_id"] == "org/emoreg-demo" and upload["revision"] == "v1" and not upload["create_pr"]
    assert upload["files"] == files_of(exports["finetune"])  # exactly the checked export
    assert "training_args.bin" not in upload["files"]


def test_push_never_overwrites_an_existing_card_unless_asked(demo_runs, no_network):
    api = RecordingApi(existing={(None, "README.md")})
    with pytest.raises(CardExistsError, match="--overwrite"):
        push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=api)
    assert "upload_folder" not in api.names()
    push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=api, overwrite=True)
    assert api.names()[-1] == "upload_folder"

    branch = RecordingApi(existing={("v1", "README.md")})  # a card on another branch does not block main
    push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=branch)
    assert branch.names()[-1] == "upload_folder"

    pr = RecordingApi(existing={(None, "README.md")})
    push_to_hub(
        demo_runs.finetune, "org/emoreg-demo", api=pr, create_pr=True
    )  # a PR proposes, never overwrites
    assert pr.calls[-1][2]["create_pr"] is True and "create_branch" not in pr.names()


def test_dry_run_prints_files_and_card_without_network(demo_runs, no_network, capsys):
    api = RecordingApi()
    assert push_to_hub(demo_runs.pretrain, "org/emoreg-demo-affect", dry_run=True, api=api) is None
    assert api.calls == []
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "plots/confusion_matrix.png" in out
    assert "model-index:" in out and "# emoreg-demo-affect" in out
    assert "training_args.bin" not in out and "checkpoint-" not in out


def test_missing_credentials_and_no_hub_give_clear_messages(
    demo_runs, no_network, monkeypatch, tmp_path, capsys
):
    import huggingface_hub

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    api = RecordingApi(token=None)
    with pytest.raises(HubCredentialsError, match="hf auth login"):
        push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=api)
    assert api.calls == []
    # what the recipes' --push_to_hub path calls, with the real HfApi: a message, no network, no traceback
    with pytest.raises(HubCredentialsError, match="No Hugging Face token"):
        push_to_hub([str(demo_runs.finetune)], "org/emoreg-demo", private=False)
    with pytest.raises(ValueError, match="--hub_model_id"):
        push_to_hub([str(demo_runs.finetune)], None)
    args = SimpleNamespace(
        hub_model_id="org/emoreg-demo", hub_private_repo=None, hub_revision=None, hub_token=None
    )
    with pytest.raises(SystemExit, match="^push_to_hub: No Hugging Face token"):
        push_from_training_args(demo_runs.finetune, args)
    with pytest.raises(SystemExit, match="^push_to_hub: None is not a Hub model repository id"):
        push_from_training_args(demo_runs.finetune, SimpleNamespace(hub_model_id=None))

    class Unreachable(RecordingApi):
        def create_repo(self, repo_id, **kwargs):
            raise ConnectionError("no route to host")

    with pytest.raises(HubUnreachableError, match="Could not reach the Hub"):
        push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=Unreachable())

    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    assert push.main([str(demo_runs.finetune), "--repo_id", "org/emoreg-demo"]) == 1
    err = capsys.readouterr().err
    assert "No Hugging Face token" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- a folder holds its own run


def test_overwrite_clears_the_earlier_runs_outputs_and_keeps_the_users_files(demo_runs, tmp_path):
    from emoreg_hf.run_dir import clear_run_outputs, prepare_output_dir
    from emoreg_hf.run_folder import STARTED_FILE

    run = Path(shutil.copytree(demo_runs.finetune, tmp_path / "run"))
    outputs = json.loads((run / "run_info.json").read_text())["outputs"]
    assert sorted(p.name for p in run.iterdir()) == outputs  # the record lists every file the run wrote
    (run / "predictions_validation.json").write_text("{}")  # named like a run's file, but yours
    (run / "notes.txt").write_text("mine")
    args = SimpleNamespace(output_dir=str(run), resume_from_checkpoint=None, process_index=0)
    assert prepare_output_dir(args, overwrite=True) is None
    assert (
        len(list(run.iterdir())) > 2
    )  # deciding removes nothing: a command failing on its data loses nothing
    assert clear_run_outputs(run) == outputs
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt", "predictions_validation.json"]
    assert not (run / STARTED_FILE).exists()


def test_export_reads_only_the_files_the_run_record_lists(demo_runs, tmp_path):
    run = copy_run(demo_runs.finetune, tmp_path / "run")
    stale = {"labels": [0], "predictions": [0], "split": "validation"}
    (run / "predictions_validation.json").write_text(json.dumps(stale))  # allow-listed, but not this run's
    folder = export_for_hub(run, tmp_path / "export", repo_id="org/emoreg-demo")
    assert "predictions_validation.json" not in files_of(folder) and "predictions_test.json" in files_of(
        folder
    )
    assert load_run_folder(run).predictions["split"] == "test"  # the card's plots read this run's file only


def test_push_export_dir_writes_the_reviewable_folder_and_stops(demo_runs, tmp_path, no_network, capsys):
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    target = tmp_path / "review"
    assert (
        push.main([str(demo_runs.finetune), "--repo_id", "org/emoreg-demo", "--export_dir", str(target)]) == 0
    )
    out = capsys.readouterr().out
    assert "Nothing was uploaded" in out and "model.safetensors" in out
    api = RecordingApi()  # exactly what a push would upload
    push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=api)
    assert files_of(target) == api.calls[-1][2]["files"]
    assert (
        push.main([str(demo_runs.finetune), "--repo_id", "org/emoreg-demo", "--export_dir", str(target)]) == 1
    )
    assert "is not empty" in capsys.readouterr().err


def test_space_is_built_checked_linked_and_uploaded_as_a_space(demo_runs, tmp_path, no_network, capsys):
    pytest.importorskip("gradio")  # the Space's requirements pin the installed gradio
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    argv = [str(demo_runs.finetune), "--repo_id", "org/emoreg-demo", "--space_id", "org/emoreg-demo-space"]
    assert push.main([*argv, "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "would upload" in out and "https://huggingface.co/spaces/org/emoreg-demo-space" in out
    assert "app.py" in out and "requirements.txt" in out and "examples/" in out

    target = tmp_path / "review"
    assert push.main([*argv, "--export_dir", str(target)]) == 0
    space, model = target / "space", target / "model"
    assert {"app.py", "README.md", "requirements.txt", "emoreg_space.json"} <= files_of(space)
    examples = sorted(f for f in files_of(space) if f.startswith("examples/"))
    assert len(examples) == 4  # the demo's synthetic test images: ours to share
    readme = (space / "README.md").read_text()
    assert "sdk: gradio" in readme and "- org/emoreg-demo" in readme and "Apache-2.0" in readme
    assert "https://huggingface.co/spaces/org/emoreg-demo-space" in (model / "README.md").read_text()
    assert check_export(space) == []

    api = RecordingApi()
    push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=api, space_id="org/emoreg-demo-space")
    uploads = [(c[1], c[2]["repo_type"]) for c in api.calls if c[0] == "upload_folder"]
    assert uploads == [("org/emoreg-demo", "model"), ("org/emoreg-demo-space", "space")]
    created = [c for c in api.calls if c[0] == "create_repo" and c[1] == "org/emoreg-demo-space"]
    assert created[0][2]["repo_type"] == "space" and created[0][2]["space_sdk"] == "gradio"
    with pytest.raises(ValueError, match="not a Hub Space repository id"):
        push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=api, space_id="not a repo")


def test_bad_space_examples_stop_the_export_before_anything_is_written(demo_runs, tmp_path, capsys):
    pytest.importorskip("gradio")  # the Space's requirements pin the installed gradio
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    target, notes = tmp_path / "review", tmp_path / "notes.jpg"
    notes.write_text("a text file named like an image")
    argv = [str(demo_runs.finetune), "--repo_id", "org/m", "--space_id", "org/s", "--export_dir", str(target)]
    assert push.main([*argv, "--space_examples", str(tmp_path / "missing.png")]) == 1
    assert "example image" in capsys.readouterr().err and not target.exists()
    assert push.main([*argv, "--space_examples", str(notes)]) == 1
    assert "notes.jpg' cannot be read as an image (not an image file)" in capsys.readouterr().err
    assert not target.exists()
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(photo)
    assert push.main([*argv, "--space_examples", str(photo)]) == 0  # the same command, fixed, just works
    assert files_of(target / "space") >= {"examples/photo.png", "app.py"}


def test_an_export_that_fails_half_way_leaves_nothing_behind(demo_runs, tmp_path, monkeypatch):
    from emoreg_hf.publish import push as push_module

    def refused(*args, **kwargs):
        raise ValueError("Refusing to publish the Space org/s: (a leak)")

    monkeypatch.setattr(push_module, "export_space", refused)
    target = tmp_path / "empty-before"
    target.mkdir()
    with pytest.raises(ValueError, match="Refusing to publish"):
        push_to_hub(demo_runs.finetune, "org/m", space_id="org/s", export_dir=target)
    assert target.is_dir() and list(target.iterdir()) == []


def test_real_data_runs_get_no_space_examples_from_their_test_split(tmp_path):
    from emoreg_hf.space.examples import demo_examples

    run = write_run(tmp_path / "run", finetune_record())  # CIFAR-10: its images may not be redistributed
    assert demo_examples(run, tmp_path / "examples") == []


# ------------------------------------------------------------------------------ the recipes' --push_to_hub


@pytest.mark.parametrize("client", ["httpx2", "httpx"])
def test_network_failures_of_the_http_client_give_the_hub_unreachable_message(demo_runs, no_network, client):
    transport = pytest.importorskip(client)

    class Unreachable(RecordingApi):
        def create_repo(self, repo_id, **kwargs):
            raise transport.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(HubUnreachableError, match=r"Could not reach the Hub .* \(ConnectError\)"):
        push_to_hub(demo_runs.finetune, "org/emoreg-demo", api=Unreachable())
    args = SimpleNamespace(
        hub_model_id="org/emoreg-demo", hub_token=None, hub_private_repo=False, hub_revision=None
    )
    with pytest.raises(HubUnreachableError, match="Could not reach the Hub to create org/emoreg-demo"):
        start_push(args, api=Unreachable())


def test_push_target_is_checked_before_training(no_network, monkeypatch, tmp_path):
    import huggingface_hub

    args = SimpleNamespace(
        hub_model_id="org/emoreg-demo", hub_token=None, hub_private_repo=True, hub_revision="v2"
    )
    api = RecordingApi()
    target = start_push(args, api=api)
    assert target.repo_id == "org/emoreg-demo" and target.private and target.revision == "v2"
    assert api.names() == ["create_repo", "create_branch", "file_exists"]
    with pytest.raises(CardExistsError, match="nothing was trained"):  # someone's card is never replaced
        start_push(args, api=RecordingApi(existing={("v2", "README.md")}))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubCredentialsError, match="No Hugging Face token"):
        start_push(args, api=RecordingApi(token=None))


@pytest.mark.slow  # spawns processes or trains
def test_push_without_a_token_stops_the_recipe_before_training(tmp_path):
    """The recipe as a user runs it: exit with the message, nothing trained, no output written."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")},
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
    }
    out = tmp_path / "run"
    command = [
        sys.executable, "recipes/finetune.py", "--method", "baseline", "--output_dir", str(out),
        "--push_to_hub", "true", "--hub_model_id", "org/emoreg-demo",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert (
        "push_to_hub: No Hugging Face token found" in result.stderr
        and "Nothing was trained." in result.stderr
    )
    assert "Traceback" not in result.stderr and not out.exists()


def test_every_save_pushes_the_checkpoints_model_and_never_its_optimizer(tmp_path, no_network):
    from emoreg_hf.callbacks import PushAtEverySave
    from emoreg_hf.publish.push import HubTarget

    checkpoint = tmp_path / "checkpoint-5"
    checkpoint.mkdir()
    for name in (
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "optimizer.pt",
        "rng_state.pth",
        "ema.safetensors",  # the weight EMA (--ema_decay): not the model being pushed
    ):
        (checkpoint / name).write_text("x")
    api = RecordingApi()
    callback = PushAtEverySave(HubTarget("org/emoreg-demo", api, revision="v1"))
    state = SimpleNamespace(is_world_process_zero=True, global_step=5)
    callback.on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    (upload,) = api.calls
    # the checkpoint folder itself, its model files selected by allow_patterns, uploaded in the background
    assert upload[2]["folder_path"] == str(checkpoint) and upload[2]["run_as_future"] is True
    assert upload[2]["files"] == {"model.safetensors", "config.json", "preprocessor_config.json"}
    assert upload[2]["commit_message"] == "Training in progress, step 5" and upload[2]["revision"] == "v1"
    assert callback.pending is not None
    callback.on_train_end(None, state, None)  # the end of training waits for it
    assert callback.pending is None


def test_a_failed_background_push_is_logged_and_training_goes_on(tmp_path, no_network, caplog):
    from concurrent.futures import Future

    from emoreg_hf.callbacks import PushAtEverySave
    from emoreg_hf.publish.push import HubTarget

    class Failing(RecordingApi):
        def upload_folder(self, **kwargs):
            future = Future()
            future.set_exception(ConnectionError("no route to host"))
            return future

    (tmp_path / "checkpoint-3").mkdir()
    callback = PushAtEverySave(HubTarget("org/emoreg-demo", Failing()))
    state = SimpleNamespace(is_world_process_zero=True, global_step=3)
    callback.on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    with caplog.at_level("WARNING"):
        callback.on_step_end(None, state, SimpleNamespace(should_save=True))  # the next save waits for it
    assert (
        "push at step 3 failed, training goes on" in caplog.text and "Could not reach the Hub" in caplog.text
    )


def test_export_carries_the_tensorboard_traces_and_refuses_leaky_ones(demo_runs, tmp_path):
    run = copy_run(demo_runs.finetune, tmp_path / "run")
    (run / "runs" / "20261129-120000").mkdir(parents=True)
    host = socket.gethostname()
    trace = run / "runs" / "20261129-120000" / f"events.out.tfevents.1764417600.{host}.4242.0"
    trace.write_bytes(b"\x00scalars only\x00")
    folder = export_for_hub(run, tmp_path / "export", repo_id="org/emoreg-demo")
    assert "runs/20261129-120000/events.out.tfevents.1764417600.emoreg-hf.0" in files_of(folder)
    assert not any(f".{host}." in f".{name}." for name in files_of(folder))  # its time, not its host
    (folder / f"trace.{host}.json").write_text("{}")
    assert check_export(folder) == [
        f"trace.{host}.json: the file name carries this machine's host name ({host})"
    ]
    trace.write_bytes(b"\x00args " + str(run.resolve()).encode() + b"\x00")
    with pytest.raises(ValueError, match="a TensorBoard trace that holds local paths"):
        export_for_hub(run, tmp_path / "export2", repo_id="org/emoreg-demo")


def test_publishing_reads_each_run_folder_once(tmp_path, monkeypatch, no_network, capsys):
    """A push (card, plots, export, Space) reads every folder's run record once and hands it down."""
    run = with_weights(write_run(tmp_path / "run", finetune_record(seed=0)))
    seeds = [run, with_weights(write_run(tmp_path / "run1", finetune_record(seed=1)))]
    baselines = [write_run(tmp_path / f"b{s}", finetune_record(s, 0.5, method="baseline")) for s in (0, 1)]
    reads: dict[str, int] = {}
    read_text = Path.read_text

    def counting(path, *args, **kwargs):
        if path.name == "run_info.json" and tmp_path / "export" not in path.parents:  # not the export's check
            reads[path.parent.name] = reads.get(path.parent.name, 0) + 1
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    push_to_hub(seeds, "org/x", compare_dirs=baselines, space_id="org/x-demo", export_dir=tmp_path / "export")
    assert reads == {"run": 1, "run1": 1, "b0": 1, "b1": 1}
    assert "| baseline | 2 |" in (tmp_path / "export" / "model" / "README.md").read_text()


def push_recipe():
    sys.path.insert(0, str(ROOT / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    return push


def snapshot(*folders: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p): (p.read_bytes(), p.stat().st_mtime_ns) for f in folders for p in f.rglob("*") if p.is_file()
    }


def test_a_run_twice_a_copy_or_a_run_compared_with_itself_is_refused_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    """`push.py RUN RUN` (or RUN/, or a copy of RUN) would average one run as two seeds ("± 0.00"), and
    `--compare RUN` (or a seed of the same configuration) would give a "Δ +0.0000" control row: refused,
    naming the folders, exit 1, with nothing written."""
    monkeypatch.chdir(tmp_path)
    seed7 = with_weights(write_run(tmp_path / "seed7", finetune_record(7, 0.62)))
    with_weights(write_run(tmp_path / "seed8", finetune_record(8, 0.60)))
    copy7 = Path(shutil.copytree(seed7, tmp_path / "copy7"))
    target, before = tmp_path / "review", snapshot(tmp_path)
    push = push_recipe()
    cases = [
        (["seed7", "seed7"], "seed7 is given twice: a card averages distinct runs"),
        (["seed7", f"{seed7}/"], f"{seed7} is given twice (also as seed7)"),
        (["seed7", "copy7"], "seed7 and copy7 are both seed 7 (one run and a copy of it?)"),
        (["seed7", "seed8", "--compare", "seed7"], "--compare seed7 is seed7, a run this card publishes"),
        (
            ["seed7", "--compare", "copy7"],
            "--compare copy7 (seed 7) is a run of this card's own configuration",
        ),
        (
            ["seed7", "--compare", "seed8"],
            "--compare seed8 (seed 8) is a run of this card's own configuration",
        ),
    ]
    for argv, message in cases:
        assert push.main([*argv, "--repo_id", "org/x", "--export_dir", str(target)]) == 1, argv
        assert message in capsys.readouterr().err, argv
        assert not target.exists() and snapshot(tmp_path) == before, argv
    assert copy7.is_dir()
    baseline = write_run(tmp_path / "base7", finetune_record(7, 0.5, method="baseline"))
    assert (
        push.main(["seed7", "seed8", "--repo_id", "org/x", "--compare", str(baseline), "--export_dir", "ok"])
        == 0
    )
    assert "| baseline | 1 |" in (tmp_path / "ok" / "README.md").read_text()


def test_export_dir_that_is_a_file_and_an_unknown_license_get_a_message_and_write_nothing(tmp_path, capsys):
    from emoreg_hf.publish.licenses import HUB_LICENSES

    run = with_weights(write_run(tmp_path / "run", finetune_record(7)))
    (tmp_path / "notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    push = push_recipe()
    for where, message in (
        ("notes.txt", "--export_dir {0}/notes.txt is a file, not a folder"),
        ("notes.txt/review", "--export_dir {0}/notes.txt/review lies inside {0}/notes.txt, which is a file"),
    ):
        assert push.main([str(run), "--repo_id", "org/x", "--export_dir", str(tmp_path / where)]) == 1
        assert message.format(tmp_path) in capsys.readouterr().err
    for given, hint in (
        ("Apache-2.0", " (did you mean apache-2.0?)"),
        ("apache2", " (did you mean apache-2.0?)"),
        ("zzz", ""),
    ):
        assert push.main([str(run), "--repo_id", "org/x", "--license", given, "--export_dir", "x"]) == 1
        err = capsys.readouterr().err
        assert f"--license {given!r} is not a licence id the Hub knows{hint};" in err
        assert "https://huggingface.co/docs/hub/repositories-licenses" in err
    assert snapshot(tmp_path) == before and not (tmp_path / "x").exists()
    assert {"apache-2.0", "mit", "openrail", "cc-by-4.0", "other"} <= set(HUB_LICENSES)
    card = build_model_card(run, repo_id="org/x", license="cc-by-nc-4.0")
    assert card.data.license == "cc-by-nc-4.0"
    with pytest.raises(ValueError, match="did you mean cc-by-nc-4.0"):
        build_model_card(run, repo_id="org/x", license="cc-by-nc-4")
