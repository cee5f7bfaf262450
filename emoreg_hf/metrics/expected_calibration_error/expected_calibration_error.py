"""Expected calibration error (Guo et al., 2017): how far the model's confidence is from its accuracy."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Expected calibration error with equal-width confidence bins (15 by default): the top-1 confidence of "
    "each example is binned, and ECE = sum_b |B_b| / N * |accuracy(B_b) - mean confidence(B_b)|. Lower is better."
)

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per-class probabilities, shape (N, C); logits with `from_logits=True`.
    references (`list[int]`): reference class ids.
    n_bins (`int`, defaults to 15): number of equal-width bins over (0, 1].
    from_logits (`bool`, defaults to False): apply a softmax to `predictions` first.
Returns:
    ece (`float`): in [0, 1].
Examples:
    >>> metric = evaluate.load("emoreg_hf/metrics/expected_calibration_error")
    >>> metric.compute(predictions=[[1.0, 0.0], [0.0, 1.0]], references=[0, 1])
    {'ece': 0.0}
"""

_CITATION = """\
@inproceedings{guo2017calibration,
  title={On Calibration of Modern Neural Networks},
  author={Guo, Chuan and Pleiss, Geoff and Sun, Yu and Weinberger, Kilian Q.},
  booktitle={ICML}, year={2017}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExpectedCalibrationError(evaluate.Metric):
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

    def _compute(self, predictions, references, n_bins=15, from_logits=False):
        probs, references = np.asarray(predictions, dtype=np.float64), np.asarray(references)
        if from_logits:
            probs = np.exp(probs - probs.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == references
        # Bin b holds confidences in (b / n_bins, (b + 1) / n_bins]; a confidence of exactly 0 joins bin 0.
        bins = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
        ece = 0.0
        for b in range(n_bins):
            in_bin = bins == b
            if in_bin.any():
                ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
        return {"ece": float(ece)}
