"""The command line as a user meets it: help for every script, the demo config only when no config is
given (and said), a command-line key replacing the config key it conflicts with, YAML errors with their
line, options the recipes cannot honour refused before any work."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoreg_hf.cli import RecipeArgumentParser
from emoreg_hf.config_reading import ConfigError, read_yaml
from emoreg_hf.configs import FinetuneArguments, PretrainArguments
from emoreg_hf.training_options import check_training_options, choose_intervals, optimizer_steps

ROOT = Path(__file__).resolve().parents[1]
DEMO_FINETUNE = ROOT / "recipes" / "demo" / "finetune.yaml"
HELP_KEYS = {
    "pretrain.py": ["--affective_sources", "--taxonomy", "--shuffle_labels", "--learning_rate", "--bf16"],
    "finetune.py": ["--method", "--regulation", "--affect_model_name_or_path", "--num_train_epochs"],
    "ablate.py": ["--methods", "--seeds", "--pretrain.KEY", "--finetune.KEY"],
    "push.py": ["--repo_id", "--export_dir", "--space_id", "--dry_run"],
}


@pytest.mark.slow  # spawns processes or trains
def test_every_script_answers_help_with_its_keys():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    running = {
        (script, flag): subprocess.Popen(
            [sys.executable, f"recipes/{script}", flag], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for script in HELP_KEYS
        for flag in ("--help",)  # `-h` is argparse's same action: test_help_is_grouped_... reads it in-process
    }  # fmt: skip
    for (script, flag), process in running.items():
        out, err = process.communicate(timeout=600)  # 4 start-ups at once on a shared machine
        assert process.returncode == 0, (script, flag, err[-2000:])
        assert "usage:" in out and all(key in out for key in HELP_KEYS[script]), (script, flag)
        assert "Traceback" not in err


def test_help_is_grouped_with_help_texts_and_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE).parse(["-h"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for group in ("data and augmentation", "EmoReg options", "TrainingArguments (transformers"):
        assert group in out
    assert "--regulation WORD" in out and "(default: 'adaptive')" in out
    assert "--learning_rate FLOAT" in out and "--use_cpu [BOOL]" in out


def test_demo_config_only_without_a_config_and_a_cli_key_replaces_its_conflicting_key(tmp_path, capsys):
    parser = RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE)
    args, training_args, path = parser.parse(["--method", "baseline", "--task_model_name_or_path", "org/vit"])
    err = capsys.readouterr().err
    assert "using the demo config" in err and "recipes/demo/finetune.yaml" in err
    assert "--task_model_name_or_path replaces task_model_config" in err
    assert args.task_model_name_or_path == "org/vit" and args.task_model_config is None
    assert args.dataset == "demo" and path == str(DEMO_FINETUNE)
    assert {"method", "task_model_name_or_path"} == parser.cli_keys and "logging_steps" in parser.given_keys

    own = tmp_path / "mine.yaml"
    own.write_text("dataset: cifar10\nmethod: baseline\ntask_model_config: {model_type: resnet}\n")
    args, training_args, path = parser.parse([str(own)])
    assert "using the demo config" not in capsys.readouterr().err  # a config given: the demo is not stacked
    assert (
        path == str(own) and training_args.num_train_epochs == 3
    )  # TrainingArguments' default, not the demo's


def test_dashes_yaml_values_and_the_word_no():
    parser = RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE)
    args, training_args, _ = parser.parse(
        ["--eval-strategy", "no", "--dataset={path: parquet, data_dir: ./x}", "--max_train_samples", "none"]
    )
    assert str(training_args.eval_strategy.value) == "no"
    assert args.dataset == {"path": "parquet", "data_dir": "./x"} and args.max_train_samples is None


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: baseline\nlearning_rate: [1e-3\nseed: 1\n")
    with pytest.raises(ConfigError, match=rf"{bad}:3:\d+: YAML syntax error"):
        read_yaml(bad)
    with pytest.raises(ConfigError, match=rf"{bad}:3:"):
        RecipeArgumentParser(FinetuneArguments).parse([str(bad)])


def test_bad_command_lines_exit_2_with_the_reason(capsys):
    parser = RecipeArgumentParser(PretrainArguments)
    with pytest.raises(SystemExit) as exit_:
        parser.parse(["--learning_rat", "1e-3"], exit_on_error=True)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "learning_rat (did you mean learning_rate" in err and "usage:" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--train_sampling_strategy", "group_by_length"], "--train_sampling_strategy 'group_by_length': it"),
        (["--neftune_noise_alpha", "5"], "NEFTune"),
        (["--remove_unused_columns", "true"], "reads the `image` column"),
        (
            ["--push_to_hub", "--hub_model_id", "org/x", "--hub_strategy", "all_checkpoints"],
            "--hub_strategy all_checkpoints",
        ),
    ],
)
def test_options_the_recipes_cannot_honour_are_refused(argv, message):
    parser = RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE)
    _, training_args, _ = parser.parse(argv)
    with pytest.raises(ValueError, match="cannot be used with the recipes") as err:
        check_training_options(training_args, parser.given_keys)
    assert message in str(err.value)


def test_intervals_are_chosen_only_where_the_user_chose_none(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: demo\nmethod: baseline\ntask_model_config: {model_type: resnet}\n")
    parser = RecipeArgumentParser(FinetuneArguments)
    _, args, _ = parser.parse([str(config), "--per_device_train_batch_size", "32", "--num_train_epochs", "2"])
    assert args.logging_steps == 500 and str(args.eval_strategy.value) == "no"  # Trainer's defaults
    choose_intervals(args, parser.given_keys, train_rows=3200, has_validation=True)
    assert optimizer_steps(args, 3200) == 200
    assert args.logging_steps == 10 and str(args.eval_strategy.value) == "steps" and args.eval_steps == 40

    _, args, _ = parser.parse([str(config), "--logging_steps", "7", "--eval_strategy", "epoch"])
    choose_intervals(args, parser.given_keys, train_rows=3200, has_validation=True)
    assert args.logging_steps == 7 and str(args.eval_strategy.value) == "epoch"  # the user's choice stays


SHIPPED_CONFIGS = sorted(
    [
        p
        for d in ("demo", "vit-base-patch16", "resnet50", "convnext-tiny", "fer2013")
        for p in (ROOT / "recipes" / d).glob("*.yaml")
    ]
    + list((ROOT / "benchmarks" / "results").glob("*/runs/*/*/seed*.yaml"))
)


def _parsed_as_written(parsed, written) -> bool:
    """A value the parser produced is the one the YAML wrote: an enum by its value, a tracker list from one
    name (`report_to: none` is no tracker), a float to rounding."""
    parsed = getattr(parsed, "value", parsed)
    if written == "none" and parsed == []:
        return True
    if isinstance(parsed, list) and not isinstance(written, list):
        return parsed == [written]
    if isinstance(parsed, float) and isinstance(written, (int, float)):
        return abs(parsed - written) <= 1e-12 * max(1.0, abs(written))
    return parsed == written


@pytest.mark.parametrize("config", SHIPPED_CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_shipped_run_config_parses_for_its_recipe(config):
    """Each recipe YAML and each study cell's config (docs/results.md says they rerun any cell) is read by the
    recipe it is for, with no unknown key or bad value, and every value it writes is the one the run gets.
    (In-process, about 30 ms a config: not slow.)"""
    stage = "pretrain" if "pretrain" in config.name or "/runs/pretrain/" in config.as_posix() else "finetune"
    script_class = PretrainArguments if stage == "pretrain" else FinetuneArguments
    args, training_args, _ = RecipeArgumentParser(script_class).parse([str(config)])
    assert isinstance(args, script_class)
    for key, written in read_yaml(config).items():
        parsed = getattr(args, key) if hasattr(args, key) else getattr(training_args, key)
        if key == "affective_sources" and isinstance(written, str):  # a mixture file, read into its sources
            assert parsed == read_yaml(ROOT / written)["affective_sources"], (key, parsed)
            continue
        assert _parsed_as_written(parsed, written), (key, written, parsed)


@pytest.mark.slow  # spawns a process (accelerate launch, then the recipe: about 15 s)
def test_a_bad_option_under_the_makefiles_launcher_is_said_once_without_a_traceback():
    """`make demo`'s launcher (the Makefile's LAUNCH, with `-q`) shows a recipe's refusal once and no
    traceback of its own; without `-q` accelerate repeats the message twice more inside its traceback."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    launch = next(line for line in makefile.splitlines() if line.startswith("LAUNCH :="))
    launch = launch.removeprefix("LAUNCH :=").replace("$(shell nproc 2>/dev/null || echo 1)", "1")
    accelerate = str(Path(sys.executable).parent / "accelerate")
    command = launch.replace("$(VENV)/bin/accelerate", accelerate).split()
    result = subprocess.run(
        [*command, "recipes/finetune.py", "--lerning_rate", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert output.count("lerning_rate (did you mean learning_rate") == 1, output[-4000:]
    assert "Traceback" not in output, output[-4000:]


@pytest.mark.slow  # spawns processes or trains
def test_help_imports_no_training_stack():
    """`--help` answers in about the time of transformers' own argument parser: the recipes import the
    models, data sets and pipelines only once they run (benchmarks/help_time.py measures it)."""
    heavy = (
        "datasets",
        "torchvision",
        "transformers.modeling_utils",
        "transformers.pipelines",
        "emoreg_hf.training",
    )
    for script in ("finetune.py", "pretrain.py"):
        code = (
            "import runpy, sys\n"
            f"sys.argv = ['recipes/{script}', '--help']\n"
            "try:\n"
            f"    runpy.run_path('recipes/{script}', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            f"print('IMPORTED', [m for m in {heavy!r} if m in sys.modules])\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "usage:" in result.stdout and "IMPORTED []" in result.stdout, (script, result.stdout[-500:])


def test_config_flag_is_the_positional_config(capsys):
    """`--config FILE` (TRL, timm, the alignment-handbook) is the same as giving FILE first."""
    parser = RecipeArgumentParser(FinetuneArguments, None)
    positional = parser.parse([str(DEMO_FINETUNE), "--learning_rate", "0.01"])
    for argv in (
        ["--config", str(DEMO_FINETUNE), "--learning_rate", "0.01"],
        ["--learning_rate", "0.01", f"--config={DEMO_FINETUNE}"],
    ):
        args, training_args, path = RecipeArgumentParser(FinetuneArguments, None).parse(argv)
        assert path == str(DEMO_FINETUNE) and args == positional[0]
        assert training_args.learning_rate == 0.01
    assert "using the demo config" not in capsys.readouterr().err
    with pytest.raises(ConfigError, match="two config files"):
        RecipeArgumentParser(FinetuneArguments, None).parse(
            [str(DEMO_FINETUNE), "--config", str(DEMO_FINETUNE)]
        )
    with pytest.raises(ConfigError, match="--config needs a file"):
        RecipeArgumentParser(FinetuneArguments, None).parse(["--config"])
    with pytest.raises(SystemExit):
        RecipeArgumentParser(FinetuneArguments, None).parse(["-h"])
    assert "--config CONFIG.yaml" in capsys.readouterr().out


def test_ablate_takes_config_flag(tmp_path):
    from emoreg_hf.ablation import load_config
    from emoreg_hf.config_reading import split_config_argument

    path, rest = split_config_argument(["--config", "recipes/ablations/demo.yaml", "--seeds", "2"])
    assert path == "recipes/ablations/demo.yaml" and rest == ["--seeds", "2"]
    config = load_config(ROOT / path, rest, repo_root=ROOT)
    assert config.seeds == [0, 1]


def test_shipped_yamls_name_only_trackers_an_extra_installs_and_a_missing_one_is_refused(monkeypatch, capsys):
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = set()
    for path in (ROOT / "recipes").rglob("*.yaml"):
        value = read_yaml(path).get("report_to")
        named.update([value] if isinstance(value, str) else value or [])
    assert "all" not in named and named - {"none"} <= set(extras), named

    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: [])
    parser = RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE)
    _, training_args, _ = parser.parse(["--report_to", "tensorboard"])
    with pytest.raises(
        ValueError,
        match=r"--report_to tensorboard: tensorboard is not installed \(pip install -e '.\[tensorboard\]'\)",
    ):
        check_training_options(training_args, parser.given_keys)
    monkeypatch.setattr(
        "transformers.training_args.get_available_reporting_integrations", lambda: [], raising=False
    )
    RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE).parse(["--report_to", "all"])
    assert "report_to all: no tracker is installed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "-1e-3",
            "--learning_rate -0.001: a negative learning rate climbs the loss",
        ),  # not "expected one argument"
        ("-.5", "--learning_rate -0.5: a negative learning rate climbs the loss"),
        (
            "1e-320",
            "--learning_rate 1e-320: too small to change any weight",
        ),  # subnormal: nothing would train
        ("nan", "--learning_rate nan: not a finite number"),
    ],
)
def test_learning_rates_that_train_nothing_exit_2_with_their_own_reason(tmp_path, capsys, value, message):
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_:
        RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE).parse(
            ["--learning_rate", value, "--output_dir", str(run)], exit_on_error=True
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and "usage:" in err, err
    assert "expected one argument" not in err and not run.exists()
    _, training_args, _ = RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE).parse(
        ["--learning_rate", "1e-5"]
    )
    assert training_args.learning_rate == 1e-5  # a small, real learning rate stays fine


def test_a_config_that_is_a_directory_is_called_one(tmp_path, capsys):
    for argv in ([str(tmp_path)], ["--config", str(tmp_path)]):
        with pytest.raises(SystemExit) as exit_:
            RecipeArgumentParser(FinetuneArguments, DEMO_FINETUNE).parse(argv, exit_on_error=True)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "not found" not in err, err
        assert f"config file '{tmp_path}' is a directory; a config must be a YAML file" in err
