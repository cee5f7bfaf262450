"""Run under torchrun (gloo, 2 ranks) by tests/test_distributed.py: EmoReg with a frozen affective pathway,
sharded by accelerate's own FSDP2 preparation (`fsdp2_prepare_model`, what `Accelerator.prepare` calls for
`fsdp_version: 2`) with the plugin built from the FSDP_* variables `accelerate launch` derives from
recipes/accelerate_configs/fsdp2.yaml; two training steps; a sharded checkpoint as Trainer writes it
(accelerate's `save_fsdp_model`, torch.distributed.checkpoint), vetted by run_dir and loaded back; the full
model saved as model.safetensors and reloaded with from_pretrained. accelerate itself refuses FSDP on a CPU,
so this is the model side of an FSDP2 run, driven by hand. Writes a JSON report to argv[1]."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import fsdp2_prepare_model, load_fsdp_model, save_fsdp_model
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule
from transformers import AutoModelForImageClassification

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_models import resnet_config, vit_config  # noqa: E402

from emoreg_hf import EmoRegConfig, EmoRegForImageClassification  # noqa: E402
from emoreg_hf.checkpoints import checkpoint_problem  # noqa: E402


def build() -> EmoRegForImageClassification:
    torch.manual_seed(0)  # the same initial weights on every rank, as from_pretrained would give
    config = EmoRegConfig(
        task_config=vit_config(),
        affect_config=resnet_config(),
        task_image_size=[32, 32],
        affect_image_size=[32, 32],
    )
    return EmoRegForImageClassification(config)  # affect_trainable: frozen


def shard(model, plugin, rank: int):
    accelerator = types.SimpleNamespace(  # the attributes accelerate's FSDP2 helpers read
        state=types.SimpleNamespace(fsdp_plugin=plugin),
        mixed_precision="no",
        device=torch.device("cpu"),
        is_main_process=rank == 0,
        torch_device_mesh=None,
        parallelism_config=None,
        num_processes=dist.get_world_size(),
        process_index=rank,
        wait_for_everyone=dist.barrier,
    )
    return fsdp2_prepare_model(accelerator, model), accelerator


def main(report_path: str, work: str) -> None:
    PartialState()  # the process group (gloo on a CPU), as accelerate sets it up for a recipe
    rank = dist.get_rank()
    plugin = FullyShardedDataParallelPlugin()  # from the FSDP_* environment accelerate launch sets
    model, accelerator = shard(build(), plugin, rank)
    units = sorted(
        name or "<root>" for name, module in model.named_modules() if isinstance(module, FSDPModule)
    )

    optimizer = torch.optim.AdamW(model.optimizer_param_groups(1e-3, 0.0), lr=1e-3)
    generator = torch.Generator().manual_seed(rank)  # each rank its own batch, as data parallelism has
    losses = []
    for _ in range(2):
        pixels, labels = (
            torch.randn(4, 3, 32, 32, generator=generator),
            torch.randint(0, 10, (4,), generator=generator),
        )
        loss = model(pixel_values=pixels, labels=labels).loss
        loss.backward()
        frozen_grads = [n for n, p in model.affect_model.named_parameters() if p.grad is not None]
        trained = [p for p in model.parameters() if p.requires_grad]
        with_grads = sum(p.grad is not None for p in trained)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    local = sum(p.to_local().numel() for p in model.parameters())  # this rank's shard of every parameter
    total = sum(p.numel() for p in model.parameters())

    # A checkpoint as Trainer writes it under SHARDED_STATE_DICT: no *.safetensors, a DCP folder per model.
    checkpoint = Path(work) / "checkpoint-2"
    save_fsdp_model(plugin, accelerator, model, str(checkpoint))
    dist.barrier()
    problems = {}
    if rank == 0:
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
        problems["sharded"] = checkpoint_problem(checkpoint)
        cut = Path(work) / "checkpoint-cut"
        shutil.copytree(checkpoint, cut)
        (cut / "pytorch_model_fsdp_0" / ".metadata").unlink()  # a save cut short before its metadata
        problems["cut_short"] = checkpoint_problem(cut)
    dist.barrier()

    # Resume: a freshly sharded model loads the checkpoint and gives the same outputs.
    model.eval()
    probe = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        expected = model(pixel_values=probe).logits
    resumed, _ = shard(build(), plugin, rank)
    load_fsdp_model(plugin, accelerator, resumed, str(checkpoint))
    resumed.eval()
    with torch.no_grad():
        resumed_logits = resumed(pixel_values=probe).logits

    # The final model: a full state dict (what accelerate's get_state_dict does for FSDP2), one safetensors.
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    final = Path(work) / "final"
    report = {}
    if rank == 0:
        model.save_pretrained(final, state_dict=state)
        reloaded = AutoModelForImageClassification.from_pretrained(final).eval()
        with torch.no_grad():
            reloaded_logits = reloaded(pixel_values=probe).logits
        report = {
            "units": units,
            "losses": losses,
            "frozen_params_with_grads": frozen_grads,
            "trainable_params": len(trained),
            "trainable_params_with_grads": with_grads,
            "local_share": local / total,
            "checkpoint_files": sorted(p.name for p in checkpoint.iterdir()),
            "problems": problems,
            "resumed_max_diff": float((resumed_logits - expected).abs().max()),
            "final_files": sorted(p.name for p in final.iterdir()),
            "reloaded_max_diff": float((reloaded_logits - expected).abs().max()),
            "reloaded_affect_frozen": all(not p.requires_grad for p in reloaded.affect_model.parameters()),
        }
        Path(report_path).write_text(json.dumps(report, indent=2))
    dist.barrier()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
