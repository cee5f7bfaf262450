"""EmoReg's regulation modes: how ρ, the weight of the emotional response, is set. Each mode keeps together
the parameters it adds to the model, their initialisation at `rho_init`, ρ per image and the formula a
model card prints for it; `REGULATIONS` lists them by name, and `EmoRegConfig` accepts exactly those names.

This file travels to the Hub as remote code with `modeling_emoreg.py`; it imports only torch and
transformers' initialisation helpers (light: the configuration reads the names from here at parse time).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import initialization as init

_RHO_EPS = 1e-4  # keeps logit(rho_init) finite for rho_init in {0, 1}


class RegulationMode:
    """One way to set ρ, declared in one place: the parameters it adds to the model (`build`), their
    initialisation at `rho_init` (`init`), ρ per image (`rho`), and the formula a model card prints for
    it (LaTeX; `{rho_init}` is replaced by the checkpoint's value). A new mode is one subclass added to
    `REGULATIONS`; `EmoRegConfig` accepts exactly the names listed there."""

    description: str = ""
    formula: str = ""

    def build(self, model: nn.Module, d_task: int, n_emotions: int) -> None:
        """Add the mode's parameters to `model` (none by default)."""

    def init(self, model: nn.Module, module: nn.Module, rho_init: float) -> bool:
        """Initialise `module` if it is this mode's own; True when it was."""
        return False

    def rho(self, model: nn.Module, h_task: torch.Tensor, emotion_probs: torch.Tensor):
        raise NotImplementedError

    def card_formula(self, rho_init: float) -> str:
        return self.formula.replace("{rho_init}", str(rho_init))


class FixedRegulation(RegulationMode):
    description = "constant ρ"
    formula = r"z = (1-\rho)\, z_N + \rho\, z_E, \qquad \rho = {rho_init} \text{ (fixed)}"

    def rho(self, model, h_task, emotion_probs):
        return h_task.new_full((h_task.shape[0],), float(model.config.rho_init))


class LearnedRegulation(RegulationMode):
    description = "one learned ρ"
    formula = (
        r"z = (1-\rho)\, z_N + \rho\, z_E, \qquad \rho = \sigma(\theta) \text{ (one learned scalar, "
        r"initialised at } {rho_init})"
    )

    def build(self, model, d_task, n_emotions):
        model.rho_logit = nn.Parameter(torch.zeros(()))

    def init(self, model, module, rho_init):
        if module is not model:
            return False
        init.constant_(model.rho_logit, _logit(rho_init))
        return True

    def rho(self, model, h_task, emotion_probs):
        return torch.sigmoid(model.rho_logit).to(h_task.dtype).expand(h_task.shape[0])


class AdaptiveRegulation(RegulationMode):
    description = "ρ(x) per image"
    formula = (
        r"z = (1-\rho(x))\, z_N + \rho(x)\, z_E, \qquad \rho(x) = \sigma\big(w^\top [\,h_T(x);\ e(x)\,] + b\big) "
        r"\text{ (per image, initialised at } \approx {rho_init})"
    )

    def build(self, model, d_task, n_emotions):
        model.regulator = nn.Linear(d_task + n_emotions, 1)

    def init(self, model, module, rho_init):
        if module is not model.regulator:
            return False
        init.zeros_(module.weight)  # ρ(x) starts equal for every image: at rho_init
        init.constant_(module.bias, _logit(rho_init))
        return True

    def rho(self, model, h_task, emotion_probs):
        return torch.sigmoid(model.regulator(torch.cat([h_task, emotion_probs], dim=-1))).squeeze(-1)


#: The regulation modes by name (`EmoRegConfig.regulation`).
REGULATIONS: dict[str, RegulationMode] = {
    "fixed": FixedRegulation(),
    "learned": LearnedRegulation(),
    "adaptive": AdaptiveRegulation(),
}


def _logit(p: float) -> float:
    p = min(max(float(p), _RHO_EPS), 1 - _RHO_EPS)
    return math.log(p / (1 - p))


__all__ = ["REGULATIONS", "RegulationMode"]
