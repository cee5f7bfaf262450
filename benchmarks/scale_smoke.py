"""Scale smoke run: the real recipes at their real architecture size, through the recipe scripts themselves.

For each real recipe (recipes/vit-base-patch16, recipes/resnet50, recipes/convnext-tiny) and each case, it
runs stage 1 (`recipes/pretrain.py <r>/pretrain_affect.yaml`), then stage 2 twice
(`recipes/finetune.py <r>/finetune_cifar100.yaml`: EmoReg with the frozen affective pathway of that stage 1,
and `--method baseline`) as subprocesses, with command-line overrides only:

- the architecture built from its config with random weights (the YAMLs name Hub checkpoints; the Hub may be
  unreachable): `--model_name_or_path none --model_config '{model_type: vit}'` (transformers' defaults are
  ViT-B/16), `{model_type: resnet}` (ResNet-50), `{model_type: timm_wrapper, architecture: convnext_tiny}`,
  and `--image_size 224`;
- tiny local data in the real schemas, written here into the work folder: a CIFAR-100 parquet layout
  (`plain_text/{train,test}-00000-of-00001.parquet`: `img`, `fine_label` (100 names), `coarse_label` (20);
  200 training rows, 2 per fine class, so the task head has CIFAR-100's 100 outputs, and 8 test rows of
  classes the training rows have, as the data layer's unseen-class check requires) and an affective image
  folder (`train|test/<FER-2013 adjective>/*.png`, 48-px grayscale, 8 + 2 per emotion, mapped onto the
  recipes' `valence3`);
- 3 optimizer steps, `--per_device_train_batch_size 2`, no saving or evaluation during training, the final
  evaluation capped at 2 images per split, `--warmup_steps 0` (so the YAML's learning rate acts);
- one intra-op thread per process (`OMP_NUM_THREADS=1`, `--threads`), as torchrun gives its ranks.

Cases: `fp32`; `bf16` (`--bf16 true --use_cpu true`: CPU autocast in bfloat16, fp32 master weights);
`compile` (`--torch_compile true`, inductor); `checkpointing` (`--gradient_checkpointing true`); `ddp2`
(`torch.distributed.run --nproc_per_node 2`: two gloo ranks); `fsdp2` (`accelerate launch --config_file
recipes/accelerate_configs/fsdp.yaml --num_processes 2`, the documented FSDP command).

Per run it records: status (`ok`; `limitation` for a refusal that is expected and explained, such as
activation checkpointing on HF's ResNet or FSDP on a CPU-only host; `error` otherwise, with the last lines
of stderr), seconds per optimizer step (`train_runtime / global_step` from the Trainer's own results: the
whole training loop divided by the steps, so it includes the first step and, for `compile`, compilation),
wall-clock of the subprocess, peak memory (the largest sampled sum of RSS over the process tree, every 0.2 s,
and the largest single process's `ru_maxrss` from `wait4`), the per-step training losses (all must be finite)
and whether the final evaluation produced metrics.

    python benchmarks/scale_smoke.py --json outputs/scale_smoke.json
    python benchmarks/scale_smoke.py --recipes resnet50 --cases fp32,bf16 --keep /tmp/smoke
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# The real architecture of each recipe, built from its config (no download).
RECIPES = {
    "vit-base-patch16": "{model_type: vit}",  # ViTConfig() is ViT-B/16 at 224 px
    "resnet50": "{model_type: resnet}",  # ResNetConfig() is ResNet-50 (bottleneck, [3, 4, 6, 3])
    "convnext-tiny": "{model_type: timm_wrapper, architecture: convnext_tiny}",
}
CASES = ("fp32", "bf16", "compile", "checkpointing", "ddp2", "fsdp2")
STAGES = ("pretrain", "emoreg", "baseline")
EMOTIONS = ("angry", "happy", "neutral", "sad")  # FER-2013 adjectives -> valence3 negative/positive/neutral

# Refusals that are expected on this kind of machine or family, with what they mean.
LIMITATIONS = [
    (
        re.compile(r"does not support activation checkpointing"),
        "the family has no activation checkpointing in transformers (HF ResNet, HF ConvNeXt); refused by name",
    ),
    (
        re.compile(r"There are currently no available devices found|an FSDP accelerate config on the CPU"),
        "AcceleratorState never switches a CPU (MULTI_CPU) run to FSDP, so the recipes refuse an FSDP config "
        "on a CPU (it would run as plain DDP); FSDP cannot run on a CPU-only host (docs/scale.md)",
    ),
]


# -- data ------------------------------------------------------------------------------------------------


def _png(rng, side: int, mode: str) -> bytes:
    from PIL import Image

    shape = (side, side, 3) if mode == "RGB" else (side, side)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, dtype="uint8"), mode).save(buf, format="PNG")
    return buf.getvalue()


def write_data(root: Path, train_rows: int = 200, test_rows: int = 8, per_emotion: int = 8) -> dict:
    """A CIFAR-100 parquet layout and a FER-like affective image folder, random pixels, real schemas.

    The training rows go round all 100 fine classes (2 each by default), so the task head has CIFAR-100's
    real 100 outputs; the test rows draw only labels the training rows have, because the data layer refuses
    a test class no training row has (`drop_unseen_classes`). Every emotion has train and test images."""
    import datasets
    import numpy as np

    datasets.disable_progress_bars()
    rng = np.random.default_rng(0)
    fine = [f"fine_{i:02d}" for i in range(100)]
    coarse = [f"coarse_{i:02d}" for i in range(20)]
    features = datasets.Features(
        {
            "img": datasets.Image(),
            "fine_label": datasets.ClassLabel(names=fine),
            "coarse_label": datasets.ClassLabel(names=coarse),
        }
    )
    cifar = root / "cifar100"
    train_labels = [int(x) for x in rng.permutation(np.arange(train_rows) % len(fine))]
    test_labels = [int(x) for x in rng.choice(sorted(set(train_labels)), test_rows)]
    for split, labels in (("train", train_labels), ("test", test_labels)):
        columns = {
            "img": [{"bytes": _png(rng, 32, "RGB"), "path": None} for _ in labels],
            "fine_label": labels,
            "coarse_label": [x // 5 for x in labels],
        }
        path = cifar / "plain_text" / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(path))
    affect = root / "affect"
    for split, n in (("train", per_emotion), ("test", 2)):
        for emotion in EMOTIONS:
            folder = affect / split / emotion
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i}.png").write_bytes(_png(rng, 48, "L"))
    return {
        "dataset": f"{{path: {cifar}, label_column: fine_label}}",
        "affective_sources": f"[{{path: imagefolder, data_dir: {affect}}}]",
    }


# -- running one recipe ----------------------------------------------------------------------------------


def free_port() -> str:
    with socket.socket() as probe:  # torchrun's static rendezvous does not accept port 0
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def launcher(case: str) -> list[str]:
    if case == "ddp2":
        return [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port()]
    if case == "fsdp2":
        return [
            PY, "-m", "accelerate.commands.launch", "--config_file", "recipes/accelerate_configs/fsdp.yaml",
            "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--main_process_port", free_port(),
        ]  # fmt: skip
    return [PY]


CASE_ARGS = {
    "fp32": ["--bf16", "false"],
    # TrainingArguments refuses bf16 without a bf16 GPU unless use_cpu is set; on CPU it is autocast.
    "bf16": ["--bf16", "true", "--use_cpu", "true"],
    "compile": ["--bf16", "false", "--torch_compile", "true"],
    "checkpointing": ["--bf16", "false", "--gradient_checkpointing", "true"],
    "ddp2": ["--bf16", "false"],
    "fsdp2": ["--bf16", "false"],
}


def recipe_command(recipe: str, case: str, stage: str, out: Path, data: dict, affect: Path | None, args):
    from emoreg_hf import registry  # imports torch: not at module level, so --help answers at once

    model = RECIPES[recipe]
    common = [
        "--output_dir", str(out), "--overwrite_output_dir", "true", "--image_size", "224",
        "--max_steps", str(args.steps), "--warmup_steps", "0",
        "--per_device_train_batch_size", str(args.batch_size), "--per_device_eval_batch_size", str(args.batch_size),
        "--max_eval_samples", str(args.eval_samples), "--eval_strategy", "no", "--save_strategy", "no",
        "--logging_steps", "1", "--report_to", "none", "--dataloader_num_workers", "0",
    ]  # fmt: skip
    if stage == "pretrain":
        script = [
            "recipes/pretrain.py", f"recipes/{recipe}/pretrain_affect.yaml",
            "--model_name_or_path", "none", "--model_config", model,
            "--affective_sources", data["affective_sources"],
        ]  # fmt: skip
    else:
        script = [
            "recipes/finetune.py", f"recipes/{recipe}/finetune_cifar100.yaml",
            "--task_model_name_or_path", "none", "--task_model_config", model,
            "--dataset", data["dataset"], "--load_best_model_at_end", "false",
        ]  # fmt: skip
        script += ["--method", stage]  # a stage-2 stage is named after its method
        if registry.METHODS[stage].uses_affect:
            script += ["--affect_model_name_or_path", str(affect)]
    return [*launcher(case), *script, *common, *CASE_ARGS[case]]


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def run_measured(command: list[str], env: dict, log_dir: Path, timeout: float) -> dict:
    """Run `command` from the repository root; peak tree RSS by sampling, max process RSS from wait4."""
    import psutil

    log_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = open(log_dir / "stdout.log", "w"), open(log_dir / "stderr.log", "w")
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    peak = {"tree": 0, "timed_out": False}
    done = threading.Event()

    def sample() -> None:
        ps = psutil.Process(proc.pid)
        while not done.is_set():
            peak["tree"] = max(peak["tree"], _tree_rss(ps))
            if time.perf_counter() - start > timeout and not peak["timed_out"]:
                peak["timed_out"] = True
                os.killpg(proc.pid, signal.SIGKILL)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout.close()
    stderr.close()
    return {
        "returncode": proc.returncode,
        "timed_out": peak["timed_out"],
        "wall_s": round(time.perf_counter() - start, 2),
        "peak_rss_tree_gib": round(peak["tree"] / 2**30, 3),
        "max_process_rss_gib": round(usage.ru_maxrss * 1024 / 2**30, 3),  # ru_maxrss is KiB on Linux
    }


def stderr_lines(log_dir: Path) -> list[str]:
    """stderr without progress bars."""
    text = (log_dir / "stderr.log").read_text(errors="replace")
    return [
        line
        for line in re.split(r"[\r\n]+", text)
        if line.strip() and "it/s]" not in line and "s/it]" not in line and "examples/s]" not in line
    ]


RAISED = re.compile(r"^(\[rank\d+\]: )?[\w.]*(Error|Exception): ")


def raised_line(lines: list[str], pattern: re.Pattern | None = None) -> str | None:
    """The last `SomeError: message` line (matching `pattern`), not the launcher's ChildFailedError."""
    found = [
        x.strip()
        for x in lines
        if RAISED.match(x.strip()) and "ChildFailedError" not in x and (pattern is None or pattern.search(x))
    ]
    return found[-1][-400:] if found else None


def read_results(out: Path) -> dict:
    """What the Trainer wrote: steps, runtime, per-step losses, the final evaluation."""
    found: dict = {}
    state_file, results_file = out / "trainer_state.json", out / "all_results.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        found["global_step"] = state.get("global_step")
        found["losses"] = [e["loss"] for e in state.get("log_history", []) if "loss" in e]
    if results_file.is_file():
        results = json.loads(results_file.read_text())
        found["train_runtime"] = results.get("train_runtime")
        found["train_loss"] = results.get("train_loss")
        found["eval_loss"] = results.get("eval_loss")
        found["test_loss"] = results.get("test_loss")
        found["evaluated"] = "test_accuracy" in results or "eval_accuracy" in results
    if found.get("train_runtime") and found.get("global_step"):
        found["s_per_step"] = round(found["train_runtime"] / found["global_step"], 3)
    return found


def classify(row: dict, log_dir: Path, steps: int) -> None:
    losses = row.get("losses") or []
    finite = bool(losses) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses)
    if row["returncode"] == 0 and finite and row.get("evaluated") and row.get("global_step") == steps:
        row["status"] = "ok"
        if row.get("case") == "fsdp2" and any("DDP constructor" in x for x in stderr_lines(log_dir)):
            row["status"] = "limitation"  # accelerate silently trained with DDP: FSDP was not exercised
            row["note"] = "ran, but as gloo DDP: accelerate does not switch a CPU (MULTI_CPU) run to FSDP"
        return
    lines = stderr_lines(log_dir)
    row["stderr_tail"] = "\n".join(lines[-25:])
    if row["returncode"] != 0:
        for pattern, meaning in LIMITATIONS:
            if any(pattern.search(x) for x in lines):
                row["status"] = "limitation"
                row["error"] = raised_line(lines, pattern) or next(x for x in lines if pattern.search(x))
                row["note"] = meaning
                return
    row["status"] = "error"
    if row["returncode"] == 0:
        problems = []
        if not finite:
            problems.append(f"non-finite or missing training losses {losses}")
        if not row.get("evaluated"):
            problems.append("the final evaluation produced no metrics")
        if row.get("global_step") != steps:
            problems.append(f"global_step {row.get('global_step')} != {steps}")
        row["error"] = "; ".join(problems)
    else:
        row["error"] = (
            "timed out" if row.get("timed_out") else raised_line(lines) or (lines or ["?"])[-1][-400:]
        )


def drop_weights(folder: Path) -> None:
    """Run folders keep their JSON files; the weights (up to 0.7 GB each) go."""
    for pattern in ("*.safetensors", "*.bin"):
        for path in folder.glob(pattern):
            path.unlink()


# -- the table -------------------------------------------------------------------------------------------


def fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'recipe':<17} {'case':<13} {'stage':<8} {'status':<10} {'s/step':>7} {'wall s':>7} "
        f"{'tree GiB':>8} {'proc GiB':>8} {'loss':>8}  note"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        loss = (r.get("losses") or [None])[-1]
        note = r.get("note") or r.get("error") or ""
        if r["status"] == "ok":
            note = r.get("note", "")
        print(
            f"{r['recipe']:<17} {r['case']:<13} {r['stage']:<8} {r['status']:<10} "
            f"{fmt(r.get('s_per_step'), '7.2f'):>7} {fmt(r.get('wall_s'), '7.1f'):>7} "
            f"{fmt(r.get('peak_rss_tree_gib'), '8.2f'):>8} {fmt(r.get('max_process_rss_gib'), '8.2f'):>8} "
            f"{fmt(loss, '8.4f'):>8}  {note[:110]}"
        )


# -- main ------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None, help="write every run's record here")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated: {', '.join(RECIPES)}")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated: {', '.join(STAGES)}")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per run")
    parser.add_argument("--batch_size", type=int, default=2, help="per device (train and eval)")
    parser.add_argument("--eval_samples", type=int, default=2, help="--max_eval_samples of each run")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="intra-op threads per process (OMP_NUM_THREADS; torchrun's own default for its ranks): 1 keeps "
        "steps steady on a shared host, where oversubscribed OpenMP threads made them up to 10x slower",
    )
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per run before it is killed")
    parser.add_argument(
        "--keep", default=None, help="work folder to keep (default: a temporary one, removed)"
    )
    args = parser.parse_args()
    recipes, cases, stages = (s.split(",") for s in (args.recipes, args.cases, args.stages))
    for name, given, known in (
        ("recipe", recipes, RECIPES),
        ("case", cases, CASES),
        ("stage", stages, STAGES),
    ):
        unknown = [x for x in given if x not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {unknown}; known: {', '.join(known)}")

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="scale_smoke_"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(work / "hf_datasets_cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor_cache"),  # compile from scratch, every time
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    env.pop("HF_TOKEN", None)
    from emoreg_hf import registry

    started = time.perf_counter()
    load_before = os.getloadavg()
    data = write_data(work / "data")
    rows: list[dict] = []
    try:
        for recipe in recipes:
            stage1_ok: dict[str, Path] = {}
            for case in cases:
                folder = work / recipe / case
                for stage in stages:
                    out = folder / stage
                    row = {"recipe": recipe, "case": case, "stage": stage}
                    affect = None
                    if stage != "pretrain" and registry.METHODS[stage].uses_affect:
                        affect = (
                            stage1_ok.get(case)
                            or stage1_ok.get("fp32")
                            or next(iter(stage1_ok.values()), None)
                        )
                        if affect is None:
                            row.update(status="skipped", error="no stage-1 run of this recipe succeeded")
                            rows.append(row)
                            continue
                        if affect != folder / "pretrain":
                            row["note"] = f"affective pathway from the {affect.parent.name} stage 1"
                    command = recipe_command(recipe, case, stage, out, data, affect, args)
                    row["command"] = (
                        subprocess.list2cmdline(command).replace(str(work), "$WORK").replace(PY, "python")
                    )
                    print(f"[{time.perf_counter() - started:7.1f}s] {recipe} {case} {stage} ...", flush=True)
                    row.update(
                        run_measured(command, env, work / "logs" / recipe / case / stage, args.timeout)
                    )
                    row.update(read_results(out))
                    classify(row, work / "logs" / recipe / case / stage, args.steps)
                    print(
                        f"          -> {row['status']} in {row['wall_s']:.0f}s"
                        + (f": {row.get('error')}" if row["status"] != "ok" else ""),
                        flush=True,
                    )
                    if stage == "pretrain" and row["status"] == "ok":
                        stage1_ok[case] = out
                    elif out.is_dir():
                        drop_weights(out)
                    rows.append(row)
            for out in stage1_ok.values():
                drop_weights(out)
    finally:
        total = time.perf_counter() - started
        print()
        print(
            f"scale smoke: {len(recipes)} recipe(s) x {len(cases)} case(s) x {len(stages)} stage(s); "
            f"batch {args.batch_size}/device, {args.steps} steps, 224 px, {args.threads} thread(s)/process; "
            f"{total / 60:.1f} min; "
            f"host load before {load_before[0]:.2f} on {os.cpu_count()} cores"
        )
        print_table(rows)
        import torch
        import transformers

        report = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "total_s": round(total, 1),
            "setup": {
                "recipes": recipes,
                "cases": cases,
                "stages": stages,
                "steps": args.steps,
                "per_device_batch_size": args.batch_size,
                "eval_samples": args.eval_samples,
                "threads_per_process": args.threads,
                "image_size": 224,
                "model_configs": {r: RECIPES[r] for r in recipes},
                "work_folder": "$WORK in the commands: the data, run folders and logs (--keep to keep them)",
                "cpu_count": os.cpu_count(),
                "host_load_average_before": [round(x, 2) for x in load_before],
                "host_load_average_after": [round(x, 2) for x in os.getloadavg()],
                "python": platform.python_version(),
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "s_per_step": "train_runtime / global_step from all_results.json (first step and compilation included)",
                "peak_rss_tree_gib": "largest sum of RSS over the process tree, sampled every 0.2 s",
                "max_process_rss_gib": "ru_maxrss of the largest single process (wait4)",
            },
            "runs": rows,
        }
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report, indent=2))
            print(f"\nwritten: {args.json}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["status"] in ("ok", "limitation") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
