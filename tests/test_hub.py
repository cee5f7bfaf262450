"""Model cards, plots, export and push, on run folders shaped like the recipes' `--output_dir`.

The fixtures build tiny stage-1 (ViT emotion classifier) and stage-2 (EmoReg) run folders with every file
the recipes write, plus the junk a real run leaves (checkpoints, pickles, absolute paths, a token), so the
export has something to refuse. Push is tested at the `huggingface_hub` boundary with a recording `HfApi`.
"""

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from tiny_models import CIFAR10, EKMAN7, image_processor, vit_config
from transformers import AutoModelForImageClassification

from emoreg_hf import EmoRegForImageClassification
from emoreg_hf.hub import (
    METRICS,
    CardExistsError,
    HubCredentialsError,
    build_model_card,
    check_export,
    export_for_hub,
    push_to_hub,
    scrub,
    write_model_card,
)
from emoreg_hf.metrics import compute_classification_metrics

HALF = ([0.5] * 3, [0.5] * 3)
FAKE_TOKEN = "hf_" + "x" * 34
PIXELS = torch.randn(40, 3, 32, 32, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(40) % 10


def results_for(prefix: str, logits: np.ndarray, labels: np.ndarray) -> dict:
    return {f"{prefix}_{k}": v for k, v in compute_classification_metrics(logits, labels).items()}


def log_history(n_steps: int = 6, emoreg: bool = False) -> list[dict]:
    logs = []
    for step in range(1, n_steps + 1):
        log = {
            "loss": 2.3 - 0.1 * step,
            "learning_rate": 1e-3,
            "grad_norm": 1.0,
            "epoch": step / 3,
            "step": step,
        }
        if emoreg:
            log.update(rho_mean=0.5 - 0.01 * step, rho_std=0.05, emotion_entropy=1.8)
        logs.append(log)
        if step % 3 == 0:
            logs.append(
                {"eval_loss": 2.2 - 0.1 * step, "eval_accuracy": 0.1 * step, "epoch": step / 3, "step": step}
            )
    return logs + [{"train_loss": 2.0, "train_runtime": 3.0, "epoch": 2.0, "step": n_steps}]


def finish_run(run: Path, *, info: dict, results: dict, logs: list, predictions: dict) -> Path:
    """The non-weight files of a run folder, plus what a real run leaves that must never be exported."""
    (run / "all_results.json").write_text(json.dumps(results))
    (run / "trainer_state.json").write_text(
        json.dumps(
            {"global_step": 6, "log_history": logs, "best_model_checkpoint": str(run / "checkpoint-6")}
        )
    )
    (run / "run_info.json").write_text(json.dumps(info))
    (run / f"predictions_{predictions['split']}.json").write_text(json.dumps(predictions))
    torch.save({"lr": 1e-3}, run / "training_args.bin")
    (run / "checkpoint-6").mkdir()
    torch.save({}, run / "checkpoint-6" / "optimizer.pt")
    (run / "runs").mkdir()
    return run


def training_info(run: Path, stage: str, seed: int) -> dict:
    return {
        "stage": stage,
        "command": f"accelerate launch {Path.cwd() / 'recipes' / (stage + '.py')} --output_dir {run} --seed {seed}",
        "training": {
            "learning_rate": 1e-3,
            "num_train_epochs": 2,
            "per_device_train_batch_size": 8,
            "seed": seed,
        },
        "synthetic_data": True,
        "taxonomy": {"name": "ekman7", "names": EKMAN7},
        "license": "apache-2.0",
    }


def make_affect_run(run: Path) -> Path:
    torch.manual_seed(0)
    model = AutoModelForImageClassification.from_config(vit_config(EKMAN7)).eval()
    model.save_pretrained(run)
    image_processor(32, *HALF).save_pretrained(run)
    labels = (np.arange(40) % 7).astype(int)
    with torch.no_grad():
        logits = model(PIXELS).logits.numpy()
    info = training_info(run, "pretrain", seed=1) | {
        "config": {
            "output_dir": str(run),
            "seed": 1,
            "model_config": {"model_type": "vit"},
            "hub_token": FAKE_TOKEN,
        },
        "datasets": [
            {"id": "synthetic demo", "name": "Demo faces", "split_sizes": {"train": 70, "validation": 40}},
            {"id": str(run.parent / "scenes"), "name": "Demo scenes", "split_sizes": {"train": 70}},
        ],
        "base_models": [],
        "label_names": EKMAN7,
        "data_report": {
            "Demo faces": {e: 10 for e in EKMAN7},
            "Demo scenes": {"per_class": {e: 5 for e in EKMAN7}},
        },
    }
    results = results_for("eval", logits, labels) | {"eval_loss": 1.9, "train_loss": 2.0, "epoch": 2.0}
    predictions = {
        "split": "validation",
        "label_names": EKMAN7,
        "labels": labels.tolist(),
        "predictions": logits.argmax(1).tolist(),
        "regulation": None,
    }
    return finish_run(run, info=info, results=results, logs=log_history(), predictions=predictions)


def make_emoreg_run(run: Path, affect_dir: Path, seed: int = 1, regulation: str = "adaptive") -> Path:
    torch.manual_seed(seed)
    labels = {
        "num_labels": 10,
        "id2label": dict(enumerate(CIFAR10)),
        "label2id": {n: i for i, n in enumerate(CIFAR10)},
    }
    model = EmoRegForImageClassification.from_backbones(
        None,
        str(affect_dir),
        task_config=vit_config(),
        task_image_size=[32, 32],
        regulation=regulation,
        **labels,
    ).eval()
    model.save_pretrained(run)
    image_processor(32, *HALF).save_pretrained(run)
    with torch.no_grad():
        out = model(PIXELS)
    logits, rho = out.logits.numpy(), out.regulation.numpy()
    torch.save(out.logits, run.parent / f"{run.name}_logits.pt")
    y = LABELS.numpy()
    results = {"train_loss": 2.0, "train_runtime": 3.0, "train_samples_per_second": 50.0, "epoch": 2.0}
    for prefix in ("eval", "test"):
        results |= results_for(prefix, logits, y) | {f"{prefix}_loss": 2.1}
        results |= {f"{prefix}_rho_mean": float(rho.mean()), f"{prefix}_rho_std": float(rho.std())}
        results |= {f"{prefix}_emotion_entropy": 1.8}
        results |= {f"{prefix}_rho_class/{name}": float(rho[y == i].mean()) for i, name in enumerate(CIFAR10)}
        results |= {f"{prefix}_emotion_share/{e}": 1 / 7 for e in EKMAN7}
    emoreg = {"influence": "concat", "regulation": regulation, "rho_init": 0.5, "aux_loss_weight": 0.5}
    info = training_info(run, "finetune", seed) | {
        "method": "emoreg",
        "config": {"output_dir": str(run), "seed": seed, "affect_model_name_or_path": str(affect_dir)},
        "datasets": [
            {"id": "uoft-cs/cifar10", "name": "CIFAR-10", "split_sizes": {"train": 100, "test": 40}}
        ],
        "base_models": [str(affect_dir), "google/vit-base-patch16-224-in21k"],
        "label_names": CIFAR10,
        "emoreg": emoreg | {"affect_trainable": "frozen", "affect_lr_scale": 0.1},
    }
    predictions = {
        "split": "test",
        "label_names": CIFAR10,
        "labels": y.tolist(),
        "predictions": logits.argmax(1).tolist(),
        "regulation": rho.tolist(),
    }
    return finish_run(run, info=info, results=results, logs=log_history(emoreg=True), predictions=predictions)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    affect = make_affect_run(root / "affect")
    return {
        "affect": affect,
        "emoreg": make_emoreg_run(root / "emoreg", affect),
        "emoreg_seed2": make_emoreg_run(root / "emoreg_seed2", affect, seed=2),
        "fixed": make_emoreg_run(root / "fixed", affect, regulation="fixed"),
    }


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def copy_run(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name, ignore=shutil.ignore_patterns("checkpoint-*")))


# --------------------------------------------------------------------------------------------- cards


@pytest.mark.parametrize("kind", ["affect", "emoreg"])
def test_card_metadata_round_trips_to_all_results(runs, kind, tmp_path):
    run = copy_run(runs[kind], tmp_path)
    readme = write_model_card(run, repo_id="org/emoreg-demo")
    assert readme == run / "README.md"
    card = ModelCard.load(readme)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "image-classification"
    assert data.license == "apache-2.0" and {"emoreg", "emotional-regulation", "synthetic-data"} <= set(
        data.tags
    )
    assert data.model_name == "emoreg-demo"

    results = json.loads((run / "all_results.json").read_text())
    splits = {"validation": "eval", "test": "test"}
    reported = {f"{splits[r.dataset_split]}_{r.metric_type}": r.metric_value for r in data.eval_results}
    expected = {
        k: v
        for k, v in results.items()
        if k.partition("_")[::2] in {(p, m) for p in splits.values() for m in METRICS}
    }
    assert reported == expected  # one EvalResult per split x metric, values exactly as in all_results.json
    assert {r.task_type for r in data.eval_results} == {"image-classification"}

    text = card.text
    assert "arXiv:2606.13081" in text and "Landi" in text and "synthetic data" in text
    assert "--seed 1" in text and str(tmp_path) not in str(card) and "hf_xxx" not in str(card)
    for png in ("training_curves", "confusion_matrix"):
        assert f"](plots/{png}.png)" in text
    if kind == "emoreg":
        assert data.datasets == ["uoft-cs/cifar10"]
        assert data.base_model == ["google/vit-base-patch16-224-in21k"]  # local paths are not Hub ids
        assert {r.dataset_type for r in data.eval_results} == {"uoft-cs/cifar10"}
        assert r"\rho(x) = \sigma" in text and "0.5" in text and "frozen" in text
        assert "trust_remote_code=True" in text and "out.regulation" in text and "emotion_probs" in text
        assert "](plots/rho_histogram.png)" in text and "](plots/rho_per_class.png)" in text
        assert "| test |" in text and "Regulation statistics" in text
    else:
        assert not data.datasets  # a synthetic source and a local folder are not Hub data sets
        assert "| anger | 10 | 5 | 15 |" in text  # per-source, per-class counts
        assert "Demo faces" in text and "ekman7" in text


def test_plots_are_valid_pngs(runs, tmp_path):
    run = copy_run(runs["emoreg"], tmp_path)
    write_model_card(run)
    pngs = sorted((run / "plots").glob("*.png"))
    assert [p.stem for p in pngs] == ["confusion_matrix", "rho_histogram", "rho_per_class", "training_curves"]
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(png) as image:
            image.verify()


def test_several_seeds_give_mean_and_std(runs):
    card = build_model_card([runs["emoreg"], runs["emoreg_seed2"]], repo_id="org/x")
    a, b = (json.loads((runs[k] / "all_results.json").read_text()) for k in ("emoreg", "emoreg_seed2"))
    test_accuracy = next(
        r for r in card.data.eval_results if r.dataset_split == "test" and r.metric_type == "accuracy"
    )
    assert test_accuracy.metric_value == pytest.approx((a["test_accuracy"] + b["test_accuracy"]) / 2)
    assert "**2 seeds** (1, 2)" in card.text and " ± " in card.text
    with pytest.raises(ValueError, match="differ in|not the configuration"):
        build_model_card([runs["emoreg"], runs["fixed"]])
    compared = build_model_card([runs["emoreg"]], compare_dirs=[runs["fixed"]]).text
    assert "emoreg (adaptive, concat) (this checkpoint)" in compared and "emoreg (fixed, concat)" in compared


def test_scrub_rewrites_paths_and_drops_secrets(tmp_path):
    data = {
        "hub_token": FAKE_TOKEN,
        "output_dir": str(tmp_path / "run"),
        "command": f"accelerate launch {Path.cwd() / 'recipes/finetune.py'} --output_dir {tmp_path / 'run'}",
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


def test_export_holds_only_publishable_files(runs, tmp_path):
    folder = export_for_hub(runs["emoreg"], tmp_path / "export", repo_id="org/emoreg-demo")
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md"} <= files
    assert {"configuration_emoreg.py", "modeling_emoreg.py", "backbones.py"} <= files
    assert {"all_results.json", "run_info.json", "trainer_state.json", "predictions_test.json"} <= files
    assert "plots/rho_histogram.png" in files
    assert not any(
        f.startswith(("checkpoint-", "runs")) or f.endswith((".bin", ".pt", ".pkl")) for f in files
    )
    assert check_export(folder, local_paths=[runs["emoreg"]]) == []
    assert json.loads((folder / "config.json").read_text())["auto_map"]
    for path in folder.rglob("*"):
        if path.suffix in (".json", ".md", ".py"):
            text = path.read_text()
            assert str(runs["emoreg"].parent) not in text and str(Path.home()) + "/" not in text, path
            assert FAKE_TOKEN not in text, path
    info = json.loads((folder / "run_info.json").read_text())
    assert info["config"]["affect_model_name_or_path"] == "affect"

    (folder / "optimizer.pt").write_bytes(b"x")
    (folder / "notes.json").write_text(json.dumps({"path": "/home/someone/data"}))
    problems = "\n".join(check_export(folder))
    assert "optimizer.pt" in problems and "notes.json" in problems


def test_export_refuses_pickle_only_weights(runs, tmp_path):
    run = copy_run(runs["affect"], tmp_path)
    (run / "model.safetensors").rename(run / "pytorch_model.bin")
    with pytest.raises(FileNotFoundError, match=r"no \*\.safetensors weights \(found pytorch_model.bin"):
        export_for_hub(run, tmp_path / "export")


def test_export_loads_in_a_fresh_process_with_the_same_logits(runs, tmp_path):
    folder = export_for_hub(runs["emoreg"], tmp_path / "export")
    torch.save(PIXELS, tmp_path / "pixels.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        from transformers import AutoModelForImageClassification
        model = AutoModelForImageClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        assert "emoreg_hf" not in sys.modules
        with torch.no_grad():
            torch.save(model(torch.load({str(tmp_path / "pixels.pt")!r})).logits, {str(tmp_path / "logits.pt")!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = torch.load(runs["emoreg"].parent / "emoreg_logits.pt")
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------- push


class RecordingApi:
    """Stands in for `HfApi`: records every call, holds `existing` files per revision, never networks."""

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
        folder = Path(kwargs["folder_path"])
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs | {"files": files}))
        return "https://huggingface.co/org/emoreg-demo/commit/abc"

    def names(self):
        return [c[0] for c in self.calls]


def test_push_uploads_the_export_to_the_repo_and_branch(runs, no_network):
    api = RecordingApi()
    url = push_to_hub([runs["emoreg"]], "org/emoreg-demo", private=True, revision="v1", api=api)
    assert url.endswith("/commit/abc")
    assert api.names() == ["create_repo", "create_branch", "file_exists", "upload_folder"]
    _, repo_id, create = api.calls[0]
    assert repo_id == "org/emoreg-demo" and create["exist_ok"] is True and create["private"] is True
    assert api.calls[1][2]["branch"] == "v1"
    upload = api.calls[3][2]
    assert upload["repo_id"] == "org/emoreg-demo" and upload["revision"] == "v1" and not upload["create_pr"]
    assert {"README.md", "model.safetensors", "config.json", "modeling_emoreg.py"} <= set(upload["files"])
    assert not any(f.endswith((".bin", ".pt")) or f.startswith("checkpoint-") for f in upload["files"])


def test_push_never_overwrites_an_existing_card_unless_asked(runs, no_network):
    api = RecordingApi(existing={(None, "README.md")})
    with pytest.raises(CardExistsError, match="--overwrite"):
        push_to_hub(runs["emoreg"], "org/emoreg-demo", api=api)
    assert "upload_folder" not in api.names()
    push_to_hub(runs["emoreg"], "org/emoreg-demo", api=api, overwrite=True)
    assert api.names()[-1] == "upload_folder"
    pr = RecordingApi(existing={(None, "README.md")})
    push_to_hub(runs["emoreg"], "org/emoreg-demo", api=pr, create_pr=True)  # a PR proposes, never overwrites
    assert pr.calls[-1][2]["create_pr"] is True


def test_dry_run_prints_files_and_card_without_network(runs, no_network, capsys):
    api = RecordingApi()
    assert push_to_hub(runs["emoreg"], "org/emoreg-demo", dry_run=True, api=api) is None
    assert api.calls == []
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "plots/confusion_matrix.png" in out
    assert "model-index:" in out and "# emoreg-demo" in out and "training_args.bin" not in out


def test_missing_credentials_give_a_clear_message(runs, no_network, monkeypatch, tmp_path, capsys):
    import huggingface_hub

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    api = RecordingApi(token=None)
    with pytest.raises(HubCredentialsError, match="hf auth login"):
        push_to_hub(runs["emoreg"], "org/emoreg-demo", api=api)
    assert api.calls == []

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    try:
        import push
    finally:
        sys.path.pop(0)
    assert push.main([str(runs["emoreg"]), "--repo_id", "org/emoreg-demo"]) == 1
    err = capsys.readouterr().err
    assert "No Hugging Face token" in err and "Traceback" not in err
    assert push.main([str(runs["emoreg"]), "--repo_id", "org/emoreg-demo", "--dry_run"]) == 0
