"""Training throughput and model FLOP utilisation (MFU) of ViT-B/16 at 224 px in bf16: the baseline (task
pathway alone) against EmoReg (frozen affective ViT-B/16 pathway), with `torch.compile` off and on.

Both models are built from config (no download) with random weights; a step is forward + backward +
AdamW under `torch.autocast(bfloat16)` (what `Trainer(bf16=True)` does), on random 224-px pixels already
on the device (what the device-side finisher produces), so the figures are the model's, not the loader's.
FLOPs per step are counted once with `torch.utils.flop_counter.FlopCounterMode` on the eager model
(matmuls, convolutions, attention; the frozen pathway contributes its forward only). MFU = achieved
FLOP/s / peak dense bf16 FLOP/s of the card (`--peak_tflops`, else a table of known cards).

    python benchmarks/gpu_throughput.py                          # one GPU, ViT-B/16, batch 128
    python benchmarks/gpu_throughput.py --json out.json --compile off
    python benchmarks/gpu_throughput.py --device cpu --tiny      # a tiny ViT, a few steps: checks it runs
                                                                 # (its figures are a smoke test, not a measurement)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time

import torch
from transformers import AutoModelForImageClassification, ViTConfig

from emoreg_hf import EmoRegConfig, EmoRegForImageClassification, registry

# Dense bf16 tensor-core peak, TFLOP/s (vendor data sheets, without sparsity).
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100": 989.4,  # SXM; the PCIe card is 756
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.05,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
    "RTX 3090": 71.0,
}


def vit_config(tiny: bool, num_labels: int) -> ViTConfig:
    labels = {"id2label": {i: f"class_{i}" for i in range(num_labels)}}
    if tiny:
        return ViTConfig(
            image_size=32,
            patch_size=8,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            **labels,
        )
    return ViTConfig(  # ViT-B/16 (google/vit-base-patch16-224-in21k's architecture)
        image_size=224,
        patch_size=16,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        **labels,
    )


def build(method: str, tiny: bool, num_labels: int):
    if not registry.METHODS[method].regulated:  # one backbone alone
        return AutoModelForImageClassification.from_config(vit_config(tiny, num_labels))
    size = vit_config(tiny, num_labels).image_size
    return EmoRegForImageClassification(
        EmoRegConfig(
            task_config=vit_config(tiny, num_labels),
            affect_config=vit_config(tiny, 7),
            affect_trainable="frozen",
            regulation="adaptive",
            influence="concat",
            task_image_size=[size, size],
            affect_image_size=[size, size],
        )
    )


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    if given is not None:
        return given, "--peak_tflops"
    if device.type != "cuda":
        return None, "unknown for this device (give --peak_tflops)"
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key], f"table entry {key!r} for {name!r}"
    return None, f"{name!r} not in the table (give --peak_tflops)"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(method: str, compiled: bool, args, device: torch.device) -> dict:
    """Median-free simple timing: `warmup` steps (compilation happens there), then `steps` timed steps."""
    torch.manual_seed(0)
    model = build(method, args.tiny, args.num_labels).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")
    config = getattr(model.config, "task_config", model.config)  # EmoReg: its task pathway's input
    size = config.image_size
    pixels = torch.randn(args.batch_size, 3, size, size, device=device)
    labels = torch.randint(0, args.num_labels, (args.batch_size,), device=device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if args.dtype == "bf16"
        else contextlib.nullcontext()
    )

    def step(module) -> None:
        with autocast:
            loss = module(pixel_values=pixels, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step(model)  # one eager step: FLOPs (and a first warm-up)
    flops = counter.get_total_flops()
    runner = torch.compile(model) if compiled else model
    row = {"method": method, "compile": compiled, "batch_size": args.batch_size, "flops_per_step": flops}
    try:
        compile_start = time.perf_counter()
        for _ in range(args.warmup):
            step(runner)
        synchronize(device)
        row["warmup_s"] = time.perf_counter() - compile_start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(runner)
        synchronize(device)
        elapsed = time.perf_counter() - start
    except Exception as err:  # compile may be unavailable (no compiler on the host): report, do not crash
        row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        return row
    row.update(
        step_s=elapsed / args.steps,
        images_per_s=args.batch_size * args.steps / elapsed,
        achieved_tflops=flops * args.steps / elapsed / 1e12,
        peak_memory_gib=(torch.cuda.max_memory_allocated(device) / 2**30) if device.type == "cuda" else None,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny ViT at 32 px (a CPU smoke run)")
    parser.add_argument("--batch_size", type=int, default=None, help="default 128 (ViT-B/16), 8 with --tiny")
    parser.add_argument("--steps", type=int, default=None, help="timed steps; default 30, 3 with --tiny")
    parser.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps (compilation happens here); default 5, 3 with --tiny",
    )
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--methods", default="baseline,emoreg")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--num_labels", type=int, default=100, help="task classes (CIFAR-100: 100)")
    parser.add_argument("--peak_tflops", type=float, default=None, help="peak dense TFLOP/s for MFU")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    args.batch_size = args.batch_size or (8 if args.tiny else 128)
    args.steps = args.steps or (3 if args.tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (3 if args.tiny else 5)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]

    rows = []
    for method in args.methods.split(","):
        for compiled in modes:
            row = measure(method.strip(), compiled, args, device)
            if peak and "achieved_tflops" in row:
                row["mfu"] = row["achieved_tflops"] / peak
            rows.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    model = "tiny ViT (32 px, patch 8, width 64, 2 layers)" if args.tiny else "ViT-B/16 at 224 px"
    print(
        f"{model}, {args.dtype}, batch {args.batch_size}, {args.steps} timed steps after {args.warmup} "
        f"warm-up; device {name}; torch {torch.__version__}; peak {peak or 'n/a'} TFLOP/s ({peak_source})"
    )
    header = f"{'method':<9} {'compile':<8} {'images/s':>10} {'step ms':>9} {'GFLOP/img':>10} {'TFLOP/s':>9} {'MFU':>7} {'mem GiB':>8}"
    print(header)
    print("-" * len(header))
    for row in rows:
        if "error" in row:
            print(f"{row['method']:<9} {str(row['compile']):<8} failed: {row['error']}")
            continue
        mfu = f"{100 * row['mfu']:.1f}%" if row.get("mfu") is not None else "n/a"
        mem = f"{row['peak_memory_gib']:.1f}" if row.get("peak_memory_gib") is not None else "n/a"
        print(
            f"{row['method']:<9} {str(row['compile']):<8} {row['images_per_s']:>10.1f} {1000 * row['step_s']:>9.1f} "
            f"{row['flops_per_step'] / args.batch_size / 1e9:>10.3g} {row['achieved_tflops']:>9.3f} {mfu:>7} {mem:>8}"
        )
    by_key = {(r["method"], r["compile"]): r for r in rows if "images_per_s" in r}
    for compiled in modes:
        base, emo = by_key.get(("baseline", compiled)), by_key.get(("emoreg", compiled))
        if base and emo:
            print(
                f"EmoReg / baseline images/s (compile {'on' if compiled else 'off'}): "
                f"{emo['images_per_s'] / base['images_per_s']:.3f}"
            )
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(
                {
                    "device": name,
                    "model": model,
                    "dtype": args.dtype,
                    "torch": torch.__version__,
                    "peak_tflops": peak,
                    "peak_source": peak_source,
                    "date": time.strftime("%Y-%m-%d"),
                    "rows": rows,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
