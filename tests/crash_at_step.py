"""The crash the resume tests inject: Python run before a recipe, so that its Trainer raises at the start of
a given optimizer step (`CRASH_AT_STEP.format(step=N)`), after the checkpoints before it were saved."""

CRASH_AT_STEP = """
from transformers import TrainerCallback
import emoreg_hf.trainer as trainer

class Crash(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == {step}:
            raise RuntimeError("simulated crash at step {step}")

init = trainer.EmoRegTrainer.__init__
def patched(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.add_callback(Crash())
trainer.EmoRegTrainer.__init__ = patched
"""
