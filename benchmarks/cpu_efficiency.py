"""What the CPU gives a recipe's model: training images/s per core and achieved GFLOP/s against the CPU's peak,
in bf16 autocast and fp32, on 1 and 2 threads, with `channels_last` and `torch.compile` off and on.

A step is what `Trainer` does with a stage-1 recipe's model, on a batch the device-side finisher produced:
forward (under `torch.autocast("cpu", bfloat16)` for bf16, as `--bf16 true`), cross-entropy with the recipe's
label smoothing, backward, the recipe's optimizer step (SGD with its momentum/Nesterov, else AdamW). The model
is built from the recipe's `model_config` at its `image_size` and batch, with random weights and pixels (no
data: the figures are the model's, not the loader's).

FLOPs are counted, not estimated: `torch.utils.flop_counter.FlopCounterMode` around one eager training step
counts the forward and the backward convolutions and matmuls themselves (no "x3 rule"; normalisation and
activations are not counted, as in every MFU figure). The measured peak is a large GEMM (`torch.mm`, n x n) in
the same dtype and thread count, timed the same way; the theoretical peak is derived from the CPU's flags
(`theoretical_peak`) where the FLOP/cycle of its vector or matrix units is known, with the assumptions written
into the results, and left out where it is not.

Every setting is timed `--repeats` times, settings alternating (setting A, B, C, ... then A, B, C again), so
a change in the machine's load spreads over all of them; figures are medians. The 1-minute load average is
read before and after: a run started on a busy machine is marked "not quiet" and its figures say so.

    python benchmarks/cpu_efficiency.py recipes/fer2013/pretrain_cpu.yaml           # the full matrix
    python benchmarks/cpu_efficiency.py recipes/ablations/fer_cifar10_fair.yaml     # an ablation: its pretrain
    python benchmarks/cpu_efficiency.py RECIPE --threads 1 --dtypes bf16 --compile off --steps 5 --repeats 3
    python benchmarks/cpu_efficiency.py --tiny                                      # a smoke run (seconds)

Results: benchmarks/results/cpu_efficiency/<name>.json and .md (`--out`, `--name`).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cpu_efficiency"

# A tiny small-image ResNet for the smoke run (`--tiny`): figures that prove the script runs, nothing more.
TINY_RECIPE = {
    "model_config": {
        "model_type": "small_resnet",
        "embedding_size": 8,
        "hidden_sizes": [8, 16],
        "depths": [1, 1],
        "layer_type": "basic",
        "stem_kernel_size": 3,
        "stem_stride": 2,
        "stem_pool": False,
    },
    "image_size": 24,
    "per_device_train_batch_size": 8,
    "optim": "sgd",
    "optim_args": "momentum=0.9,nesterov=true",
    "learning_rate": 0.05,
    "weight_decay": 5.0e-4,
    "label_smoothing_factor": 0.1,
}
NUM_LABELS = 7  # FER-2013's expressions; the head's size barely matters


# -- pure helpers (tested in tests/test_cpu_efficiency.py) ------------------------------------------------


def recipe_settings(config: dict, stage: str = "pretrain") -> dict:
    """The model and step settings of a recipe YAML's content: a recipe's own keys, or an ablation's
    `stage` section (`pretrain:`, `finetune:`). Raises ValueError naming what is missing."""
    section = config.get(stage) if isinstance(config.get(stage), dict) else config
    model_key = "model_config" if "model_config" in section else "task_model_config"
    missing = [k for k in (model_key, "image_size") if section.get(k) is None]
    if missing:
        raise ValueError(
            f"the recipe has no {', '.join(missing)} (this benchmark builds models from scratch: a model_config "
            f"or task_model_config and an image_size, at the top level or under `{stage}:`)"
        )
    return {
        "model_config": dict(section[model_key]),
        "image_size": int(section["image_size"]),
        "batch_size": int(section.get("per_device_train_batch_size", 8)),
        "optim": str(section.get("optim", "adamw_torch")),
        "optim_args": str(section.get("optim_args") or ""),
        "learning_rate": float(section.get("learning_rate", 5e-5)),
        "weight_decay": float(section.get("weight_decay", 0.0)),
        "label_smoothing": float(section.get("label_smoothing_factor", 0.0)),
    }


def parse_optim_args(text: str) -> dict:
    """`TrainingArguments.optim_args` ("momentum=0.9,nesterov=true") as keyword arguments."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = item.partition("=")
        value = value.strip()
        out[key.strip()] = value.lower() == "true" if value.lower() in ("true", "false") else float(value)
    return out


def settings_matrix(threads, dtypes, channels_last, compiled) -> list[dict]:
    """Every combination, in the order one repeat times them."""
    return [
        {"threads": t, "dtype": d, "channels_last": c, "compile": k}
        for t, d, c, k in itertools.product(threads, dtypes, channels_last, compiled)
    ]


def gemm_flops(n: int) -> int:
    """FLOPs of an n x n by n x n matrix product (a multiply and an add per term)."""
    return 2 * n**3


def theoretical_peak(flags: set[str], vendor: str, family: int, model: int) -> dict:
    """Peak FLOP per cycle per core for fp32 and bf16, derived from the CPU's flags and model where the
    width of its units is known; `None` where it cannot be derived, with the reason. Multiply by the clock
    (not known inside a VM with turbo: the nominal clock gives a lower bound on the peak) and the cores used.

    Known cases: Intel with AMX (`amx_bf16`): bf16 through AMX tiles, 1024 FLOP/cycle/core (16x32 by 32x16
    tile product per 16 cycles); fp32 2 AVX-512 FMA units = 64. Intel AVX-512 without AMX: fp32 64 (2 FMA
    units, 1 on some SKUs: an upper bound); bf16 via `avx512_bf16` VDPBF16PS at 2/cycle = 128. AMD Zen 4
    (family 25, AVX-512 on 256-bit datapaths, 2 FMA pipes): fp32 32, bf16 64 (VDPBF16PS double-pumped).
    AVX2 + FMA (2 FMA units): fp32 32, bf16 has no faster path (counted as fp32 arithmetic)."""
    vendor = vendor.lower()
    notes = []
    if "amx_bf16" in flags:
        fp32, bf16 = 64, 1024
        notes.append("AMX (amx_bf16): bf16 1024 FLOP/cycle/core through the tile unit; fp32 2x AVX-512 FMA")
    elif "amd" in vendor and family == 25 and "avx512f" in flags:
        fp32, bf16 = 32, 64 if "avx512_bf16" in flags else 32
        notes.append(
            "AMD Zen 4 (family 25 with AVX-512): 512-bit instructions on 2 x 256-bit FMA pipes; bf16 "
            "VDPBF16PS assumed at the same rate as an FMA (2 bf16 pairs per fp32 lane)"
        )
    elif "avx512f" in flags and "intel" in vendor:
        fp32, bf16 = 64, 128 if "avx512_bf16" in flags else 64
        notes.append("Intel AVX-512, 2 FMA units assumed (some SKUs have 1: then half)")
    elif "avx2" in flags and "fma" in flags:
        fp32, bf16 = 32, 32
        notes.append("AVX2 + FMA, 2 FMA units assumed; no bf16 arithmetic unit (bf16 runs as fp32)")
    else:
        return {"fp32": None, "bf16": None, "notes": "no known vector/matrix unit width for these flags"}
    return {"fp32": fp32, "bf16": bf16, "notes": "; ".join(notes)}


def cpu_identity() -> dict:
    """Vendor, family, model, model name, flags and the nominal clock, from /proc/cpuinfo (Linux)."""
    info = {
        "vendor": platform.processor() or "",
        "family": -1,
        "model": -1,
        "name": "",
        "flags": set(),
        "mhz": None,
    }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key == "vendor_id":
            info["vendor"] = value
        elif key == "cpu family":
            info["family"] = int(value)
        elif key == "model":
            info["model"] = int(value)
        elif key == "model name":
            info["name"] = value
        elif key == "flags":
            info["flags"] = set(value.split())
        elif key == "cpu MHz":
            info["mhz"] = float(value)
    return info


def summarize(row: dict, peaks: dict, theoretical_gflops: dict) -> dict:
    """Medians of a setting's repeats, per core, and as shares of the measured and theoretical peaks."""
    times = row["step_s"]
    step = statistics.median(times)
    images_per_s = row["batch_size"] / step
    achieved = row["flops_per_step"] / step / 1e9
    peak = peaks.get((row["threads"], row["dtype"]))
    theory = theoretical_gflops.get(row["dtype"])
    theory = theory * row["threads"] if theory else None
    return {
        **{k: row[k] for k in ("threads", "dtype", "channels_last", "compile", "batch_size")},
        "step_s_median": step,
        "step_s_min": min(times),
        "step_s_max": max(times),
        "repeats": len(times),
        "images_per_s": images_per_s,
        "images_per_s_per_core": images_per_s / row["threads"],
        "gflop_per_image": row["flops_per_step"] / row["batch_size"] / 1e9,
        "achieved_gflops": achieved,
        "measured_peak_gflops": peak,
        "of_measured_peak": achieved / peak if peak else None,
        "theoretical_peak_gflops": theory,
        "of_theoretical_peak": achieved / theory if theory else None,
    }


def markdown(report: dict) -> str:
    """The results as a markdown page: the conditions, the peaks, one table row per setting."""
    quiet = (
        "quiet"
        if report["quiet"]
        else "**NOT QUIET: the machine was busy; these figures are not measurements**"
    )
    lines = [
        f"# CPU efficiency: {report['recipe']}",
        "",
        f"{report['date']}, {report['cpu']['name']} ({report['cpu']['cores']} cores, flags: "
        f"{', '.join(report['cpu']['isa'])}), torch {report['torch']}. Load average (1 min) "
        f"{report['load_before']:.2f} before, {report['load_after']:.2f} after: {quiet}.",
        "",
        f"Model: {report['model']}, {report['image_size']} px, batch {report['batch_size']}; "
        f"{report['gflop_per_image']:.4g} GFLOP per training image (forward + backward, FlopCounterMode). "
        f"Each setting: {report['steps']} timed steps after {report['warmup']} warm-up, {report['repeats']} "
        f"alternating repeats, medians.",
        "",
        f"Theoretical peak per core at the nominal {report['theoretical']['ghz']} GHz: fp32 "
        f"{_num(report['theoretical']['gflops_per_core'].get('fp32'))} GFLOP/s, bf16 "
        f"{_num(report['theoretical']['gflops_per_core'].get('bf16'))} GFLOP/s "
        f"({report['theoretical']['notes']}). The nominal clock is what the (virtual) CPU reports; a core that "
        "boosts above it can exceed this peak, so a GEMM above it says the clock, not the unit width, is higher.",
        "",
        f"| threads | dtype | GEMM peak GFLOP/s (n={report['gemm_n']}) |",
        "|---:|---|---:|",
        *(f"| {p['threads']} | {p['dtype']} | {p['gflops']:.1f} |" for p in report["gemm_peaks"]),
        "",
        "| threads | dtype | channels_last | compile | images/s | images/s per core | GFLOP/s | of GEMM peak | of theoretical |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['threads']} | {r['dtype']} | {r['channels_last']} | {r['compile']} | failed: {r['error']} | | | | |"
            )
            continue
        lines.append(
            f"| {r['threads']} | {r['dtype']} | {r['channels_last']} | {r['compile']} | {r['images_per_s']:.1f} | "
            f"{r['images_per_s_per_core']:.1f} | {r['achieved_gflops']:.1f} | {_pct(r['of_measured_peak'])} | "
            f"{_pct(r['of_theoretical_peak'])} |"
        )
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return f"{value:.1f}" if value else "n/a"


def _pct(value) -> str:
    return f"{100 * value:.1f}%" if value is not None else "n/a"


# -- measurement ----------------------------------------------------------------------------------------


def build_model(settings: dict):
    from transformers import AutoModelForImageClassification

    from emoreg_hf.models import config_from_dict

    names = [f"class_{i}" for i in range(NUM_LABELS)]
    config = config_from_dict(settings["model_config"], names, settings["image_size"])
    return AutoModelForImageClassification.from_config(config)


def build_optimizer(settings: dict, params):
    if settings["optim"].startswith("sgd"):
        extra = parse_optim_args(settings["optim_args"])
        return torch.optim.SGD(
            params, lr=settings["learning_rate"], weight_decay=settings["weight_decay"], **extra
        )
    return torch.optim.AdamW(params, lr=settings["learning_rate"], weight_decay=settings["weight_decay"])


class Setting:
    """One (threads, dtype, channels_last, compile) cell: its model, optimizer and batch, kept across repeats
    (a compiled model compiles once, in its first warm-up)."""

    def __init__(self, cell: dict, settings: dict):
        torch.manual_seed(0)
        self.cell, self.settings = cell, settings
        self.model = build_model(settings).train()
        size, batch = settings["image_size"], settings["batch_size"]
        self.pixels = torch.randn(batch, 3, size, size)
        self.labels = torch.randint(0, NUM_LABELS, (batch,))
        if cell["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.pixels = self.pixels.contiguous(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(settings, self.model.parameters())
        self.runner = torch.compile(self.model) if cell["compile"] else self.model
        self.warmed = False

    def step(self, module=None) -> None:
        module = module or self.runner
        autocast = (
            torch.autocast("cpu", dtype=torch.bfloat16)
            if self.cell["dtype"] == "bf16"
            else contextlib.nullcontext()
        )
        with autocast:
            logits = module(pixel_values=self.pixels).logits
        loss = F.cross_entropy(logits.float(), self.labels, label_smoothing=self.settings["label_smoothing"])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def flops(self) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            self.step(self.model)  # eager: the arithmetic the compiled graph does too
        return counter.get_total_flops()

    def time(self, steps: int, warmup: int) -> float:
        torch.set_num_threads(self.cell["threads"])
        for _ in range(warmup if self.warmed else max(warmup, 3)):
            self.step()
        self.warmed = True
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - start) / steps


def gemm_peak(n: int, dtype: str, threads: int, repeats: int) -> float:
    """GFLOP/s of `torch.mm` on n x n matrices in `dtype`, median of `repeats` after one warm-up."""
    torch.set_num_threads(threads)
    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return gemm_flops(n) / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "recipe", nargs="?", help="a recipe or ablation YAML with model_config and image_size"
    )
    parser.add_argument("--stage", default="pretrain", help="an ablation YAML's section (pretrain, finetune)")
    parser.add_argument("--tiny", action="store_true", help="a tiny ResNet at 24 px: checks the script runs")
    parser.add_argument("--batch_size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtypes", default="bf16,fp32")
    parser.add_argument("--channels_last", default="off,on")
    parser.add_argument("--compile", default="off,on")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps per repeat (compiling: the first)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (>= 3 for a median)")
    parser.add_argument("--gemm_n", type=int, default=2048, help="size of the peak GEMM")
    parser.add_argument(
        "--ghz", type=float, default=None, help="clock for the theoretical peak (default: nominal)"
    )
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--name", default=None, help="file name stem (default: the recipe's, or tiny)")
    args = parser.parse_args()
    if not args.tiny and not args.recipe:
        parser.error("give a recipe YAML, or --tiny")
    if args.repeats < 3:
        parser.error("--repeats must be >= 3 (medians of alternating repeats)")

    def switches(text: str, name: str) -> list[bool]:
        words = [w.strip() for w in text.split(",")]
        if any(w not in ("off", "on") for w in words):
            parser.error(f"--{name} takes off, on or off,on; got {text!r}")
        return [w == "on" for w in words]

    threads = [int(t) for t in args.threads.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    if any(d not in ("bf16", "fp32") for d in dtypes):
        parser.error(f"--dtypes takes bf16 and/or fp32; got {args.dtypes!r}")
    settings = recipe_settings(
        TINY_RECIPE if args.tiny else yaml.safe_load(Path(args.recipe).read_text()), args.stage
    )
    if args.batch_size:
        settings["batch_size"] = args.batch_size
    cells = settings_matrix(
        threads, dtypes, switches(args.channels_last, "channels_last"), switches(args.compile, "compile")
    )

    load_before = os.getloadavg()[0]
    cpu = cpu_identity()
    per_cycle = theoretical_peak(cpu["flags"], cpu["vendor"], cpu["family"], cpu["model"])
    ghz = args.ghz or (cpu["mhz"] / 1000 if cpu["mhz"] else None)
    per_core = {d: per_cycle[d] * ghz if per_cycle.get(d) and ghz else None for d in ("fp32", "bf16")}

    built = [Setting(cell, settings) for cell in cells]
    flops = built[0].flops()
    raw = [
        {**cell, "batch_size": settings["batch_size"], "flops_per_step": flops, "step_s": []}
        for cell in cells
    ]
    peaks_raw = {(t, d): [] for t in threads for d in dtypes}
    for _ in range(args.repeats):  # alternating: every setting once per repeat
        for (t, d), values in peaks_raw.items():
            values.append(gemm_peak(args.gemm_n, d, t, 3))
        for setting, row in zip(built, raw):
            if "error" in row:
                continue
            try:
                row["step_s"].append(setting.time(args.steps, args.warmup))
            except Exception as err:  # compile needs a C++ compiler: report, do not crash
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
    peaks = {key: statistics.median(v) for key, v in peaks_raw.items()}
    rows = [
        {k: row[k] for k in ("threads", "dtype", "channels_last", "compile", "error")}
        if "error" in row
        else {**summarize(row, peaks, per_core), "step_s_all": row["step_s"]}
        for row in raw
    ]
    load_after = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    model = settings["model_config"]
    report = {
        "recipe": "tiny smoke model" if args.tiny else args.recipe,
        "stage": args.stage,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "cpu": {
            "name": cpu["name"],
            "vendor": cpu["vendor"],
            "family": cpu["family"],
            "model": cpu["model"],
            "cores": cores,
            "nominal_mhz": cpu["mhz"],
            "isa": sorted(f for f in cpu["flags"] if f.startswith(("avx512", "amx", "avx2", "fma"))),
        },
        "load_before": load_before,
        "load_after": load_after,
        # busy: another job held a core's worth of the machine when the run started or ended
        "quiet": max(load_before, load_after) < 0.5,
        "model": f"{model.get('model_type')} {model.get('hidden_sizes')} depths {model.get('depths')}",
        "model_config": model,
        "image_size": settings["image_size"],
        "batch_size": settings["batch_size"],
        "gflop_per_image": flops / settings["batch_size"] / 1e9,
        "steps": args.steps,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "gemm_n": args.gemm_n,
        "gemm_peaks": [
            {"threads": t, "dtype": d, "gflops": v, "all": peaks_raw[(t, d)]} for (t, d), v in peaks.items()
        ],
        "theoretical": {
            "flop_per_cycle_per_core": per_cycle,
            "ghz": ghz,
            "gflops_per_core": per_core,
            "notes": per_cycle["notes"],
        },
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("tiny" if args.tiny else Path(args.recipe).stem)
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
