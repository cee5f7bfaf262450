"""Training-step overhead of EmoReg over its plain task backbone (a benchmark, not a test).

Both models are built in one process with the same task backbone, and a frozen affective pathway of the
same architecture; steps alternate (baseline, EmoReg, baseline, ...) on the same batch so that machine
noise hits both alike. Reports the median step time (forward + backward + AdamW step) of each, warm-up
steps excluded, and their ratio. A frozen pathway costs one forward pass, about a third of a step.

    python benchmarks/overhead.py --arch vit --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import AutoModelForImageClassification, ResNetConfig, ViTConfig

from emoreg_hf import EmoRegConfig, EmoRegForImageClassification


def backbone_config(arch: str, num_labels: int):
    labels = {"id2label": {i: f"class_{i}" for i in range(num_labels)}}
    if arch == "vit":  # ViT-Tiny width and depth on 32-px CIFAR inputs (patch 4: 64 tokens)
        return ViTConfig(
            image_size=32,
            patch_size=4,
            hidden_size=192,
            num_hidden_layers=6,
            num_attention_heads=3,
            intermediate_size=768,
            **labels,
        )
    if arch == "resnet":  # ResNet-18 layout
        return ResNetConfig(
            embedding_size=64,
            hidden_sizes=[64, 128, 256, 512],
            depths=[2, 2, 2, 2],
            layer_type="basic",
            **labels,
        )
    raise ValueError(f"--arch must be vit or resnet, got {arch!r}")


def timed_step(model, optimizer, pixels, labels) -> float:
    start = time.perf_counter()
    loss = model(pixel_values=pixels, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["vit", "resnet"], default="vit")
    parser.add_argument("--steps", type=int, default=20, help="measured steps per model")
    parser.add_argument("--warmup", type=int, default=3, help="steps per model excluded from the median")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures to this file")
    args = parser.parse_args()

    torch.manual_seed(0)
    baseline = AutoModelForImageClassification.from_config(backbone_config(args.arch, 10)).train()
    emoreg = EmoRegForImageClassification(
        EmoRegConfig(
            task_config=backbone_config(args.arch, 10),
            affect_config=backbone_config(args.arch, 7),
            affect_trainable="frozen",
            regulation="adaptive",
            influence="concat",
        )
    ).train()
    pixels = torch.randn(args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch_size,))
    optimizers = {
        "baseline": torch.optim.AdamW(baseline.parameters(), lr=1e-4),
        "emoreg": torch.optim.AdamW([p for p in emoreg.parameters() if p.requires_grad], lr=1e-4),
    }
    models = {"baseline": baseline, "emoreg": emoreg}
    times: dict[str, list[float]] = {"baseline": [], "emoreg": []}
    for step in range(args.warmup + args.steps):
        for name in ("baseline", "emoreg"):
            elapsed = timed_step(models[name], optimizers[name], pixels, labels)
            if step >= args.warmup:
                times[name].append(elapsed)

    baseline_s, emoreg_s = statistics.median(times["baseline"]), statistics.median(times["emoreg"])
    result = {
        "arch": args.arch,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "baseline_s": baseline_s,
        "emoreg_s": emoreg_s,
        "ratio": emoreg_s / baseline_s,
    }
    print(f"{'model':<10} {'median step (s)':>16}")
    print(f"{'baseline':<10} {baseline_s:>16.4f}")
    print(f"{'emoreg':<10} {emoreg_s:>16.4f}")
    print(f"ratio emoreg/baseline ({args.arch}, batch {args.batch_size}): {result['ratio']:.3f}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
