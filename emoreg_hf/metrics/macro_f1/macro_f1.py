"""Macro-averaged F1: every class weighs the same, so rare classes are not hidden by frequent ones."""

import datasets
import evaluate
from sklearn.metrics import f1_score

_DESCRIPTION = (
    "Macro F1: the unweighted mean over classes of the per-class F1 score. Classes absent from both "
    "predictions and references are left out (scikit-learn's default) unless `labels` is given."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): reference class ids.
    labels (`list[int]`, *optional*): the classes to average over.
Returns:
    macro_f1 (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("emoreg_hf/metrics/macro_f1")
    >>> metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'macro_f1': 0.6666666666666666}
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12}, pages={2825--2830}, year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MacroF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, labels=None):
        score = f1_score(references, predictions, labels=labels, average="macro", zero_division=0)
        return {"macro_f1": float(score)}
