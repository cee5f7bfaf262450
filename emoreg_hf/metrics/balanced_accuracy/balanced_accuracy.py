"""Balanced accuracy: mean per-class recall, robust to class imbalance in the evaluation split."""

import warnings

import datasets
import evaluate
from sklearn.metrics import balanced_accuracy_score

_DESCRIPTION = "Balanced accuracy: the mean over reference classes of the per-class recall."

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): reference class ids.
Returns:
    balanced_accuracy (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("emoreg_hf/metrics/balanced_accuracy")
    >>> metric.compute(predictions=[0, 0, 1, 1], references=[0, 0, 0, 1])
    {'balanced_accuracy': 0.8333333333333333}
"""

_CITATION = """\
@inproceedings{brodersen2010balanced,
  title={The balanced accuracy and its posterior distribution},
  author={Brodersen, Kay H. and Ong, Cheng Soon and Stephan, Klaas E. and Buhmann, Joachim M.},
  booktitle={ICPR}, year={2010}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BalancedAccuracy(evaluate.Metric):
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
        with warnings.catch_warnings():
            # Predicted classes absent from the references only trigger a warning; the score is still defined.
            warnings.simplefilter("ignore", UserWarning)
            score = balanced_accuracy_score(references, predictions)
        return {"balanced_accuracy": float(score)}
