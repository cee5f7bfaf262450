"""emoreg-hf: Emotional Regulation (arXiv:2606.13081) for image classification on the Hugging Face stack.

Importing the package registers EmoReg with `AutoConfig` / `AutoModelForImageClassification`, marks both
classes for remote code (so every saved checkpoint carries `auto_map` and its own code files), and
registers the `emoreg-image-classification` pipeline, without importing the modeling stack: the
configuration is registered at once (it is light); the model class the first time an `EmoRegConfig` is
built (every Auto lookup starts from a config instance); the pipeline when `transformers.pipelines` is
imported (`pipeline(...)` imports it). So `import emoreg_hf`, and every recipe's `--help`, costs about
what `HfArgumentParser(TrainingArguments)` costs, not the whole of torch, the pipelines and the models.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import threading

from transformers import AutoConfig

from .configuration_emoreg import PIPELINE_TASK, EmoRegConfig
from .configuration_small_resnet import SmallResNetConfig

__version__ = "0.1.0"

AutoConfig.register(EmoRegConfig.model_type, EmoRegConfig, exist_ok=True)
EmoRegConfig.register_for_auto_class()
# The small-image ResNet (configuration_emoreg registers its config with AutoConfig; its model class is
# registered with the EmoReg model, lazily): a stage-1 checkpoint of this family carries its own code too,
# so it loads with trust_remote_code=True anywhere.
SmallResNetConfig.register_for_auto_class()

_LAZY = {  # public names imported on first use (PEP 562)
    "EmoRegForImageClassification": "modeling_emoreg",
    "EmoRegImageClassifierOutput": "modeling_emoreg",
    "EmoRegImageClassificationPipeline": "pipeline_emoreg",
    "SmallResNetForImageClassification": "modeling_small_resnet",
}
_lock = threading.RLock()
_model_registered = False
_pipeline_registered = False


def register_model() -> None:
    """Register `EmoRegForImageClassification` and the small-image ResNet with
    `AutoModelForImageClassification` (once; idempotent)."""
    global _model_registered
    with _lock:
        if _model_registered:
            return
        _model_registered = True
        from transformers import AutoModelForImageClassification

        from .modeling_emoreg import EmoRegForImageClassification

        AutoModelForImageClassification.register(EmoRegConfig, EmoRegForImageClassification, exist_ok=True)
        EmoRegForImageClassification.register_for_auto_class("AutoModelForImageClassification")
        from .modeling_small_resnet import SmallResNetForImageClassification

        AutoModelForImageClassification.register(
            SmallResNetConfig, SmallResNetForImageClassification, exist_ok=True
        )
        SmallResNetForImageClassification.register_for_auto_class("AutoModelForImageClassification")


def register_pipeline() -> None:
    """`pipeline("emoreg-image-classification", model=...)` in this process, also for plain (baseline /
    transfer) image classifiers; EmoReg checkpoints also carry the class as remote code. (Once; idempotent.)"""
    global _pipeline_registered
    with _lock:
        if _pipeline_registered:
            return
        _pipeline_registered = True
        from transformers import AutoModelForImageClassification
        from transformers.pipelines import PIPELINE_REGISTRY

        from .pipeline_emoreg import EmoRegImageClassificationPipeline

        PIPELINE_REGISTRY.register_pipeline(
            PIPELINE_TASK,
            pipeline_class=EmoRegImageClassificationPipeline,
            pt_model=AutoModelForImageClassification,
            type="image",
        )


def _pipelines_loaded() -> None:
    """`transformers.pipelines` has just run. If it was imported by `pipeline_emoreg` itself (still half
    done), the registration waits for that module to finish (`_pipeline_module_loaded`)."""
    half_done = sys.modules.get(f"{__name__}.pipeline_emoreg")
    if half_done is None or hasattr(half_done, "EmoRegImageClassificationPipeline"):
        register_pipeline()


def _pipeline_module_loaded() -> None:
    if "transformers.pipelines" in sys.modules:
        register_pipeline()


def _registering_post_init(original):
    def __post_init__(self, **kwargs):
        register_model()
        original(self, **kwargs)

    __post_init__.__wrapped__ = original
    return __post_init__


class _AfterImport(importlib.abc.MetaPathFinder):
    """Run `callback` right after the module `name` has been executed (the first time it is imported)."""

    def __init__(self, name: str, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one shot; the finders below find the real module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module, callback = spec.loader.exec_module, self.callback

        def exec_then_register(module):
            exec_module(module)
            callback()

        spec.loader.exec_module = exec_then_register
        return spec


for _config_class in (EmoRegConfig, SmallResNetConfig):
    if not getattr(_config_class.__post_init__, "__wrapped__", None):
        _config_class.__post_init__ = _registering_post_init(_config_class.__post_init__)
if "transformers.pipelines" in sys.modules:
    register_pipeline()
else:
    sys.meta_path.insert(0, _AfterImport("transformers.pipelines", _pipelines_loaded))
    sys.meta_path.insert(0, _AfterImport(f"{__name__}.pipeline_emoreg", _pipeline_module_loaded))


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        if _LAZY[name] in ("modeling_emoreg", "modeling_small_resnet"):
            register_model()
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PIPELINE_TASK",
    "EmoRegConfig",
    "EmoRegForImageClassification",
    "EmoRegImageClassificationPipeline",
    "EmoRegImageClassifierOutput",
    "SmallResNetConfig",
    "SmallResNetForImageClassification",
    "__version__",
]
