"""Image-classification metrics in one `evaluate` module: top-1 and top-k accuracy, macro-F1, balanced
accuracy (scikit-learn) and expected calibration error (Guo et al., 2017; equal-width bins).

The inputs are four numbers per example, not the (N, C) scores: the predicted class, the reference, the
top-1 confidence and the reference's rank among the scores. `evaluate` stores its inputs in Arrow before
computing, and 10,000 x 100 CIFAR-100 logits cost ten times the metrics themselves to store;
`emoreg_hf.metrics.compute_classification_metrics` derives the four columns from logits.
"""

import warnings

import datasets
import evaluate
import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score

_DESCRIPTION = (
    "Top-1 accuracy, top-k accuracy (k = 5 by default, clipped to the number of classes), macro-F1 and balanced "
    "accuracy (scikit-learn), and expected calibration error with equal-width confidence bins: the top-1 "
    "confidence of each example is binned into (b / n, (b + 1) / n] and "
    "ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids (the argmax of the scores).
    references (`list[int]`): reference class ids.
    confidences (`list[float]`): top-1 probability of each example (for ECE).
    reference_ranks (`list[int]`): how many classes scored strictly higher than the reference (0 = top-1;
        ties count in the reference's favour).
    k (`int`, defaults to 5): top-k accuracy counts `reference_ranks < k`; give min(k, number of classes).
    n_bins (`int`, defaults to 15): ECE bins.
Returns:
    accuracy, top5_accuracy (the key keeps its name whatever k is), macro_f1, balanced_accuracy, ece: floats.
Examples:
    >>> metric = evaluate.load("emoreg_hf/metrics/classification")
    >>> metric.compute(predictions=[0, 1], references=[0, 0], confidences=[0.9, 0.6], reference_ranks=[0, 1])["accuracy"]
    0.5
"""

_CITATION = """\
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML}, year={2017}
}
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12}, pages={2825--2830}, year={2011}
}
"""


def expected_calibration_error(confidences, correct, n_bins: int = 15) -> float:
    """ECE over equal-width bins (b / n, (b + 1) / n]; a confidence of exactly 0 joins bin 0."""
    confidences, correct = np.asarray(confidences, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    bins = np.clip(np.ceil(confidences * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=confidences, minlength=n_bins)
    )
    return float(gap.sum() / max(len(confidences), 1)) if counts.any() else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                    "confidences": datasets.Value("float64"),
                    "reference_ranks": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, confidences, reference_ranks, k=5, n_bins=15):
        predictions, references = np.asarray(predictions), np.asarray(references)
        with warnings.catch_warnings():
            # Predicted classes absent from the references only trigger a warning; the scores are defined.
            warnings.simplefilter("ignore", UserWarning)
            balanced = balanced_accuracy_score(references, predictions)
        return {
            "accuracy": float((predictions == references).mean()),
            "top5_accuracy": float((np.asarray(reference_ranks) < max(1, int(k))).mean()),
            "macro_f1": float(f1_score(references, predictions, average="macro", zero_division=0)),
            "balanced_accuracy": float(balanced),
            "ece": expected_calibration_error(confidences, predictions == references, n_bins),
        }
