"""Memory per GPU of the real recipes at their YAML batch size: an ESTIMATE, from exact counts and a CPU proxy.

For each recipe (recipes/<r>/pretrain_affect.yaml and finetune_cifar100.yaml, at their
`per_device_train_batch_size`) and each stage-2 model (EmoReg with its frozen affective pathway, and the
baseline: the task backbone alone):

- **exact**, from parameter counts and dtypes: weights (fp32 master weights: `bf16: true` is autocast, which
  keeps them), gradients (fp32, trainable parameters only: a frozen pathway has none), optimizer state
  (the YAML's `optim`: AdamW = 2 fp32 states per trainable parameter, SGD with momentum = 1) and the bf16
  copies of the weights that autocast makes for every matmul/convolution (2 bytes per parameter);
- **estimated**: activations, extrapolated linearly from the measured peak of one training step
  (forward + backward, under bf16 autocast by default, as the YAMLs train) at two small batch sizes on the
  CPU: the slope (bytes per image) times the YAML batch. The proxy is the process's peak RSS (VmHWM, reset
  before the step), in a fresh process per measurement, with glibc told to map every allocation above 64 KiB
  on its own (so RSS follows live tensors); as a cross-check, the bytes of the tensors autograd saved for
  backward are counted too, and the larger slope is used. What does not grow with the batch (gradients, the
  bf16 weight copies, one-off buffers) falls out of the slope. CUDA's allocator, cuDNN/cuBLAS workspaces, the CUDA context
  (~0.5-1 GiB) and the evaluation batch are not included.

Stage 1 trains the same backbone as the baseline with 3 emotion outputs instead of 100 classes; its
activations per image are taken from the baseline's measurement.

    python benchmarks/memory_estimate.py                    # all three recipes, batches 2 and 4, bf16
    python benchmarks/memory_estimate.py --recipes resnet50 --batches 2,4 --json out.json --markdown
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {
    "vit-base-patch16": {"model_type": "vit"},
    "resnet50": {"model_type": "resnet"},
    "convnext-tiny": {"model_type": "timm_wrapper", "architecture": "convnext_tiny"},
}
EMOTIONS = ["negative", "neutral", "positive"]  # valence3, the real recipes' taxonomy
CLASSES = [f"class_{i}" for i in range(100)]  # CIFAR-100
GIB = 2**30


def build(recipe: str, kind: str):
    """The model a recipe trains, from config (random weights): `pretrain`, `baseline` or `emoreg`."""
    from transformers import AutoModelForImageClassification

    from emoreg_hf import EmoRegConfig, EmoRegForImageClassification, registry
    from emoreg_hf.models import config_from_dict

    if kind == "pretrain":
        return AutoModelForImageClassification.from_config(config_from_dict(RECIPES[recipe], EMOTIONS, 224))
    task = config_from_dict(RECIPES[recipe], CLASSES, 224)
    if not registry.METHODS[kind].regulated:
        return AutoModelForImageClassification.from_config(task)
    affect = config_from_dict(RECIPES[recipe], EMOTIONS, 224)
    config = EmoRegConfig(
        task_config=task, affect_config=affect, affect_trainable="frozen", task_image_size=[224, 224]
    )
    return EmoRegForImageClassification(config)


def _status(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1)) * 1024


def measure_step(recipe: str, kind: str, batch: int, dtype: str) -> dict:
    """One training step (forward + backward) at `batch`, in this fresh process: the growth of the peak RSS
    over the RSS before the step, and the bytes of the tensors autograd saved for backward (distinct
    storages that are not parameters), counted with `saved_tensors_hooks` as a cross-check."""
    import torch

    torch.manual_seed(0)
    model = build(recipe, kind).train()
    pixels = torch.randn(batch, 3, 224, 224)
    labels = torch.randint(0, model.config.num_labels, (batch,))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params and storage.device.type == "cpu":
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), autocast:
        logits = model(pixel_values=pixels).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
    loss.backward()
    peak = _status("VmHWM")
    return {
        "batch": batch,
        "rss_before": before,
        "peak": peak,
        "step_growth": peak - before,
        "saved_for_backward": sum(saved.values()),
    }


def count_params(recipe: str, kind: str) -> dict:
    model = build(recipe, kind)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    return {"total": total, "trainable": trainable, "frozen": total - trainable, "dtypes": dtypes}


def optimizer_states(config: dict) -> tuple[str, int]:
    """(name, fp32 states per trainable parameter) of a recipe YAML's optimizer."""
    optim = str(config.get("optim", "adamw_torch_fused"))
    if optim.startswith("sgd"):
        momentum = re.search(r"momentum=([0-9.]+)", str(config.get("optim_args", "")))
        return ("SGD + momentum", 1) if momentum and float(momentum.group(1)) > 0 else ("SGD", 0)
    if "adamw" in optim or optim.startswith("adam"):
        return "AdamW", 2
    raise ValueError(f"no state count known for optim {optim!r}")


def run_child(recipe: str, kind: str, batch: int, dtype: str) -> dict:
    command = [sys.executable, __file__, "--_child", recipe, kind, str(batch), dtype]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
        # every allocation above 64 KiB is its own mapping, returned when freed: RSS follows live tensors
        # (glibc's default would serve the step from heap pages freed while the model was built)
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "MALLOC_TRIM_THRESHOLD_": "65536",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),  # steady on a shared host
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def estimate(recipe: str, batches: list[int], dtype: str) -> list[dict]:
    rows = []
    per_image: dict[str, float] = {}
    saved_per_image: dict[str, float] = {}
    measured: dict[str, list[dict]] = {}
    for kind in ("baseline", "emoreg"):
        points = [run_child(recipe, kind, b, dtype) for b in batches]
        (b1, p1, s1), (b2, p2, s2) = [
            (p["batch"], p["step_growth"], p["saved_for_backward"]) for p in (points[0], points[-1])
        ]
        per_image[kind] = max(p2 - p1, 0) / (b2 - b1)
        saved_per_image[kind] = max(s2 - s1, 0) / (b2 - b1)
        measured[kind] = points
    per_image["pretrain"] = per_image["baseline"]  # the same backbone; 3 outputs instead of 100
    saved_per_image["pretrain"] = saved_per_image["baseline"]
    for kind, yaml_name in (
        ("pretrain", "pretrain_affect.yaml"),
        ("emoreg", "finetune_cifar100.yaml"),
        ("baseline", "finetune_cifar100.yaml"),
    ):
        config = yaml.safe_load((ROOT / "recipes" / recipe / yaml_name).read_text())
        batch = int(config["per_device_train_batch_size"])
        optim, states = optimizer_states(config)
        params = count_params(recipe, kind)
        parts = {
            "weights_fp32": 4 * params["total"],
            "gradients_fp32": 4 * params["trainable"],
            "optimizer_states_fp32": 4 * states * params["trainable"],
            "bf16_weight_copies": 2 * params["total"] if config.get("bf16") else 0,
            # the larger of the two per-image slopes (RSS, saved tensors), times the YAML batch
            "activations_estimate": max(per_image[kind], saved_per_image[kind]) * batch,
        }
        rows.append(
            {
                "recipe": recipe,
                "stage": {"pretrain": "stage 1", "emoreg": "EmoReg", "baseline": "baseline"}[kind],
                "yaml": f"recipes/{recipe}/{yaml_name}",
                "batch_per_gpu": batch,
                "optimizer": optim,
                "params": params,
                "activation_bytes_per_image": per_image[kind],
                "saved_for_backward_bytes_per_image": saved_per_image[kind],
                "measured_points": measured.get(kind),
                "bytes": parts,
                "total_gib": sum(parts.values()) / GIB,
            }
        )
    return rows


def markdown(rows: list[dict], dtype: str, batches: list[int]) -> str:
    lines = [
        f"| recipe | model | batch/GPU | params (M): all / trainable | optimizer | weights | grads | optimizer "
        f"state | bf16 copies | act. MiB/img: RSS / saved | activations ({dtype}, est.) | **total (est.)** |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        b, p = r["bytes"], r["params"]
        lines.append(
            f"| {r['recipe']} | {r['stage']} | {r['batch_per_gpu']} | {p['total'] / 1e6:.1f} / "
            f"{p['trainable'] / 1e6:.1f} | {r['optimizer']} | {b['weights_fp32'] / GIB:.2f} | "
            f"{b['gradients_fp32'] / GIB:.2f} | {b['optimizer_states_fp32'] / GIB:.2f} | "
            f"{b['bf16_weight_copies'] / GIB:.2f} | {r['activation_bytes_per_image'] / 2**20:.0f} / "
            f"{r['saved_for_backward_bytes_per_image'] / 2**20:.0f} | {b['activations_estimate'] / GIB:.2f} | "
            f"**{r['total_gib']:.1f} GiB** |"
        )
    lines.append("")
    lines.append(
        f"GiB = 2^30 bytes; weights, grads, optimizer state and bf16 copies are exact, activations are an "
        f"estimate: per image, the slope between batch {batches[0]} and {batches[-1]} of one CPU training step "
        f"({dtype} autocast) in peak RSS and in the bytes autograd saved for backward; the larger of the two, "
        "times the batch."
    )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        recipe, kind, batch, dtype = sys.argv[2:6]
        print(json.dumps(measure_step(recipe, kind, int(batch), dtype)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--batches", default="2,4", help="two small batch sizes for the activation slope")
    parser.add_argument(
        "--dtype", choices=["bf16", "fp32"], default="bf16", help="autocast of the measured step"
    )
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if len(batches) != 2 or batches[0] >= batches[1]:
        parser.error("--batches needs two increasing sizes, e.g. 2,4")
    started = time.perf_counter()
    rows = []
    for recipe in args.recipes.split(","):
        rows.extend(estimate(recipe, batches, args.dtype))
        print(f"[{time.perf_counter() - started:6.0f}s] {recipe} measured", file=sys.stderr, flush=True)
    if args.markdown:
        print(markdown(rows, args.dtype, batches))
    else:
        header = (
            f"{'recipe':<17} {'model':<9} {'batch':>5} {'params M':>9} {'trainable M':>11} {'optimizer':<15} "
            f"{'act MiB/img RSS/saved':>21} {'total GiB':>9}"
        )
        print(header)
        print("-" * len(header))
        for r in rows:
            print(
                f"{r['recipe']:<17} {r['stage']:<9} {r['batch_per_gpu']:>5} {r['params']['total'] / 1e6:>9.1f} "
                f"{r['params']['trainable'] / 1e6:>11.1f} {r['optimizer']:<15} "
                f"{r['activation_bytes_per_image'] / 2**20:>14.0f} / {r['saved_for_backward_bytes_per_image'] / 2**20:>4.0f} "
                f"{r['total_gib']:>9.1f}"
            )
        print("(an estimate: exact weights/grads/optimizer state + activations extrapolated from CPU RSS)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {"date": time.strftime("%Y-%m-%d"), "dtype": args.dtype, "batches": batches, "rows": rows},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
