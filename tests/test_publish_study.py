"""benchmarks/publish_study.py: a finished study's report and cell configs into benchmarks/results/<name>/ with
no local path left, and its README section (inserted once, replaced on a second call)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from records import finetune_record

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("publish_study", ROOT / "benchmarks" / "publish_study.py")
publish_study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(publish_study)

CONFIG = {
    "pretrain": {
        "affective_sources": [{"path": "/path/to/fer2013-full", "source": "fer2013", "obtain": "notes"}]
    },
    "finetune": {"dataset": {"path": "/path/to/cifar10"}},
}


def _study(tmp_path: Path) -> tuple[Path, Path, Path]:
    data = tmp_path / "data"
    study = tmp_path / "study"
    fer, cifar = f"{data}/fer2013-full", f"{data}/cifar10-full"
    cells = {
        "pretrain/normal/seed0": {"affective_sources": [{"path": fer, "source": "fer2013"}], "seed": 0},
        "pretrain/target/seed0": {"target_dataset": {"path": cifar}, "affective_sources": None, "seed": 0},
        "finetune/emoreg_adaptive/seed1": {
            "dataset": {"path": cifar},
            "affect_model_name_or_path": f"{study}/pretrain/normal/seed0",
            "seed": 1,
        },
    }
    for key, values in cells.items():
        run = study / key
        run.mkdir(parents=True)
        (run / "ablation_run.yaml").write_text(
            yaml.safe_dump({**values, "output_dir": str(run), "method": "emoreg"})
        )
        finetune_record().write(run)
        (run / "ablation_run.json").write_text(json.dumps({"status": "done", "seconds": 600.0}))
    (study / "results.md").write_text(
        f"### A study\n\n| method | n |\n|---|---:|\n| baseline | 6 |\n\nData: `{fer}`, `{cifar}`.\n\n"
        f"Reproduce: `python recipes/ablate.py x.yaml --output_dir {study}`\n"
    )
    (study / "results.json").write_text(json.dumps({"data": fer, "split": "test"}))
    records = study / "records"  # as recipes/ablate.py keeps them: placeholders already
    (records / "finetune/emoreg_adaptive/seed1").mkdir(parents=True)
    (records / "study.yaml").write_text("title: A study\nseeds: [1]\n")
    (records / "finetune/emoreg_adaptive/seed1/run_info.json").write_text(
        json.dumps({"models": {"affect_path": "/path/to/study/pretrain/normal/seed0"}})
    )
    (study / "analysis_plan.json").write_text(json.dumps({"plan": {"primary": ["a", "b"]}}))
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\n## Results\n\ntext\n\n## Development\n\nmore\n")
    return study, config, readme


def test_a_study_is_published_without_local_paths_and_its_section_replaced_on_a_rerun(tmp_path):
    study, config, readme = _study(tmp_path)
    dest_root = tmp_path / "results"
    for _ in range(2):
        dest = publish_study.publish(study, "fair", str(config), dest_root, readme, "## Development")
    published = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert published == [
        "analysis_plan.json",
        "records/finetune/emoreg_adaptive/seed1/run_info.json",
        "records/study.yaml",
        "results.json",
        "results.md",
        "runs/finetune/emoreg_adaptive/seed1.yaml",
        "runs/pretrain/normal/seed0.yaml",
        "runs/pretrain/target/seed0.yaml",
    ]
    texts = [p.read_text() for p in dest.rglob("*") if p.is_file()] + [readme.read_text()]
    assert not any(str(tmp_path) in text for text in texts)
    cell = yaml.safe_load((dest / "runs/finetune/emoreg_adaptive/seed1.yaml").read_text())
    assert cell["dataset"] == {"path": "/path/to/cifar10"}
    assert cell["affect_model_name_or_path"] == "outputs/ablations/fair/pretrain/normal/seed0"
    target = yaml.safe_load((dest / "runs/pretrain/target/seed0.yaml").read_text())
    assert target["target_dataset"] == {"path": "/path/to/cifar10"}
    assert "/path/to/fer2013-full" in (dest / "results.md").read_text()

    text = readme.read_text()
    assert text.count("<!-- study:fair -->") == 1 and text.index("<!-- study:fair -->") < text.index(
        "## Development"
    )
    assert "--pretrain.affective_sources '[{path: /path/to/fer2013-full, source: fer2013}]'" in text
    assert "3 run(s)" not in text and "pretrain: 2 run(s), median 10.0 min" in text


def test_a_local_path_left_stops_the_publication_before_anything_is_written(tmp_path):
    study, config, readme = _study(tmp_path)
    (study / "results.md").write_text(f"written on {tmp_path}/elsewhere\n")
    dest_root = tmp_path / "results"
    with pytest.raises(SystemExit, match="elsewhere"):
        publish_study.publish(study, "fair", str(config), dest_root, readme, "## Development")
    assert not dest_root.exists() and "study:fair" not in readme.read_text()
