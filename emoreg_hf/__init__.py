"""emoreg-hf: Emotional Regulation (arXiv:2606.13081) for image classification on the Hugging Face stack.

Importing the package registers EmoReg with `AutoConfig` / `AutoModelForImageClassification`, and marks
both classes for remote code, so every saved checkpoint carries `auto_map` and its own code files.
"""

from transformers import AutoConfig, AutoModelForImageClassification

from .configuration_emoreg import EmoRegConfig
from .modeling_emoreg import EmoRegForImageClassification, EmoRegImageClassifierOutput

__version__ = "0.1.0"

AutoConfig.register(EmoRegConfig.model_type, EmoRegConfig, exist_ok=True)
AutoModelForImageClassification.register(EmoRegConfig, EmoRegForImageClassification, exist_ok=True)
EmoRegConfig.register_for_auto_class()
EmoRegForImageClassification.register_for_auto_class("AutoModelForImageClassification")

# The `emoreg-image-classification` pipeline: `pipeline("emoreg-image-classification", model=...)` in this process, also for
# plain (baseline / transfer) image classifiers; EmoReg checkpoints also carry the class as remote code.
from transformers.pipelines import PIPELINE_REGISTRY  # noqa: E402

from .pipeline_emoreg import TASK as PIPELINE_TASK  # noqa: E402
from .pipeline_emoreg import EmoRegImageClassificationPipeline  # noqa: E402

PIPELINE_REGISTRY.register_pipeline(
    PIPELINE_TASK,
    pipeline_class=EmoRegImageClassificationPipeline,
    pt_model=AutoModelForImageClassification,
    type="image",
)

__all__ = [
    "PIPELINE_TASK",
    "EmoRegConfig",
    "EmoRegForImageClassification",
    "EmoRegImageClassificationPipeline",
    "EmoRegImageClassifierOutput",
    "__version__",
]
