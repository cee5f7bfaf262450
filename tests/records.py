"""Run folders written by hand from a `RunRecord` (no training), for fast tests of everything that reads
run folders: the card, the export's file selection, the ablation report."""

from __future__ import annotations

import json
from pathlib import Path

from emoreg_hf.run_record import DatasetRecord, RunRecord

LABELS = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
EMOTIONS = ["negative", "neutral", "positive"]


def results(accuracy: float, rho: float | None = 0.4) -> dict:
    out = {"train_loss": 1.2345, "epoch": 3.0, "train_runtime": 12.0, "train_samples_per_second": 250.0}
    for prefix, shift in (("eval", 0.01), ("test", 0.0)):
        out.update(
            {
                f"{prefix}_accuracy": accuracy + shift,
                f"{prefix}_top5_accuracy": min(1.0, accuracy + 0.3),
                f"{prefix}_macro_f1": accuracy - 0.02,
                f"{prefix}_balanced_accuracy": accuracy - 0.01,
                f"{prefix}_ece": 0.05,
                f"{prefix}_loss": 1.5,
            }
        )
        if rho is not None:
            out.update(
                {f"{prefix}_rho_mean": rho, f"{prefix}_rho_std": 0.1, f"{prefix}_emotion_entropy": 0.9}
            )
            out.update({f"{prefix}_reliance_permuted": 0.0123, f"{prefix}_reliance_mean": 0.0045})
            out.update(
                {
                    f"{prefix}_reliance_permuted_affect": 0.0021,
                    f"{prefix}_reliance_permuted_emotion": 0.0107,
                    f"{prefix}_reliance_mean_affect": -0.0003,
                    f"{prefix}_reliance_mean_emotion": 0.0039,
                    f"{prefix}_accuracy_non_emotional": accuracy + shift - 0.05,
                    f"{prefix}_accuracy_emotional": accuracy + shift - 0.01,
                }
            )
    return out


def finetune_record(seed: int = 0, accuracy: float = 0.6, method: str = "emoreg", **changes) -> RunRecord:
    emoreg = method == "emoreg"
    fields = dict(
        stage="finetune",
        seed=seed,
        command=f"python recipes/finetune.py cifar.yaml --method {method} --seed {seed}",
        label_names=LABELS,
        datasets=[
            DatasetRecord("uoft-cs/cifar10", "cifar10", {"train": 45000, "validation": 5000, "test": 10000})
        ],
        synthetic_data=False,
        hyperparameters={
            "learning_rate": 0.001,
            "num_train_epochs": 3.0,
            "seed": seed,
            "global_batch_size": 64,
        },
        config={"dataset": "cifar10", "method": method, "max_train_samples": None, "max_eval_samples": None},
        results=results(accuracy, 0.4 if emoreg else None),
        method=method,
        models={
            "task": "google/vit-base-patch16-224-in21k" if method != "transfer" else None,
            "affect": "org/emoreg-vit-affect" if method != "baseline" else None,
            "architecture": "emoreg" if emoreg else "vit",
        },
        base_models=[m for m in ("google/vit-base-patch16-224-in21k", "org/emoreg-vit-affect") if m],
        taxonomy={"name": "valence3", "names": EMOTIONS} if emoreg else None,
        emoreg={"influence": "concat", "regulation": "adaptive", "rho_init": 0.5, "aux_loss_weight": 0.5}
        if emoreg
        else None,
        controls={"no_pretraining": False, "shuffled_emotion": False},
        files={"results": "all_results.json"},
        emoreg_hf_version="0.1.0",
    )
    fields.update(changes)
    return RunRecord(**fields)


def pretrain_record(seed: int = 0, accuracy: float = 0.6, shuffled: bool = False, **changes) -> RunRecord:
    """A stage-1 run (emotion classifier on an affective source; `shuffled`: the shuffled-label variant)."""
    fields = dict(
        stage="pretrain",
        seed=seed,
        command=f"python recipes/pretrain.py fer.yaml --seed {seed}" + (" --shuffle_labels true" * shuffled),
        label_names=EMOTIONS,
        datasets=[DatasetRecord("fer2013", "FER-2013", {"train": 900, "validation": 100, "test": 120})],
        synthetic_data=False,
        hyperparameters={"learning_rate": 0.001, "num_train_epochs": 2.0, "seed": seed},
        config={"shuffle_labels": shuffled, "max_train_samples": None, "max_eval_samples": None},
        results=results(accuracy, None),
        models={"architecture": "vit"},
        taxonomy={"name": "valence3", "names": EMOTIONS},
        controls={"shuffled_emotion": shuffled},
        files={"results": "all_results.json"},
        emoreg_hf_version="0.1.0",
    )
    fields.update(changes)
    return RunRecord(**fields)


def predictions(record: RunRecord, n: int = 30, seed: int = 0) -> dict:
    """A predictions file as `training.train_and_evaluate` writes it (ρ per image for a regulated run)."""
    import random

    rng = random.Random(seed)
    k = len(record.label_names)
    labels = [i % k for i in range(n)]
    return {
        "split": "test",
        "label_names": record.label_names,
        "labels": labels,
        "predictions": [label if rng.random() < 0.6 else rng.randrange(k) for label in labels],
        "regulation": [round(rng.random(), 5) for _ in labels] if record.emoreg else None,
    }


def write_run(folder: Path, record: RunRecord) -> Path:
    """A run folder holding `record` and its `all_results.json` (no weights: enough for cards and reports)."""
    folder.mkdir(parents=True, exist_ok=True)
    record.write(folder)
    (folder / "all_results.json").write_text(json.dumps(record.results))
    return folder


def write_predictions(folder: Path, record: RunRecord, n: int = 30) -> dict:
    """Add the predictions file to `record` (as the run lists it) and write it into `folder`."""
    record.files["predictions"] = "predictions_test.json"
    data = predictions(record, n, record.seed)
    (folder / "predictions_test.json").write_text(json.dumps(data))
    return data


def write_study_run(root: Path, key: str, record: RunRecord) -> Path:
    """A finished run of an ablation study in `root` as the runner leaves it: the run folder `root/key`
    (`finetune/baseline/seed0`) and its copy in `root/records/`, where the report reads it."""
    from emoreg_hf.ablation.records import store_run

    folder = write_run(root / key, record)
    store_run(folder, key, root)
    return folder


def write_checkpoint(folder: Path, step: int = 4) -> Path:
    """A complete Trainer checkpoint folder as far as resuming checks: weights, optimizer and scheduler
    states, and trainer_state.json."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"weight": torch.zeros(4, 4)}, str(folder / "model.safetensors"))
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    torch.save({"last_epoch": step}, folder / "scheduler.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def write_started(folder: Path) -> Path:
    """`run_started.json`: the folder holds an interrupted run of these recipes (its checkpoints are its own)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run_started.json").write_text(json.dumps({"settings": {}, "preexisting": []}))
    return folder
