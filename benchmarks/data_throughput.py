"""Throughput of the input path: what it costs to feed the model (a benchmark, not a test).

Two input paths over the same images, the same batch size and the same number of DataLoader workers,
measured side by side in one run (passes alternate, repeated; medians are reported):

- **baseline** re-implements transformers' ``examples/pytorch/image-classification/
  run_image_classification.py``: ``datasets.load_dataset`` + ``set_transform`` of a per-image PIL /
  torchvision ``Compose([RandomResizedCrop(224), RandomHorizontalFlip(), ToTensor(), Normalize])`` and
  its ``collate_fn`` (``torch.stack``): the workers build float32 224-px batches;
- **ours** is ``emoreg_hf.data`` as the recipes use it: ``load_target_dataset`` + ``LoaderTransform``
  (``basic`` = random resized crop + flip, uint8, at the working size ``infer_working_size`` picks, i.e.
  native 32 px for CIFAR) + ``Collator``; then ``DeviceFinisher`` (resize to 224 + normalise) on
  ``--device``.

Figures (images/s): ``baseline_ips`` and ``ours_loader_ips`` are the loaders alone (what decides whether
an accelerator is starved); ``finish_ips`` is the finishing step alone on ``--device``; end-to-end
(``baseline_e2e_ips``, ``ours_e2e_ips``) is loader + transfer + finishing, i.e. normalised float32
224-px batches on the device, the thing a model's forward needs. ``loader_ratio`` = ours_loader_ips /
baseline_ips, ``ratio`` = ours_e2e_ips / baseline_e2e_ips. On ``--device cpu`` the finishing shares the
host's cores with the loader workers, which is the hardest case for ours.

    python benchmarks/data_throughput.py --data /path/to/cifar10 --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import datasets
import torch
from torchvision import transforms as T

from emoreg_hf.data import Collator, DeviceFinisher, LoaderTransform, infer_working_size, load_target_dataset
from emoreg_hf.data.demo import DEMO_TARGET, ensure_demo

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- baseline: run_image_classification.py


class BaselineTransform:
    """``train_transforms`` of run_image_classification.py: per image, PIL -> RGB -> Compose."""

    def __init__(self, image_column: str, size: int, mean, std):
        self.image_column = image_column
        self.compose = T.Compose(
            [T.RandomResizedCrop(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
        )

    def __call__(self, example_batch: dict) -> dict:
        example_batch["pixel_values"] = [
            self.compose(pil_img.convert("RGB")) for pil_img in example_batch[self.image_column]
        ]
        return example_batch


class BaselineCollate:
    """``collate_fn`` of run_image_classification.py."""

    def __init__(self, label_column: str):
        self.label_column = label_column

    def __call__(self, examples: list[dict]) -> dict:
        pixel_values = torch.stack([example["pixel_values"] for example in examples])
        labels = torch.tensor([example[self.label_column] for example in examples])
        return {"pixel_values": pixel_values, "labels": labels}


def baseline_split(data: str, n: int | None, size: int, mean, std):
    raw = datasets.load_dataset(data, split="train")
    image_column = next(c for c, f in raw.features.items() if isinstance(f, datasets.Image))
    label_column = next(c for c, f in raw.features.items() if isinstance(f, datasets.ClassLabel))
    raw = raw.select_columns([image_column, label_column])
    if n is not None:
        raw = raw.select(range(min(n, len(raw))))
    raw.set_transform(BaselineTransform(image_column, size, mean, std))
    return raw, BaselineCollate(label_column)


# ---------------------------------------------------------------- ours: emoreg_hf.data


def ours_split(data: str | None, n: int | None, size: int):
    spec = "demo" if data is None else {"path": data}
    train = load_target_dataset(spec)["train"]
    if n is not None:
        train = train.select(range(min(n, len(train))))
    working_size = infer_working_size(train, size)
    return train.with_transform(LoaderTransform(working_size, "basic", train=True)), Collator(), working_size


# ---------------------------------------------------------------- measuring


def make_loader(dataset, collate_fn, args, device: torch.device):
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        collate_fn=collate_fn,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_pass(loader, step=None, device: torch.device | None = None) -> tuple[float, int]:
    """One epoch over ``loader``; ``step(batch)`` (transfer + finishing) runs on each batch."""
    images = 0
    start = time.perf_counter()
    for batch in loader:
        pixels = batch["pixel_values"]
        if step is not None:
            pixels = step(pixels)
        images += pixels.shape[0]
    if device is not None:
        sync(device)
    return time.perf_counter() - start, images


def warm_up(loader, batches: int) -> None:
    for i, _ in enumerate(loader):
        if i + 1 >= batches:
            break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=None, help="a datasets-loadable folder with a train split (default: demo target)"
    )
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, the same for both")
    parser.add_argument("--device", default="cpu", help="where finishing runs (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224, help="the model's input size")
    parser.add_argument("--repeats", type=int, default=5, help="passes of each measurement; medians")
    parser.add_argument("--max-images", type=int, default=None, help="cap on images per pass")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    load_before = os.getloadavg()  # other work on the host: read the figures in its light
    device = torch.device(args.device)
    if args.workers == 0:  # all in one process: one thread, as in a DataLoader worker (per-image ops
        torch.set_num_threads(1)  # on an intra-op thread pool are many times slower on a busy host)
    data = args.data
    baseline_data = data if data is not None else str(ensure_demo() / DEMO_TARGET[0])
    datasets.disable_progress_bars()

    ours_ds, ours_collate, working_size = ours_split(data, args.max_images, args.image_size)
    n = len(ours_ds)  # both pipelines see the same number of images per pass
    base_ds, base_collate = baseline_split(baseline_data, n, args.image_size, IMAGENET_MEAN, IMAGENET_STD)
    finisher = DeviceFinisher(args.image_size, IMAGENET_MEAN, IMAGENET_STD)
    non_blocking = device.type == "cuda"

    def to_device(pixels):
        return pixels.to(device, non_blocking=non_blocking)

    def finish(pixels):
        return finisher(pixels.to(device, non_blocking=non_blocking))

    base_loader = make_loader(base_ds, base_collate, args, device)
    ours_loader = make_loader(ours_ds, ours_collate, args, device)
    warm_up(base_loader, 2 * max(args.workers, 1))
    warm_up(ours_loader, 2 * max(args.workers, 1))
    # the finishing step alone: uint8 batches collected once, already on the device
    finish_batches = [to_device(b["pixel_values"]) for b in ours_loader]
    finisher(finish_batches[0])
    sync(device)

    def finish_only() -> tuple[float, int]:
        start = time.perf_counter()
        for pixels in finish_batches:
            finisher(pixels)
        sync(device)
        return time.perf_counter() - start, sum(p.shape[0] for p in finish_batches)

    measurements = {
        "baseline_loader": lambda: timed_pass(base_loader),
        "ours_loader": lambda: timed_pass(ours_loader),
        "finish": finish_only,
        "ours_e2e": lambda: timed_pass(ours_loader, finish, device),
    }
    if device.type != "cpu":  # on the CPU the baseline's batches are already where they are used
        measurements["baseline_e2e"] = lambda: timed_pass(base_loader, to_device, device)
    runs: dict[str, list[float]] = {k: [] for k in measurements}
    order = list(measurements)
    for r in range(args.repeats):
        for name in order if r % 2 == 0 else order[::-1]:  # alternate so drift hits both alike
            seconds, images = measurements[name]()
            runs[name].append(images / seconds)
    if "baseline_e2e" not in runs:
        runs["baseline_e2e"] = runs["baseline_loader"]
    med = {k: statistics.median(v) for k, v in runs.items()}

    result = {
        "loader_ratio": med["ours_loader"] / med["baseline_loader"],
        "ratio": med["ours_e2e"] / med["baseline_e2e"],
        "ours_loader_ips": med["ours_loader"],
        "baseline_ips": med["baseline_loader"],
        "finish_ips": med["finish"],
        "ours_e2e_ips": med["ours_e2e"],
        "baseline_e2e_ips": med["baseline_e2e"],
        "per_repeat_ips": runs,
        "setup": {
            "data": data or f"demo:{DEMO_TARGET[0]} (synthetic)",
            "images_per_pass": n,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "device": str(device),
            "image_size": args.image_size,
            "working_size": working_size,
            "repeats": args.repeats,
            "augmentation": "random resized crop + horizontal flip (both)",
            "host_bytes_per_image": {
                "ours": 3 * working_size**2,
                "baseline": 4 * 3 * args.image_size**2,
            },
            "torch_threads_main": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "host_load_average_before": [round(x, 2) for x in load_before],
            "torch": torch.__version__,
            "datasets": datasets.__version__,
            "python": platform.python_version(),
        },
    }
    width = max(map(len, med))
    for k, v in med.items():
        print(f"{k:<{width}}  {v:9.0f} images/s  (median of {len(runs[k])})")
    print(f"loader_ratio = {result['loader_ratio']:.2f}   ratio (end-to-end) = {result['ratio']:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
