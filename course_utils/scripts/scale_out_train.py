"""Lesson 11's training script: the same LoRA run on every process that ``accelerate launch`` starts.

    accelerate launch --num_processes 2 --cpu --multi_gpu scale_out_train.py --config run.json --mode ddp

With several processes the launcher sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT
in each process's environment; with one (a single GPU, ``--num_processes 1``) it starts the script
plainly and sets none of them, and the script runs as rank 0 of a group of one
(``course_utils.distributed.process_rank``). The script joins the process group, loads the model
and the LoRA adapter from the config file the notebook wrote, wraps the model for
``--mode ddp`` (a full replica per process,
gradients all-reduced) or ``--mode fsdp`` (FSDP2 ``fully_shard``: every parameter split across the
processes), trains, and writes what each rank measured to ``<out>/rank<r>.json``. The fsdp run also
gathers the LoRA weights once onto rank 0 and saves them as an adapter, with the logits of a probe
batch to compare against a single-process reload.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.distributed as dist

from course_utils import load_model
from course_utils.distributed import (
    add_seeded_lora,
    held_bytes,
    lora_loss,
    process_rank,
    rank_slice,
    train_steps,
)


def log(rank: int, text: str) -> None:
    print(f"[rank {rank}] {text}", flush=True)


def ddp_probe(model, blocks, cfg, rank, world, device) -> dict:
    """Time forward+backward with the gradient all-reduce and without it (``no_sync``).

    Also checks what the all-reduce does: after a synced backward every rank holds the same
    gradients; under ``no_sync`` each holds the gradient of its own slice only.
    """
    rows = rank_slice(blocks[: cfg["batch_size"]], rank, world).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        lora_loss(model, rows).backward()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def grads_agree() -> bool:  # the same answer on every rank: is any rank's gradient not rank 0's?
        flat = torch.cat([p.grad.flatten().float() for p in trainable])
        rank0 = flat.clone()
        dist.broadcast(rank0, src=0)
        differs = (flat != rank0).any().float()
        dist.all_reduce(differs, op=dist.ReduceOp.MAX)
        return differs.item() == 0

    out = {"sync_s": [], "no_sync_s": []}
    for _ in range(cfg["probe_repeats"]):
        with model.no_sync():
            out["no_sync_s"].append(fwd_bwd())
        out["agree_no_sync"] = grads_agree()
        out["sync_s"].append(fwd_bwd())
        out["agree_sync"] = grads_agree()
    grad_bytes = sum(p.numel() * p.element_size() for p in trainable)
    buf = torch.zeros(grad_bytes // 4, dtype=torch.float32, device=device)
    times = []
    for _ in range(cfg["probe_repeats"]):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out["allreduce_s"] = statistics.median(times)
    out["grad_bytes"] = grad_bytes
    model.zero_grad(set_to_none=True)
    return out


def shard(model, cfg):
    """FSDP2: shard each decoder layer, then the rest (embeddings, final norm, head) at the root.

    ``reshard_after_forward=False`` keeps a layer's gathered weights from forward until its backward:
    one all-gather per layer and step instead of two, for more memory during the step. After the
    backward every layer is resharded either way.
    """
    from torch.distributed.fsdp import fully_shard

    if cfg["shard_layers"]:
        for layer in model.base_model.model.model.layers:
            fully_shard(layer, reshard_after_forward=cfg["reshard_after_forward"])
    fully_shard(model, reshard_after_forward=cfg["reshard_after_forward"])
    return model


def save_gathered_adapter(model, out_dir: Path, rank: int) -> dict:
    """Gather only the LoRA weights (DTensor shards -> full tensors) once, and save them on rank 0."""
    t0 = time.perf_counter()
    full = {}
    for name, p in model.named_parameters():
        if p.requires_grad:  # every rank takes part in each gather, in the same order
            tensor = p.full_tensor() if hasattr(p, "full_tensor") else p
            if rank == 0:
                full[name] = tensor.detach().cpu()
    if rank == 0:
        model.save_pretrained(out_dir / "adapter", state_dict=full)  # peft keeps the lora_ keys only
    dist.barrier()
    return {"gathered_tensors": len(full), "gather_s": time.perf_counter() - t0}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True, help="JSON written by the notebook")
    ap.add_argument("--mode", choices=("ddp", "fsdp"), required=True)
    ap.add_argument("--fail-rank", type=int, default=-1, help="this rank raises after joining (lesson demo)")
    args = ap.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    out_dir = Path(cfg["out_dir"]) / args.mode
    out_dir.mkdir(parents=True, exist_ok=True)

    rank, world, local_rank = process_rank()  # (0, 1, 0) under accelerate's one-process launcher
    device = torch.device(f"cuda:{local_rank}" if cfg["device"] == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=cfg["collective_timeout_s"])
    dist.init_process_group(cfg["backend"], timeout=timeout, rank=rank, world_size=world)
    log(rank, f"joined: world size {dist.get_world_size()}, backend {dist.get_backend()}, device {device}")
    if args.fail_rank >= world:
        log(rank, f"--fail-rank {args.fail_rank} names no rank of {world}: nothing fails on purpose")
    if rank == args.fail_rank:
        raise RuntimeError(f"rank {rank} fails on purpose (--fail-rank), before the first collective")
    dist.barrier()

    dtype = getattr(torch, cfg["dtype"])
    base = load_model(cfg["model_id"], dtype=dtype, device_map={"": str(device)})
    model = add_seeded_lora(base, cfg["lora_r"], cfg["lora_alpha"], cfg["target_modules"], cfg["seed"])
    blocks = torch.load(cfg["data_path"])
    if args.mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    else:
        model = shard(model, cfg)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["learning_rate"])
    steps = cfg["steps"][args.mode]
    losses, seconds = train_steps(model, optimizer, blocks, steps, cfg["batch_size"], rank, world, device)
    result = {"rank": rank, "world_size": world, "mode": args.mode, "losses": losses, "step_s": seconds,
              "held": held_bytes(model, optimizer),
              "launcher_env": {k: os.environ.get(k) for k in ("ACCELERATE_USE_FSDP", "FSDP_VERSION",
                                                               "OMP_NUM_THREADS", "MASTER_PORT")}}
    log(rank, f"{args.mode}: trained {steps} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
              f"median step {statistics.median(seconds):.2f} s")
    if args.mode == "ddp":
        result["probe"] = ddp_probe(model, blocks, cfg, rank, world, device)
    else:
        result.update(save_gathered_adapter(model, out_dir, rank))
        model.eval()
        with torch.no_grad():  # every rank runs the forward: each layer's weights are all-gathered
            logits = model(input_ids=blocks[: cfg["n_probe"]].to(device)).logits.float().cpu()
        if rank == 0:
            torch.save(logits, out_dir / "probe_logits.pt")
    (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
