"""Stage-2 methods and their controls, each declared once.

A **method** is what `finetune.py --method NAME` builds: which pathways the model has and whether their
responses are regulated (EmoReg's options apply). An **arm** is one entry of the ablation matrix: a method
with its settings (`switches`, finetune keys) on a stage-1 variant. A **control** is an arm that exists to be
compared with another one (`pairs_with`): it has a flag in the run record, a label on the model card and,
where it tests the emotion itself, a conclusion in the ablation report. A **stage-1 variant** is how the
affective checkpoint was trained (`normal`, or `shuffled` emotion labels; declared in `stage1_variants`).

Everything else reads these tables: the recipe arguments (`configs`), the models built (`models`), the run
record's `controls`, the card (tags, wording, the controls it expects), the Controls table's kinds, and the
ablation's matrix, pairs and conclusions. A new control built from existing switches is one `Control`
entry in `CONTROLS` (docs/architecture.md shows one). This module imports only `stage1_variants`.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .stage1_variants import NORMAL_STAGE1, STAGE1_VARIANTS

PATHWAYS = ("task", "affect")  # the task backbone; the affective (stage-1) backbone


@dataclass(frozen=True)
class Method:
    """A stage-2 method (`--method NAME`)."""

    name: str
    description: str
    pathways: tuple[str, ...]  # the backbones the model is built from (a subset of PATHWAYS)
    regulated: bool  # two responses blended by ρ: EmoReg's options apply and are recorded
    tags: tuple[str, ...] = ()  # model-card tags of its checkpoints (besides the common ones)

    @property
    def uses_task(self) -> bool:
        return "task" in self.pathways

    @property
    def uses_affect(self) -> bool:
        return "affect" in self.pathways


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "emoreg",
            "task and affective pathways, their responses blended by ρ",
            ("task", "affect"),
            regulated=True,
            tags=("emoreg-classifier",),
        ),
        Method("baseline", "task pathway alone (ρ = 0)", ("task",), regulated=False),
        Method(
            "transfer",
            "fine-tune the affective backbone directly",
            ("affect",),
            regulated=False,
            tags=("emoreg-classifier",),
        ),
    )
}
DEFAULT_METHOD = "emoreg"


@dataclass(frozen=True)
class Arm:
    """One entry of the ablation matrix: finetune `switches` (a method and its settings) on a stage-1
    variant (`stage1`; None when the method has no affective pathway)."""

    name: str
    description: str
    switches: dict[str, Any]
    stage1: str | None = NORMAL_STAGE1
    default: bool = True  # run when an ablation config names no methods

    @property
    def method(self) -> Method:
        return METHODS[self.switches["method"]]


@dataclass(frozen=True)
class Control(Arm):
    """An arm that is the control of another (`pairs_with`). What tells its runs apart from that arm's
    (its own switches, or its stage-1 variant) sets `record_flag` in a run's record (`RunRecord.controls`);
    `label` is how a card names it; `conclusion` names the ablation report's conclusion block for the pair
    (`shuffled_labels`: is it the emotion?), None for none."""

    pairs_with: str = ""
    record_flag: str = ""
    label: str = ""
    conclusion: str | None = None
    attributes_emotion: bool = True  # needed before a gain is attributed to emotion (cards expect it)


ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm("baseline", METHODS["baseline"].description, {"method": "baseline"}, stage1=None),
        Arm("transfer", METHODS["transfer"].description, {"method": "transfer"}),
        Arm("emoreg_fixed", "EmoReg, constant ρ", {"method": "emoreg", "regulation": "fixed"}),
        Arm("emoreg_learned", "EmoReg, one learned ρ", {"method": "emoreg", "regulation": "learned"}),
        Arm("emoreg_adaptive", "EmoReg, ρ(x) per image", {"method": "emoreg", "regulation": "adaptive"}),
        Arm(
            "emoreg_film",
            "EmoReg adaptive, FiLM influence",
            {"method": "emoreg", "regulation": "adaptive", "influence": "film"},
            default=False,
        ),
    )
}
CONTROLS: dict[str, Control] = {
    c.name: c
    for c in (
        Control(
            "shuffled_emotion",
            "EmoReg adaptive on a shuffled-label stage 1",
            {"method": "emoreg", "regulation": "adaptive"},
            stage1="shuffled",
            pairs_with="emoreg_adaptive",
            record_flag="shuffled_emotion",
            label="shuffled-emotion control",
            conclusion="shuffled_labels",
        ),
        Control(
            "no_pretraining",
            "EmoReg adaptive, random affective pathway",
            {"method": "emoreg", "regulation": "adaptive", "affect_init": "random"},
            pairs_with="emoreg_adaptive",
            record_flag="no_pretraining",
            label="no-pretraining control",
        ),
        Control(
            "transfer_shuffled",
            "transfer from a shuffled-label stage 1",
            {"method": "transfer"},
            stage1="shuffled",
            pairs_with="transfer",
            record_flag="shuffled_emotion",
            label="shuffled-emotion control of transfer",
            conclusion="shuffled_labels",
            default=False,  # optional: the control for `transfer`
        ),
        Control(
            "emoreg_kmeans",
            "EmoReg adaptive on a k-means-label stage 1 (same faces, no emotion)",
            {"method": "emoreg", "regulation": "adaptive"},
            stage1="kmeans",
            pairs_with="emoreg_adaptive",
            record_flag="kmeans_labels",
            label="non-emotion (k-means) control",
            default=False,
        ),
        Control(
            "positive_control",
            "EmoReg adaptive on a stage 1 trained on the target's training split",
            {"method": "emoreg", "regulation": "adaptive"},
            stage1="target",
            pairs_with="emoreg_adaptive",
            record_flag="positive_control",
            label="positive control (stage 1 on the target task)",
            default=False,
            attributes_emotion=False,  # it shows the design can see a gain; it does not test emotion
        ),
    )
}
#: every matrix entry: the arms, then the controls, in the order the report lists them (a live view of both)
MATRIX: Mapping[str, Arm] = ChainMap(CONTROLS, ARMS)
#: the arm every other is compared with in the ablation report
REFERENCE_ARM = "baseline"


def _check_tables() -> None:
    """The tables are consistent: every arm names a known method and stage-1 variant, every control pairs
    with a known arm of the matrix and differs from it."""
    for method in METHODS.values():
        if (
            not method.pathways
            or set(method.pathways) - set(PATHWAYS)
            or method.regulated != (len(method.pathways) == 2)
        ):
            raise ValueError(
                f"registry: method {method.name!r} must be a regulated pair of pathways or one alone"
            )
    for arm in MATRIX.values():
        if arm.switches.get("method") not in METHODS:
            raise ValueError(f"registry: arm {arm.name!r} names no known method ({arm.switches})")
        if (arm.stage1 is None) == arm.method.uses_affect:
            raise ValueError(
                f"registry: arm {arm.name!r} must name a stage-1 variant iff it has an affective pathway"
            )
        if arm.stage1 is not None and arm.stage1 not in STAGE1_VARIANTS:
            raise ValueError(f"registry: arm {arm.name!r} names an unknown stage-1 variant {arm.stage1!r}")
    for control in CONTROLS.values():
        if control.pairs_with not in MATRIX:
            raise ValueError(
                f"registry: control {control.name!r} pairs with unknown arm {control.pairs_with!r}"
            )
        if not control.record_flag or not control.label or not distinguishing(control):
            raise ValueError(
                f"registry: control {control.name!r} needs a record flag, a label, and a difference"
            )


def distinguishing(control: Control) -> dict[str, Any]:
    """What tells a control's runs apart from those of the arm it pairs with: its own finetune switches and,
    under the key `stage1`, its stage-1 variant where that differs."""
    pair = MATRIX[control.pairs_with]
    differs = {k: v for k, v in control.switches.items() if pair.switches.get(k, _UNSET) != v}
    if control.stage1 != pair.stage1:
        differs["stage1"] = control.stage1
    return differs


_UNSET = object()


# -- what the rest of the package asks -------------------------------------------------------------------


def method(name: str | None) -> Method | None:
    """The method of a run (None for stage 1); an unknown name is an error naming the known ones."""
    if name is None:
        return None
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


def control_flags(finetune_args: Mapping[str, Any], stage1: str | None) -> dict[str, bool]:
    """`RunRecord.controls` of a stage-2 run: each control's flag, set when the run has what distinguishes
    that control from the arm it pairs with (`finetune_args`: the recipe arguments as a dict; `stage1`: the
    variant of its affective checkpoint, None without one). Flags shared by controls are or-ed."""
    flags: dict[str, bool] = {}
    for control in CONTROLS.values():
        differs = distinguishing(control)
        holds = all(
            (stage1 == value) if key == "stage1" else (finetune_args.get(key) == value)
            for key, value in differs.items()
        )
        flags[control.record_flag] = flags.get(control.record_flag, False) or holds
    return dict(sorted(flags.items()))


@dataclass(frozen=True)
class ExpectedComparison:
    """A configuration an EmoReg card should be compared with: a method (`method`) or a control (`flag`)."""

    label: str
    method: str | None = None
    flag: str | None = None

    def matches(self, method_name: str | None, controls: Mapping[str, bool]) -> bool:
        if self.method is not None:
            return method_name == self.method
        return bool(controls.get(self.flag))


def expected_comparisons(method_name: str | None) -> list[ExpectedComparison]:
    """What a card of `method_name` should be compared with before a gain can be attributed to emotion:
    for a regulated method, every unregulated method and every control of a regulated arm."""
    this = method(method_name)
    if this is None or not this.regulated:
        return []
    expected = [ExpectedComparison(m.name, method=m.name) for m in METHODS.values() if not m.regulated]
    for control in CONTROLS.values():
        if (
            control.attributes_emotion
            and MATRIX[control.pairs_with].method.regulated
            and control.label not in {e.label for e in expected}
        ):
            expected.append(ExpectedComparison(control.label, flag=control.record_flag))
    return expected


def control_pairs() -> list[tuple[str, str]]:
    """(arm, its control) for every control: the ablation's "is it the emotion?" comparisons."""
    return [(control.pairs_with, control.name) for control in CONTROLS.values()]


def default_arms() -> list[str]:
    return [name for name, arm in MATRIX.items() if arm.default]


_check_tables()

__all__ = [
    "ARMS",
    "CONTROLS",
    "DEFAULT_METHOD",
    "MATRIX",
    "METHODS",
    "PATHWAYS",
    "REFERENCE_ARM",
    "Arm",
    "Control",
    "ExpectedComparison",
    "Method",
    "control_flags",
    "control_pairs",
    "default_arms",
    "distinguishing",
    "expected_comparisons",
    "method",
]
