"""Mixup/CutMix in the collator on uint8 batches: emoreg-hf's `Collator` against timm's `FastCollateMixup`.

    python benchmarks/mixup_collate.py [--repeats 200] [--json out.json]

Both mix uint8 images (rounded) and return soft targets; both are timed on the same batches, interleaved,
in one process (median of `--repeats` calls each), so the ratio holds on a shared machine even when the
absolute times do not. timm's collate is called with what it takes (a list of (uint8 CHW tensor, label)
pairs), in its per-batch mode (one lambda per batch, mixup or cutmix with probability 0.5 each, as ours).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from timm.data import FastCollateMixup

from emoreg_hf.data.transforms import Collator

CASES = (("CIFAR, 32 px", 32, 64), ("CIFAR, 32 px", 32, 256), ("ImageNet-like, 224 px", 224, 64))


def batch(size: int, n: int, classes: int = 10) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "pixel_values": torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g),
            "labels": i % classes,
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    ours = Collator(num_classes=10, mixup_alpha=0.8, cutmix_alpha=1.0)
    timm_mix = FastCollateMixup(
        mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=10, mode="batch"
    )

    def timm_collate(examples):
        pixels, labels = timm_mix([(e["pixel_values"], e["labels"]) for e in examples])
        return {"pixel_values": pixels, "labels": labels}

    rows = []
    for name, size, n in CASES:
        examples = batch(size, n)
        times = {"emoreg-hf Collator": [], "timm FastCollateMixup": []}
        repeats = args.repeats if size <= 64 else max(10, args.repeats // 10)
        for _ in range(repeats):  # interleaved: both see the same load
            for label, collate in (("emoreg-hf Collator", ours), ("timm FastCollateMixup", timm_collate)):
                start = time.perf_counter()
                out = collate(examples)
                times[label].append(time.perf_counter() - start)
                assert out["pixel_values"].dtype == torch.uint8 and out["labels"].shape == (n, 10)
        medians = {k: statistics.median(v) for k, v in times.items()}
        ratio = medians["timm FastCollateMixup"] / medians["emoreg-hf Collator"]
        rows.append(
            {"case": name, "batch": n, **{k: v * 1e3 for k, v in medians.items()}, "timm_over_ours": ratio}
        )
        print(
            f"{name}, batch {n}: emoreg-hf {medians['emoreg-hf Collator'] * 1e3:.2f} ms, "
            f"timm {medians['timm FastCollateMixup'] * 1e3:.2f} ms per batch (timm / ours = {ratio:.2f}x)"
        )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "threads": torch.get_num_threads()}, f, indent=2)


if __name__ == "__main__":
    main()
