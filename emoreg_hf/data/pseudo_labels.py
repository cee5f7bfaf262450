"""Labels that are not emotions, for the non-emotion control of stage 1: k-means clusters of the same faces.

The control must be *learnable* (a stage 1 that learns nothing, like the shuffled-label one, gives a constant
pathway and controls nothing) and *not emotion*: the clusters of the faces' coarse pixels (pose, lighting,
framing) are checked against the emotion labels with Cramér's V and their mutual information, which the
run's results report.
"""

from __future__ import annotations

import io
import logging

import datasets
import numpy as np

from .ferplus import DISTRIBUTION
from .splits import column_values

logger = logging.getLogger(__name__)

CLUSTER_SIDE = 16  # faces are clustered at 16x16 px, grayscale, each image standardised


def _pixels(split: datasets.Dataset, side: int = CLUSTER_SIDE) -> np.ndarray:
    """One row per image: its grayscale pixels at `side` x `side`, zero mean and unit variance per image
    (so a cluster is a layout of light and dark, not an exposure)."""
    import PIL.Image

    images = split.cast_column("image", datasets.Image(decode=False))["image"]
    rows = np.empty((len(images), side * side), dtype=np.float32)
    for i, value in enumerate(images):
        data = value.get("bytes")
        image = PIL.Image.open(io.BytesIO(data) if data is not None else value["path"])
        rows[i] = np.asarray(image.convert("L").resize((side, side), PIL.Image.BILINEAR), np.float32).ravel()
    rows -= rows.mean(1, keepdims=True)
    rows /= rows.std(1, keepdims=True) + 1e-6
    return rows


def association(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """How much two labelings of the same images share: Cramér's V (0 = independent, 1 = one determines the
    other), their mutual information in nats, and that information as a share of the second's entropy."""
    from scipy.stats.contingency import association as scipy_association
    from scipy.stats.contingency import crosstab

    table = crosstab(first, second).count
    joint = table / table.sum()
    outer = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nonzero = joint > 0
    information = float((joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])).sum())
    marginal = joint.sum(0)
    entropy = float(-(marginal[marginal > 0] * np.log(marginal[marginal > 0])).sum())
    return {
        "cramers_v": float(scipy_association(table, method="cramer")),
        "mutual_information": information,
        "information_share": information / entropy if entropy > 0 else 0.0,
    }


def kmeans_relabel(splits: dict, clusters: int, seed: int) -> tuple[dict, dict]:
    """Replace every split's labels by the k-means cluster of each face (fitted on `train`, assigned to the
    nearest centre elsewhere). Returns the relabelled splits and a report: cluster sizes, and per split the
    association of the clusters with the emotion labels they replace (`association`)."""
    from sklearn.cluster import KMeans

    for name, split in splits.items():
        if not isinstance(split, datasets.Dataset):
            raise ValueError(
                f"k-means labels need map-style splits; split {name!r} streams (set `streaming: false`)"
            )
    if clusters < 2:
        raise ValueError(f"k-means labels need at least 2 clusters, got {clusters}")
    train_pixels = _pixels(splits["train"])
    kmeans = KMeans(clusters, n_init=3, random_state=seed).fit(train_pixels)
    names = [f"cluster {i + 1}" for i in range(clusters)]
    feature = datasets.ClassLabel(names=names)
    out, report = (
        {},
        {"clusters": clusters, "features": f"{CLUSTER_SIDE}x{CLUSTER_SIDE} px grayscale, standardised"},
    )
    for name, split in splits.items():
        assigned = kmeans.labels_ if name == "train" else kmeans.predict(_pixels(split))
        emotions = column_values(split, "label")
        report[name] = {
            **association(assigned, emotions),
            "sizes": np.bincount(assigned, minlength=clusters).astype(int).tolist(),
        }
        replaced = [c for c in ("label", DISTRIBUTION) if c in split.column_names]  # FER+ soft targets too
        out[name] = split.remove_columns(replaced).add_column(
            "label", assigned.astype(int).tolist(), feature=feature
        )
        logger.info("k-means labels, %s: %s", name, report[name])
    return out, report


__all__ = ["CLUSTER_SIDE", "association", "kmeans_relabel"]
