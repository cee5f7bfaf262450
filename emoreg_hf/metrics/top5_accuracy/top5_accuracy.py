"""Top-k accuracy (k = 5 by default, clipped to the number of classes), from per-class scores."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Top-k accuracy: the fraction of examples whose reference class is among the k highest-scoring classes. "
    "k defaults to 5 and is clipped to the number of classes, so a 3-class problem reports top-3 (= 1.0)."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per-class scores (logits or probabilities), shape (N, C).
    references (`list[int]`): reference class ids.
    k (`int`, defaults to 5): how many top classes count as a hit; used as min(k, C).
Returns:
    top5_accuracy (`float`): in [0, 1] (the key keeps its name whatever k is).
Examples:
    >>> metric = evaluate.load("emoreg_hf/metrics/top5_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[0, 1], k=1)
    {'top5_accuracy': 0.0}
"""

_CITATION = ""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Top5Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, k=5):
        scores, references = np.asarray(predictions, dtype=np.float64), np.asarray(references)
        k = max(1, min(int(k), scores.shape[1]))
        # Rank by "how many classes score strictly higher": ties count in the reference's favour.
        reference_scores = scores[np.arange(len(references)), references]
        rank = (scores > reference_scores[:, None]).sum(axis=1)
        return {"top5_accuracy": float((rank < k).mean())}
