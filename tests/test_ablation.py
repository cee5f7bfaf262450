"""The ablation: planning, overrides, the report on fixed numbers (one reference rendering of its table),
and the demo matrix end to end (2 seeds x 2 methods through the real recipes) with skip-on-restart, run one
at a time, two at a time, and as Slurm job arrays on the live local cluster, giving the same results."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emoreg_hf import ablation

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


def _records(values: dict[str, list[float]], rho: float | None = None) -> dict:
    return {
        method: {
            seed: {
                "test_accuracy": v,
                "test_top5_accuracy": 0.9,
                "test_macro_f1": v - 0.01,
                "test_balanced_accuracy": v,
                "test_ece": 0.05,
                "eval_accuracy": v + 0.01,
                "train_runtime": 10.0 + seed,
                "train_samples_per_second": 100.0,
                **({"test_rho_mean": rho} if rho is not None and method != "baseline" else {}),
            }
            for seed, v in enumerate(vs)
        }
        for method, vs in values.items()
    }


def test_summarize_and_render_fixed_input(tmp_path):
    records = _records(
        {
            "baseline": [0.40, 0.55, 0.60],
            "emoreg_adaptive": [0.50, 0.60, 0.70],
            "shuffled_emotion": [0.50, 0.60, 0.70],
        },
        rho=0.3,
    )
    summary = ablation.summarize(records)
    assert summary["split"] == "test" and summary["baseline"] == "baseline"
    adaptive = summary["methods"]["emoreg_adaptive"]
    assert adaptive["n"] == 3
    assert adaptive["metrics"]["accuracy"]["mean"] == pytest.approx(0.6)
    assert adaptive["metrics"]["accuracy"]["std"] == pytest.approx(0.1)
    assert adaptive["vs_baseline"]["mean"] == pytest.approx(0.0833333, abs=1e-7)
    assert adaptive["rho_mean"]["mean"] == pytest.approx(0.3)
    assert adaptive["train_runtime"]["mean"] == pytest.approx(11.0)
    assert summary["methods"]["baseline"]["rho_mean"] is None
    (shuffled,) = summary["comparisons"]
    assert shuffled["versus"] == "shuffled_emotion" and shuffled["mean"] == pytest.approx(0.0)
    assert shuffled["verdict"] == "noise"  # identical runs: a zero-width interval at 0
    text = ablation.render_markdown(summary, title="fixed")
    assert "| emoreg_adaptive | 3 | 60.00 ± 10.00 | [35.16, 84.84] | +8.33 [+1.16, +15.50] |" in text
    assert "**higher beyond noise**" in text
    assert "shuffled_emotion" in text and "t = 4.30" in text
    # power: t(0.975, 2) noncentral at 80% for the measured std of the differences (0.0288675) over 3 seeds
    assert adaptive["vs_baseline"]["detectable_at_80_power"] == pytest.approx(3.264044 * 0.0288675, rel=1e-5)
    assert "emoreg_adaptive 9.42 pp" in text and "80% power" in text
    json.dumps(summary)  # serialisable as written to results.json
    assert ablation.plot_results(summary, tmp_path / "r.png").stat().st_size > 1000


def test_summarize_says_within_noise():
    records = _records({"baseline": [0.50, 0.60, 0.55], "emoreg_adaptive": [0.52, 0.58, 0.57]})
    summary = ablation.summarize(records)
    assert summary["methods"]["emoreg_adaptive"]["vs_baseline"]["verdict"] == "noise"
    assert "**within noise**" in ablation.render_markdown(summary)


def test_results_md_carries_no_absolute_path_of_this_machine(tmp_path):
    config = ablation.load_config(
        {
            "pretrain": {"affective_sources": [{"path": "imagefolder", "data_dir": "/srv/data/fer2013"}]},
            "finetune": {"dataset": {"path": "/srv/data/cifar10"}},
            "output_dir": str(tmp_path / "matrix"),
        }
    )
    (tmp_path / "matrix").mkdir()
    ablation.write_report(config, command="Reproduce: `python recipes/ablate.py /srv/studies/study.yaml`")
    markdown = (tmp_path / "matrix" / "results.md").read_text()
    assert '"data_dir": "/path/to/fer2013"' in markdown and '{"path": "/path/to/cifar10"}' in markdown
    assert "python recipes/ablate.py /path/to/study.yaml" in markdown
    assert "/srv/" not in markdown and str(tmp_path) not in markdown


# -- configuration and planning -------------------------------------------------------------------------


def test_overrides_are_nested_yaml():
    out = ablation.parse_overrides(
        [
            "--pretrain.affective_sources",
            '[{"path": "imagefolder", "data_dir": "../x"}]',
            "--finetune.dataset={path: ../y}",
            "--finetune.eval_strategy",
            "no",
            "--seeds",
            "2",
            "--methods",
            "baseline,emoreg_adaptive",
        ]
    )
    assert out["pretrain"]["affective_sources"] == [{"path": "imagefolder", "data_dir": "../x"}]
    assert out["finetune"] == {"dataset": {"path": "../y"}, "eval_strategy": "no"}
    config = ablation.load_config(RECIPES / "ablations" / "demo.yaml", [*_flatten(out)], repo_root=REPO)
    assert config.seeds == [0, 1] and config.methods == ["baseline", "emoreg_adaptive"]
    assert config.finetune["dataset"] == {"path": "../y"}  # replaced, not merged into the preset
    assert config.finetune["task_model_config"]["model_type"] == "resnet"  # from recipes/demo/finetune.yaml
    assert "output_dir" not in config.finetune and "seed" not in config.pretrain  # owned by the runner
    with pytest.raises(ValueError, match="unknown method"):
        ablation.load_config({"pretrain": {}, "finetune": {}, "methods": ["emoreg_magic"]})
    with pytest.raises(ValueError, match="unknown ablation key"):
        ablation.load_config({"pretrain": {}, "finetune": {}, "seed": 3})


def _flatten(tree: dict, prefix: str = "") -> list[str]:
    args = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:
            args += _flatten(value, name + ".")
        else:
            args += [f"--{name}", value if isinstance(value, str) else json.dumps(value)]
    return args


def test_plan_trains_stage_one_once_per_variant_and_seed():
    config = ablation.load_config(
        {"pretrain": {"a": 1}, "finetune": {"b": 2}, "seeds": 3, "output_dir": "out"}
    )
    runs = ablation.plan_runs(config)
    pretrain = [r.key for r in runs if r.stage == "pretrain"]
    assert sorted(pretrain) == sorted(
        f"pretrain/{v}/seed{s}" for v in ("normal", "shuffled") for s in range(3)
    )
    assert len([r for r in runs if r.stage == "finetune"]) == 21
    by_key = {r.key: r for r in runs}
    shuffled = by_key["finetune/shuffled_emotion/seed1"]
    assert shuffled.needs == "pretrain/shuffled/seed1"
    assert shuffled.values["affect_model_name_or_path"] == str(Path("out/pretrain/shuffled/seed1"))
    assert by_key["pretrain/shuffled/seed1"].values["shuffle_labels"] is True
    assert by_key["finetune/no_pretraining/seed0"].values["affect_init"] == "random"
    assert by_key["finetune/emoreg_fixed/seed2"].values["regulation"] == "fixed"
    assert "affect_model_name_or_path" not in by_key["finetune/baseline/seed0"].values
    extra = ablation.plan_runs(
        ablation.load_config(
            {"pretrain": {}, "finetune": {}, "seeds": 1, "methods": "baseline,transfer_shuffled"}
        )
    )
    assert [r.key for r in extra] == [
        "pretrain/shuffled/seed0",
        "finetune/baseline/seed0",
        "finetune/transfer_shuffled/seed0",
    ]
    order = [r.key for r in runs]
    assert order.index("pretrain/normal/seed0") < order.index("finetune/transfer/seed0")


@pytest.mark.parametrize(
    "name, switch",
    [
        ("baseline", {"method": "baseline"}),
        ("transfer", {"method": "transfer"}),
        ("emoreg_fixed", {"regulation": "fixed"}),
        ("emoreg_learned", {"regulation": "learned"}),
        ("emoreg_adaptive", {}),
        ("no_pretraining", {"affect_init": "random"}),
    ],
)
def test_single_method_configs_are_one_switch_from_the_recipe(name, switch):
    base_file = RECIPES / "vit-base-patch16" / "finetune_cifar100.yaml"
    if not base_file.is_file():
        pytest.skip("recipes/vit-base-patch16/finetune_cifar100.yaml not present")
    base = yaml.safe_load(base_file.read_text())
    variant = yaml.safe_load((RECIPES / "ablations" / f"{name}.yaml").read_text())
    base.pop("output_dir"), variant.pop("output_dir")
    if name == "baseline":
        base.pop("affect_model_name_or_path")  # the baseline has no affective pathway to load
    changed = {k: variant.get(k) for k in set(base) | set(variant) if base.get(k) != variant.get(k)}
    assert changed == switch


def test_shuffled_config_is_one_switch_from_the_pretrain_recipe():
    base_file = RECIPES / "vit-base-patch16" / "pretrain_affect.yaml"
    if not base_file.is_file():
        pytest.skip("recipes/vit-base-patch16/pretrain_affect.yaml not present")
    base = yaml.safe_load(base_file.read_text())
    variant = yaml.safe_load((RECIPES / "ablations" / "shuffled_emotion.yaml").read_text())
    base.pop("output_dir"), variant.pop("output_dir")
    assert {k: variant.get(k) for k in set(base) | set(variant) if base.get(k) != variant.get(k)} == {
        "shuffle_labels": True
    }


# -- the study's records: the report from them alone ------------------------------------------------------


def _study(root: Path, data: str) -> ablation.AblationConfig:
    """A finished 2-method x 3-seed study in `root` as the runner leaves it: run folders with their records
    (written by hand, naming `data` and folders of the study) and their copies in `root/records/`."""
    from records import finetune_record, write_run

    from emoreg_hf.ablation.records import store_run

    for seed, (ours, theirs) in enumerate([(0.61, 0.55), (0.63, 0.56), (0.60, 0.57)]):
        for method, accuracy in (("emoreg_adaptive", ours), ("baseline", theirs)):
            key = f"finetune/{method}/seed{seed}"
            config = {"dataset": {"path": data}, "output_dir": str(root / key)}
            command = f"python {REPO / 'recipes' / 'finetune.py'} {root / key / 'ablation_run.yaml'}"
            record = finetune_record(
                seed, accuracy, method="emoreg" if method == "emoreg_adaptive" else method, command=command
            )
            record.config.update(config)
            run = write_run(root / key, record)
            (run / "trainer_state.json").write_text(
                json.dumps(
                    {"global_step": 9, "log_history": [{"loss": 1.0}], "best_model_checkpoint": str(run)}
                )
            )
            store_run(run, key, root)
    return ablation.load_config(
        {
            "pretrain": {},
            "finetune": {"dataset": {"path": data}},
            "methods": ["baseline", "emoreg_adaptive"],
            "output_dir": str(root),
            "title": "records",
        }
    )


def test_the_report_renders_again_from_the_records_alone_without_local_paths(tmp_path):
    data = str(tmp_path / "elsewhere" / "cifar10")
    config = _study(tmp_path / "study", data)
    command = f"python recipes/ablate.py study.yaml --finetune.dataset '{{path: {data}}}'"
    summary = ablation.write_report(config, command=command)
    assert summary["methods"]["emoreg_adaptive"]["vs_baseline"]["n"] == 3
    report = (tmp_path / "study" / "results.md").read_text()
    assert (
        "Reproduce: `python recipes/ablate.py study.yaml --finetune.dataset '{path: /path/to/cifar10}'`"
        in report
    )

    records = tmp_path / "study" / "records"
    stored = {p.relative_to(records).as_posix() for p in records.rglob("*") if p.is_file()}
    assert "study.yaml" in stored and "finetune/baseline/seed2/run_info.json" in stored
    assert {"all_results.json", "trainer_state.json"} <= {p.rsplit("/", 1)[-1] for p in stored}
    for path in records.rglob("*"):  # nothing names this machine's folders
        if path.is_file():
            assert str(tmp_path) not in path.read_text(), path
    run_info = json.loads((records / "finetune/baseline/seed0/run_info.json").read_text())
    assert run_info["config"]["output_dir"] == "/path/to/study/finetune/baseline/seed0"
    assert run_info["command"].startswith(
        "python recipes/finetune.py /path/to/study/finetune/baseline/seed0/"
    )
    state = json.loads((records / "finetune/baseline/seed0/trainer_state.json").read_text())
    assert state == {"global_step": 9, "log_history": [{"loss": 1.0}]}

    shipped = tmp_path / "shipped"  # the study folder as the repository keeps it: report and records only
    shipped.mkdir()
    shutil.copytree(records, shipped / "records")
    ablation.render_report(shipped)
    for name in ("results.md", "results.json"):
        assert (shipped / name).read_text() == (tmp_path / "study" / name).read_text(), name
    assert (shipped / "results.png").is_file()


def test_report_only_command_line(tmp_path, capsys):
    config = _study(tmp_path / "study", "/data/cifar10")
    ablation.write_report(config)
    (tmp_path / "study" / "results.md").unlink()
    ablation.main(["--report", str(tmp_path / "study")], recipes_dir=RECIPES, default_config="none.yaml")
    assert "| emoreg_adaptive | 3 |" in (tmp_path / "study" / "results.md").read_text()
    kept = tmp_path / "kept"  # a study that kept its results.json only: results.md from it alone
    kept.mkdir()
    shutil.copy(tmp_path / "study" / "results.json", kept)
    ablation.main(["--report", str(kept)], recipes_dir=RECIPES, default_config="none.yaml")
    assert (kept / "results.md").read_text() == (tmp_path / "study" / "results.md").read_text()
    with pytest.raises(
        FileNotFoundError, match="results.json is missing: .* not the folder of a finished study"
    ):
        ablation.main(["--report", str(tmp_path)], recipes_dir=RECIPES, default_config="none.yaml")


# -- end to end -----------------------------------------------------------------------------------------


TINY_MATRIX = {
    "methods": "baseline,emoreg_adaptive",
    "seeds": "2",
    "pretrain.num_train_epochs": "1",
    "pretrain.max_train_samples": "128",
    "pretrain.max_eval_samples": "64",
    "finetune.num_train_epochs": "1",
    "finetune.max_train_samples": "128",
    "finetune.max_eval_samples": "64",
    "finetune.save_strategy": "no",
}
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
STAGES = ("pretrain", "finetune")


def _tiny_argv(output_dir: Path) -> list[str]:
    tiny = {**TINY_MATRIX, "output_dir": str(output_dir)}
    return [token for key, value in tiny.items() for token in (f"--{key}", value)]


SEED0 = ("pretrain/normal/seed0", "finetune/baseline/seed0", "finetune/emoreg_adaptive/seed0")


def _assert_same_runs_as_sequential(root: Path, sequential_root: Path) -> None:
    """Seed 0's runs (run another way) give the numbers of the sequential matrix's seed-0 runs, to the digit:
    every value of all_results.json but wall-clock rates."""

    def results(folder: Path) -> dict:
        values = json.loads((folder / "all_results.json").read_text())
        return {k: v for k, v in values.items() if not k.endswith(("_runtime", "_per_second"))}

    for key in SEED0:
        assert results(root / key) == results(sequential_root / key), key


@pytest.fixture(scope="module")
def sequential_matrix(tmp_path_factory):
    """The 2-method x 2-seed demo matrix through the real recipes, one run at a time, one thread each; its
    folder is read by the tests below and must not be changed (copy it first)."""
    root = tmp_path_factory.mktemp("sequential") / "matrix"
    argv = _tiny_argv(root)
    config = ablation.load_config(RECIPES / "ablations" / "demo.yaml", argv, repo_root=REPO)
    lines: list[str] = []
    launcher = ablation.LocalLauncher(1, threads=1)
    first = ablation.run_matrix(config, recipes_dir=RECIPES, env=ENV, log=lines.append, launcher=launcher)
    ablation.write_report(config)
    return {"root": root, "argv": argv, "config": config, "first": first, "lines": lines}


@pytest.mark.slow
def test_demo_matrix_end_to_end_and_skip_on_restart(sequential_matrix, tmp_path):
    """2 seeds x 2 methods on the demo through the real recipes; a second call runs nothing."""
    first, config, argv = sequential_matrix["first"], sequential_matrix["config"], sequential_matrix["argv"]
    assert sorted(first["ran"]) == sorted(
        [f"pretrain/normal/seed{s}" for s in (0, 1)]
        + [f"finetune/{m}/seed{s}" for m in ("baseline", "emoreg_adaptive") for s in (0, 1)]
    )
    assert sum("running on 1 thread(s)" in line for line in sequential_matrix["lines"]) == 6
    root = Path(config.output_dir)
    run = root / "finetune" / "emoreg_adaptive" / "seed1"
    assert (run / "ablation_run.yaml").is_file() and (run / "all_results.json").is_file()
    assert yaml.safe_load((run / "ablation_run.yaml").read_text())["affect_model_name_or_path"] == str(
        root / "pretrain" / "normal" / "seed1"
    )
    assert json.loads((run / "run_info.json").read_text())["config"]["regulation"] == "adaptive"

    lines: list[str] = []
    second = ablation.run_matrix(
        config, recipes_dir=RECIPES, env=ENV, log=lines.append, launcher=ablation.LocalLauncher()
    )
    assert second["ran"] == [] and len(second["skipped"]) == 6
    assert sum("finished before, skipped" in line for line in lines) == 6
    assert not any("running" in line for line in lines)

    moved = tmp_path / "moved"  # a moved matrix folder still counts as finished
    shutil.copytree(root, moved)
    config = ablation.load_config(
        RECIPES / "ablations" / "demo.yaml", [*argv, "--output_dir", str(moved)], repo_root=REPO
    )
    run = moved / "finetune" / "emoreg_adaptive" / "seed1"
    assert (
        ablation.run_matrix(
            config, recipes_dir=RECIPES, env=ENV, log=lines.append, launcher=ablation.LocalLauncher()
        )["ran"]
        == []
    )

    # an interrupted run (killed while evaluating: started, no record yet): only it runs again
    (run / "run_info.json").unlink()
    launcher = ["ablation_run.json", "ablation_run.yaml", "ablation_stdout.log"]
    (run / "run_started.json").write_text(json.dumps({"settings": {}, "preexisting": launcher}))
    third = ablation.run_matrix(
        config, recipes_dir=RECIPES, env=ENV, log=lines.append, launcher=ablation.LocalLauncher()
    )
    assert third["ran"] == ["finetune/emoreg_adaptive/seed1"]

    summary = ablation.write_report(sequential_matrix["config"])
    assert set(summary["methods"]) == {"baseline", "emoreg_adaptive"}
    assert summary["methods"]["emoreg_adaptive"]["vs_baseline"]["seeds"] == [0, 1]
    assert summary["methods"]["emoreg_adaptive"]["rho_mean"] is not None
    assert summary["methods"]["emoreg_adaptive"]["reliance_permuted"] is not None
    assert summary["methods"]["emoreg_adaptive"]["accuracy_non_emotional"]["n"] == 2
    assert "reliance_permuted_emotion" not in summary["methods"]["baseline"]
    markdown = (root / "results.md").read_text()
    assert "**Reliance on the affective pathway**" in markdown
    assert "pp with e(x) alone permuted" in markdown and "z_E alone" in markdown
    assert "| baseline | 2 |" in markdown and "emoreg_adaptive" in markdown
    written = json.loads((root / "results.json").read_text())
    assert (root / "results.png").is_file() and written["split"] == "test"
    # images per run and stage, from each run's record
    assert written["images"]["finetune"]["baseline"]["0"] == {"train": 128, "validation": 64, "test": 64}
    assert written["images"]["pretrain"]["normal"]["1"]["train"] == 128
    assert "Images per run: stage 1: " in markdown
    # every run's record copied next to the report, local paths replaced: the report renders from them alone
    records = root / "records"
    assert (records / "pretrain" / "normal" / "seed0" / "run_info.json").is_file()
    assert (records / "finetune" / "emoreg_adaptive" / "seed1" / "trainer_state.json").is_file()
    assert not [p for p in records.rglob("*") if p.is_file() and str(root) in p.read_text()]
    alone = tmp_path / "report_only"  # the study folder without its run folders (the weights)
    shutil.copytree(
        root, alone, ignore=lambda folder, names: [n for n in names if Path(folder) == root and n in STAGES]
    )
    ablation.render_report(alone)
    assert (alone / "results.md").read_text() == markdown

    # Another configuration into this folder would replace finished runs: refused, listing what differs
    changed = [*argv, "--output_dir", str(moved), "--methods", "baseline", "--seeds", "1"]
    changed = ablation.load_config(
        RECIPES / "ablations" / "demo.yaml", [*changed, "--finetune.learning_rate", "0.01"], repo_root=REPO
    )
    baseline = moved / "finetune" / "baseline" / "seed0"
    before = {p.name: p.read_bytes() for p in baseline.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"holds 1 finished run\(s\) of another configuration") as refused:
        ablation.run_matrix(
            changed, recipes_dir=RECIPES, env=ENV, log=lines.append, launcher=ablation.LocalLauncher()
        )
    assert "finetune.learning_rate: 0.002 in the earlier matrix, 0.01 now" in str(refused.value)
    assert "(finetune/baseline/seed0)" in str(refused.value) and "--overwrite" in str(refused.value)
    assert {p.name: p.read_bytes() for p in baseline.iterdir() if p.is_file()} == before
    replaced = ablation.run_matrix(
        changed,
        recipes_dir=RECIPES,
        env=ENV,
        log=lines.append,
        launcher=ablation.LocalLauncher(),
        overwrite=True,
    )
    assert replaced["ran"] == ["finetune/baseline/seed0"]
    assert json.loads((baseline / "run_info.json").read_text())["hyperparameters"]["learning_rate"] == 0.01
    assert (baseline / "ablation_run.yaml").is_file()  # the runner's own files stay beside the new run


@pytest.mark.slow
def test_parallel_matrix_gives_the_sequential_results(sequential_matrix, tmp_path):
    """`--parallel 2`: two runs at once (a baseline beside a stage-1 run), one thread each; seed 0's runs give
    the sequential numbers (one seed keeps the test short: the runs, not the report, are what differ)."""
    root = tmp_path / "matrix"
    argv = [*_tiny_argv(root), "--seeds", "1"]
    config = ablation.load_config(RECIPES / "ablations" / "demo.yaml", argv, repo_root=REPO)
    lines: list[str] = []
    launcher = ablation.LocalLauncher(2, threads=1)
    summary = ablation.run_matrix(config, recipes_dir=RECIPES, env=ENV, log=lines.append, launcher=launcher)
    assert sorted(summary["ran"]) == sorted(SEED0)
    first_done = next(i for i, line in enumerate(lines) if ": done in " in line)
    assert sum(": running on 1 thread(s)" in line for line in lines[:first_done]) == 2  # two at once
    _assert_same_runs_as_sequential(root, sequential_matrix["root"])


@pytest.mark.slow
def test_slurm_matrix_gives_the_sequential_results(sequential_matrix, slurm_job_name, tmp_path):
    """`ablate.py CONFIG --launcher slurm` on the local cluster: submitted without waiting, collected by the
    same command (nothing submitted twice), seed 0's runs give the sequential numbers and the report is
    written; a failing run is named with its log. (Finished runs are skipped before any launcher sees them:
    the sequential test.)"""
    root = tmp_path / "matrix"
    command = [
        sys.executable,
        str(RECIPES / "ablate.py"),
        str(RECIPES / "ablations" / "demo.yaml"),
        *_tiny_argv(root),
        "--seeds",
        "1",
        "--launcher",
        "slurm",
        f"--sbatch.job_name={slurm_job_name}",
    ]
    env = {**os.environ, **ENV}
    submit = subprocess.run(
        [*command, "--wait", "false"], capture_output=True, text=True, env=env, timeout=300
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    assert "submitted 2 run(s) that need no stage-1 run as Slurm array" in submit.stdout
    assert "submitted 1 stage-2 run(s) on stage-1 runs as Slurm array" in submit.stdout
    assert "run the same command again to collect them" in submit.stdout
    assert not (root / "results.json").exists()

    collect = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert collect.returncode == 0, collect.stdout + collect.stderr
    assert "submitted" not in collect.stdout.replace("not submitted again", "")  # nothing twice
    _assert_same_runs_as_sequential(root, sequential_matrix["root"])
    assert json.loads((root / "results.json").read_text())["study"]["command"].startswith(
        "python recipes/ablate.py"
    )
    assert (root / "results.md").read_text().count("| baseline | 1 |") == 1

    bad = tmp_path / "bad"
    failing = [
        *command[:3],
        *_tiny_argv(bad),
        "--methods",
        "baseline",
        "--seeds",
        "1",
        "--finetune.no_such_key",
        "1",
    ]
    failed = subprocess.run(
        [*failing, "--launcher", "slurm", f"--sbatch.job_name={slurm_job_name}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert failed.returncode == 1
    log = bad / "finetune" / "baseline" / "seed0" / "ablation_stdout.log"
    assert "finetune/baseline/seed0 did not finish (Slurm job" in failed.stderr
    assert f"last lines of {log}" in failed.stderr and "no_such_key" in failed.stderr


# -- options the matrix owns, and the command line's paper cuts ---------------------------------------------


def test_stage_keys_the_matrix_sets_itself_are_refused_naming_what_to_use(tmp_path):
    """`--finetune.seed 3` was dropped without a word (the matrix sets each run's seed) yet shown in the
    report's Reproduce line: refused, like every stage key the matrix sets in its runs."""
    demo, out = RECIPES / "ablations" / "demo.yaml", ["--output_dir", str(tmp_path / "m")]
    for argv, message in (
        (["--finetune.seed", "3"], "--finetune.seed: the matrix sets seed itself .* use --seeds 3"),
        (["--pretrain.output_dir", "x"], "--pretrain.output_dir: .* use --output_dir DIR"),
        (["--finetune.overwrite_output_dir", "true"], "use --overwrite"),
        (
            ["--finetune.method", "baseline"],
            "each method of the matrix sets it\\); choose them with --methods",
        ),
        (["--finetune.regulation", "fixed"], "--finetune.regulation: .* --methods \\(available: baseline,"),
        (["--finetune.affect_model_name_or_path", "x"], "trains stage 1 .* --pretrain.KEY"),
        (
            ["--pretrain.shuffle_labels", "true"],
            "the stage-1 variants normal, shuffled, kmeans, target set it",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            ablation.main([str(demo), *out, *argv], recipes_dir=RECIPES, default_config=demo)
    with pytest.raises(ValueError, match=r"finetune: \{seed: \.\.\.\} in the ablation config: .* --seeds"):
        ablation.load_config({"pretrain": {}, "finetune": {"seed": 3}})
    assert not (tmp_path / "m").exists()
    config = ablation.load_config(demo, ["--finetune.influence", "film"], repo_root=REPO)  # kept by every run
    assert (
        config.finetune["influence"] == "film" and "seed" not in config.finetune
    )  # the recipe YAML's seed: 42


def test_cards_without_report_and_cards_into_a_file_say_so_and_write_nothing(tmp_path):
    config = _study(tmp_path / "study", "/data/cifar10")
    ablation.write_report(config)
    before = {p: p.read_bytes() for p in (tmp_path / "study").rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="--cards needs --report: ablate.py --report STUDY_DIR"):
        ablation.main(["--cards", str(tmp_path / "cards")], recipes_dir=RECIPES, default_config="none.yaml")
    with pytest.raises(ValueError, match="--report comes first"):
        ablation.main(["--seeds", "1", "--report", "x"], recipes_dir=RECIPES, default_config="none.yaml")
    (tmp_path / "notes.txt").write_text("mine")
    for cards, message in (
        ("notes.txt", "is a file, not a folder"),
        ("notes.txt/c", "lies inside .*notes.txt"),
    ):
        with pytest.raises(ValueError, match=message):
            ablation.main(
                ["--report", str(tmp_path / "study"), "--cards", str(tmp_path / cards)],
                recipes_dir=RECIPES,
                default_config="none.yaml",
            )
    assert {p: p.read_bytes() for p in (tmp_path / "study").rglob("*") if p.is_file()} == before
    assert not (tmp_path / "cards").exists() and (tmp_path / "notes.txt").read_text() == "mine"


def test_help_counts_and_names_the_matrix_from_the_registry():
    from emoreg_hf import registry
    from emoreg_hf.configs import PretrainArguments
    from emoreg_hf.data.specs import SOURCE_PRESETS

    text = ablation.help_parser().format_help()
    flat = " ".join(text.split())
    assert f"of the {len(registry.MATRIX)} the matrix knows" in flat
    assert f"default the {len(registry.default_arms())} of" in flat
    assert all(name in flat for name in registry.MATRIX) and "eighth" not in flat
    sources_help = next(
        f for f in PretrainArguments.__dataclass_fields__.values() if f.name == "affective_sources"
    )
    assert "preset: NAME" in sources_help.metadata["help"]
    assert all(f"{{preset: {name}" in sources_help.metadata["help"] for name in SOURCE_PRESETS)


class NoLaunch:
    """A launcher that records what it was given and runs nothing."""

    def __init__(self):
        self.keys = None

    def describe(self) -> str:
        return "no launch"

    def execute(self, cells, **kwargs):
        from types import SimpleNamespace

        self.keys = [cell.key for cell in cells]
        return SimpleNamespace(finished=[], seconds={}, waiting=[], failures=[])


def test_overwrite_checks_every_run_folder_before_replacing_any(tmp_path):
    """`--overwrite` over a matrix whose second run folder holds someone's file replaced the first run, then
    the recipe refused the second folder: now every folder is checked first, and nothing is replaced."""
    from records import finetune_record, write_run

    root = tmp_path / "matrix"
    config = ablation.load_config(
        {"pretrain": {}, "finetune": {}, "methods": ["baseline"], "seeds": [0, 1], "output_dir": str(root)}
    )
    for seed in (0, 1):  # finished runs of another configuration (no marker of this one)
        run = write_run(root / f"finetune/baseline/seed{seed}", finetune_record(seed, method="baseline"))
        (run / "ablation_run.yaml").write_text("learning_rate: 0.01\n")
    notes = root / "finetune/baseline/seed1/notes.txt"
    notes.write_text("mine")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}
    launcher = NoLaunch()
    with pytest.raises(ValueError, match="holds 2 finished run") as refused:  # without --overwrite: as before
        ablation.run_matrix(config, recipes_dir=RECIPES, launcher=launcher)
    with pytest.raises(
        ValueError, match="1 run folder\\(s\\) of the matrix hold files that are not a run's"
    ) as refused:
        ablation.run_matrix(config, recipes_dir=RECIPES, launcher=launcher, overwrite=True)
    assert f"{notes.parent}: notes.txt" in str(refused.value) and "nothing was run or replaced" in str(
        refused.value
    )
    assert launcher.keys is None
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()} == before
    notes.unlink()  # the same command, the folder cleared of what was not the run's: goes ahead
    ablation.run_matrix(config, recipes_dir=RECIPES, launcher=launcher, overwrite=True)
    assert launcher.keys == ["finetune/baseline/seed0", "finetune/baseline/seed1"]

    fresh = ablation.load_config({**config.__dict__, "methods": ["baseline"], "seeds": [2], "analysis": None})
    (root / "finetune/baseline/seed2").mkdir()
    (root / "finetune/baseline/seed2/README.md").write_text("mine")  # a folder that never held a run
    with pytest.raises(ValueError, match="seed2: README.md"):
        ablation.run_matrix(fresh, recipes_dir=RECIPES, launcher=NoLaunch())


def test_the_demo_title_and_notes_do_not_follow_the_matrix_onto_real_data(tmp_path):
    """The demo config run on real data reported "Demo ablation (synthetic data)" and "Synthetic demo data:
    ... say nothing about emotion": a config file's title and notes describe its data, so once the overrides
    read real data instead (or synthetic data instead of real) the title names the data and the notes go."""
    import dataclasses

    demo, real_small = RECIPES / "ablations" / "demo.yaml", RECIPES / "ablations" / "real_small.yaml"
    real = [
        "--pretrain.affective_sources",
        "[{path: imagefolder, data_dir: /data/fer2013}]",
        "--finetune.dataset",
        "{path: /data/cifar10}",
    ]
    config = ablation.load_config(demo, real, repo_root=REPO)
    assert (config.title, config.notes) == ("Ablation: fer2013 -> cifar10", "")
    assert ablation.load_config(demo, [*real, "--title", "Mine"], repo_root=REPO).title == "Mine"
    assert ablation.load_config(demo, [], repo_root=REPO).title == "Demo ablation (synthetic data)"
    local_copies = ablation.load_config(real_small, real, repo_root=REPO)  # the same sets, other copies
    assert local_copies.title.startswith("Small real-data study") and local_copies.notes
    smoke = ["--pretrain.affective_sources", "[{path: 'demo:synthetic-faces'}]", "--finetune.dataset", "demo"]
    assert ablation.load_config(real_small, smoke, repo_root=REPO).title == (
        "Ablation: synthetic-faces -> demo (synthetic data)"
    )
    study = _study(tmp_path / "study", "/data/cifar10")
    ablation.write_report(dataclasses.replace(study, title=config.title, notes=config.notes))
    report = (tmp_path / "study" / "results.md").read_text()
    assert "### Ablation: fer2013 -> cifar10" in report
    assert "Demo ablation" not in report and "Synthetic demo data" not in report
