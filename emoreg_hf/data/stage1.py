"""What stage 1 trains on: an affective mixture's emotion labels (permuted for the shuffled-label control),
k-means clusters of the same images (the non-emotion control), or a target data set's own classes (the
positive control: a pathway that knows the task)."""

from __future__ import annotations

from ..taxonomy import get_label_space
from .mixture import load_affective_mixture
from .pseudo_labels import kmeans_relabel
from .specs import SourceSpec
from .splits import count_labels, rows_before_cap
from .targets import load_target_dataset, resolve_target_spec


def load_stage1_data(args, seed: int, cap) -> dict:
    """`{"splits", "report", "names", "taxonomy", "specs", "rows_before_cap"}` for `recipes/pretrain.py`'s
    arguments `args`; `cap(split, n, seed)` applies `max_train_samples` / `max_eval_samples` before any
    relabelling (`rows_before_cap`: each split's rows before it)."""
    if args.target_dataset is not None:
        target = resolve_target_spec(args.target_dataset)
        loaded = load_target_dataset(
            target,
            validation_split_size=args.validation_split_size,
            seed=seed,
            on_bad_image=args.on_bad_image,
        )
        splits, rows_dropped = dict(loaded), loaded.rows_dropped
        names = list(splits["validation"].features["label"].names)  # map-style, also when train streams
        taxonomy = {"name": f"{target.display_name} classes (positive control)", "names": names}
        report = {"target_dataset": target.display_name, "labels": names, "seed": seed, "sources": {}}
        specs = [target]
    else:
        space = get_label_space(args.taxonomy)
        splits, report = load_affective_mixture(
            args.affective_sources,
            space,
            seed=seed,
            on_bad_image=args.on_bad_image,
            shuffle_labels=args.shuffle_labels,
            validation_split_size=args.validation_split_size,
        )
        splits, names = dict(splits), list(space.names)
        taxonomy = {"name": space.name, "names": names}
        specs = [SourceSpec.from_any(s) for s in args.affective_sources]
    uncapped = rows_before_cap(splits)
    splits = {
        name: cap(split, args.max_train_samples if name == "train" else args.max_eval_samples, seed)
        for name, split in splits.items()
    }
    if args.target_dataset is not None:
        report["sources"][specs[0].display_name] = {  # a streamed training split is counted as it streams
            **{
                f"class_counts_{name}": count_labels(split)
                for name, split in splits.items()
                if hasattr(split, "__len__")
            },
            "rows_dropped": rows_dropped,  # drop_unseen_classes, drop_unlabeled, ...
        }
    if args.kmeans_labels:
        splits, clusters = kmeans_relabel(splits, len(names), seed)
        report["kmeans_labels"] = clusters
        names = list(splits["train"].features["label"].names)
        taxonomy = {
            "name": f"k-means clusters of the {taxonomy['name']} images (non-emotion control)",
            "names": names,
        }
    return {
        "splits": splits,
        "report": report,
        "names": names,
        "taxonomy": taxonomy,
        "specs": specs,
        "rows_before_cap": uncapped,
    }


__all__ = ["load_stage1_data"]
