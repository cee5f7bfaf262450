"""Top-1 accuracy, shipped locally so `evaluate.load` works with HF_HUB_OFFLINE=1."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Top-1 accuracy: the fraction of examples whose predicted class equals the reference class."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): reference class ids.
Returns:
    accuracy (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("emoreg_hf/metrics/accuracy")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references):
        predictions, references = np.asarray(predictions), np.asarray(references)
        return {"accuracy": float((predictions == references).mean())}
