"""One place per concept: the registry of methods and controls, EmoReg's options declared once, the
regulation modes, and what reads them (the record's fields, the card's expectations, the ablation)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from records import finetune_record, write_run
from tiny_models import CIFAR10, EKMAN7, resnet_config, vit_config

from emoreg_hf import ablation, registry
from emoreg_hf.cli import RecipeArgumentParser
from emoreg_hf.configs import FinetuneArguments
from emoreg_hf.configuration_emoreg import EmoRegConfig, EmoRegOptions, emoreg_options
from emoreg_hf.data import SourceSpec
from emoreg_hf.finish import finetune_fields
from emoreg_hf.modeling_emoreg import EmoRegForImageClassification
from emoreg_hf.publish import card_context, load_run_folder
from emoreg_hf.regulation_emoreg import REGULATIONS

ROOT = Path(__file__).resolve().parents[1]
BASE = ["--dataset", "demo", "--method", "baseline", "--task_model_config", "{model_type: resnet}"]


def doc_example_control() -> registry.Control:
    """The control docs/architecture.md shows as a one-entry change, evaluated as written there."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(
        r"```python\n# emoreg_hf/registry.py, one more entry[^\n]*\n(Control\(.*?\n\))\n```", text, re.S
    )
    assert block, "docs/architecture.md lost its one-entry control example"
    return eval(block.group(1), vars(registry))  # noqa: S307 (the project's own documentation)


@pytest.fixture
def example_control(monkeypatch):
    control = doc_example_control()
    monkeypatch.setitem(registry.CONTROLS, control.name, control)  # the one entry
    registry._check_tables()
    return control


def test_a_control_from_existing_switches_is_one_entry(example_control, tmp_path):
    name, pair = example_control.name, example_control.pairs_with
    assert name in registry.MATRIX and (pair, name) in registry.control_pairs()
    # the ablation plans it (its stage-1 variant once per seed) and runs it with its switches
    config = ablation.load_config(
        {"pretrain": {}, "finetune": {}, "methods": [pair, name], "seeds": [0], "output_dir": str(tmp_path)}
    )
    plan = {run.key: run for run in ablation.plan_runs(config)}
    assert set(plan) == {
        "pretrain/normal/seed0",
        "pretrain/shuffled/seed0",
        f"finetune/{pair}/seed0",
        f"finetune/{name}/seed0",
    }
    assert plan[f"finetune/{name}/seed0"].values["regulation"] == "fixed"
    assert plan[f"finetune/{name}/seed0"].needs == "pretrain/shuffled/seed0"
    # its runs carry its record flag; the pair's runs do not
    assert registry.control_flags({"method": "emoreg", "regulation": "fixed"}, "shuffled")["shuffled_emotion"]
    assert not any(registry.control_flags({"method": "emoreg", "regulation": "fixed"}, "normal").values())
    # the report pairs it with its arm and draws the conclusion its entry names
    records = {
        arm: {s: {"test_accuracy": v + 0.01 * s} for s in range(3)} for arm, v in ((pair, 0.6), (name, 0.5))
    }
    summary = ablation.summarize(records)
    (comparison,) = summary["comparisons"]
    assert (comparison["method"], comparison["versus"]) == (pair, name)
    text = ablation.render_markdown(summary)
    assert f"{pair} beats its shuffled-label control ({name}) beyond noise" in text


def test_record_flags_match_the_recorded_controls_of_every_matrix_entry():
    """Each control's arm, as the ablation runs it, is recognised by its own flag; the arms it pairs with are
    not flagged (the flags of an arm's runs say which control it is, nothing else)."""
    for arm in registry.MATRIX.values():
        flags = registry.control_flags(arm.switches, arm.stage1)
        expected = {registry.CONTROLS[arm.name].record_flag} if arm.name in registry.CONTROLS else set()
        assert {flag for flag, on in flags.items() if on} == expected, arm.name


def test_expected_comparisons_of_a_regulated_method():
    labels = [e.label for e in registry.expected_comparisons("emoreg")]
    assert labels == [
        "baseline",
        "transfer",
        "shuffled-emotion control",
        "no-pretraining control",
        "non-emotion (k-means) control",
    ]
    assert registry.expected_comparisons("baseline") == []
    with pytest.raises(ValueError, match="unknown method 'magic'; known methods: emoreg, baseline, transfer"):
        registry.method("magic")


def test_rho_init_is_refused_when_the_command_line_is_parsed():
    """Before any data is read: the recipes parse first, and parsing validates EmoReg's options."""
    with pytest.raises(ValueError, match=r"--rho_init 1\.5 is not valid; allowed values: 0 <= rho_init <= 1"):
        RecipeArgumentParser(FinetuneArguments).parse([*BASE, "--rho_init", "1.5"])
    with pytest.raises(
        ValueError, match="--affect_lr_scale -1.0 is not valid; allowed values: affect_lr_scale >= 0"
    ):
        RecipeArgumentParser(FinetuneArguments).parse([*BASE, "--affect_lr_scale", "-1"])


def test_options_are_declared_once():
    """The recipe dataclass and the model config have exactly the declared options, with their defaults."""
    declared = {f.name: f.default for f in dataclasses.fields(EmoRegOptions)}
    recipe = {f.name: f.default for f in dataclasses.fields(FinetuneArguments) if f.name in declared}
    assert recipe == declared
    config = EmoRegConfig(task_config=vit_config(), affect_config=resnet_config())
    assert dataclasses.asdict(emoreg_options(config)) == declared
    help_text = RecipeArgumentParser(FinetuneArguments).format_help()
    for option in dataclasses.fields(EmoRegOptions):
        assert f"--{option.name}" in help_text
    assert "fixed, learned, adaptive" in help_text  # a choice option's words come from the declaration


@pytest.mark.parametrize("mode", list(REGULATIONS))
def test_each_regulation_mode_keeps_init_rho_and_formula_together(mode):
    torch.manual_seed(0)
    config = EmoRegConfig(
        task_config=vit_config(), affect_config=resnet_config(), regulation=mode, rho_init=0.3,
        task_image_size=[32, 32],
    )  # fmt: skip
    model = EmoRegForImageClassification(config).eval()
    with torch.no_grad():
        rho = model(torch.randn(2, 3, 32, 32)).regulation
    torch.testing.assert_close(rho, torch.full((2,), 0.3))  # every mode starts at rho_init
    formula = REGULATIONS[mode].card_formula(0.3)
    assert "0.3" in formula and "{rho_init}" not in formula
    with pytest.raises(ValueError, match="regulation='sometimes'.*allowed values: fixed, learned, adaptive"):
        EmoRegConfig(task_config=vit_config(), affect_config=resnet_config(), regulation="sometimes")


def test_a_card_of_an_unknown_regulation_mode_is_refused(tmp_path):
    record = finetune_record()
    record.emoreg = {**record.emoreg, "regulation": "sometimes"}
    run = load_run_folder(write_run(tmp_path / "run", record))
    with pytest.raises(ValueError, match="regulation mode 'sometimes', which this emoreg-hf does not know"):
        card_context([run], repo_id="org/x")


def test_the_record_reads_the_method_and_its_options_from_the_registry():
    args = SimpleNamespace(
        **dataclasses.asdict(EmoRegOptions(regulation="fixed", rho_init=0.25)),
        method="emoreg",
        task_model_name_or_path=None,
        task_model_config={"model_type": "vit"},
        affect_model_name_or_path="org/affect",
        affect_init="random",
    )
    affect = resnet_config(EKMAN7)
    affect.emotion_taxonomy, affect.shuffled_emotion_labels = "ekman7", True
    model = EmoRegForImageClassification(
        EmoRegConfig(task_config=vit_config(CIFAR10), affect_config=affect, regulation="fixed")
    )
    target = SourceSpec(path="uoft-cs/cifar10", source="cifar10")
    fields = finetune_fields(args, model, target, {"train": [0] * 3, "test": [0] * 2})
    assert fields["emoreg"] == dataclasses.asdict(emoreg_options(args))
    assert fields["controls"] == {
        "kmeans_labels": False,
        "no_pretraining": True,
        "positive_control": False,
        "shuffled_emotion": True,
    }
    assert fields["taxonomy"] == {"name": "ekman7", "names": EKMAN7} and fields["label_names"] == CIFAR10
    assert fields["base_models"] == ["org/affect"] and fields["models"]["task_config"] == {
        "model_type": "vit"
    }
    args.method = "baseline"
    baseline = finetune_fields(args, model, target, {"train": [0]})
    assert baseline["emoreg"] is None and baseline["models"]["affect"] is None
    assert baseline["controls"] == {
        "kmeans_labels": False,
        "no_pretraining": True,
        "positive_control": False,
        "shuffled_emotion": False,
    }


# A stage-2 method name compared to something: `== "emoreg"`, `!= "baseline"`, `in ("emoreg", ...)`.
_COMPARED = re.compile(
    r"""(==|!=|\bin\s*[(\[]|\bis\b)\s*[(\[]?\s*["'](?:%s)["']|["'](?:%s)["']\s*(==|!=|\bin\b)"""
    % (("|".join(registry.METHODS),) * 2)
)
_LOOP = re.compile(r"\bfor\s+[\w, ]+\s+in\b")  # `for name in ("baseline", ...)` iterates, compares nothing
_ALLOWED = {
    "registry.py",
    "configuration_emoreg.py",
    "modeling_emoreg.py",
    "regulation_emoreg.py",
    "backbones.py",
    "pipeline_emoreg.py",
}


def test_no_method_name_is_compared_outside_the_registry_and_the_model_files():
    found = []
    for folder in ("emoreg_hf", "recipes", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md") or path.name in _ALLOWED:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if _COMPARED.search(_LOOP.sub("", line)):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "\n".join(found)
