"""Lesson 11's training script: the same LoRA run on every process that ``accelerate launch`` starts.

    accelerate launch --num_processes 2 --multi_gpu scale_out_train.py --config run.json --mode ddp

Each process runs ``main``: join the process group, load the model with the same seeded adapter, wrap it
(``replicate``: DDP, a full copy per process; ``shard``: FSDP2, every parameter split across the
processes), train on its slice of each global batch (``course_utils.distributed.train_steps``) and write
what it measured to ``<out>/<mode>/rank<r>.json``. The fsdp run also gathers the LoRA weights once onto
rank 0 and saves them as an adapter, with the logits of a probe batch to compare against a reload.

With several processes the launcher sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; with
one (a single GPU) it starts the script plainly and sets none of them, and the script runs as rank 0 of
a group of one (``course_utils.distributed.process_rank``).
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
    local_bytes,
    lora_loss,
    process_rank,
    rank_slice,
    train_steps,
)


def log(rank: int, text: str) -> None:
    """Print one line as one write: the processes share the launcher's pipe (``python -u``, unbuffered)."""
    print(f"[rank {rank}] {text}\n", end="", flush=True)


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


def replicate(model, device):
    """DDP: a full copy of the model per process; ``backward`` all-reduces (averages) the gradients."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(model, reshard_after_forward: bool):
    """FSDP2: split each decoder layer's parameters across the processes, then the rest at the root.

    In each step a layer's full weights are all-gathered just before it runs and freed again: after
    its forward (``reshard_after_forward=True``), or after its backward (``False``: one all-gather per
    layer and step instead of two, for more memory during the step). Gradients are reduce-scattered,
    so each process keeps, and the optimizer updates, only its own shard.
    """
    from torch.distributed.fsdp import fully_shard

    for layer in model.base_model.model.model.layers:
        fully_shard(layer, reshard_after_forward=reshard_after_forward)
    fully_shard(model, reshard_after_forward=reshard_after_forward)  # embeddings, final norm, head
    return model


def watch_gathered_params(model) -> tuple[dict, list]:
    """Record the most parameter bytes this process holds when a decoder layer starts its forward.

    Hooked after ``fully_shard``, so each look comes after FSDP has all-gathered that layer: the bytes
    count the local shards plus every layer gathered at that moment. Returns the record and the hooks.
    """
    seen = {"max_param_bytes": 0}

    def look(module, args):
        held = sum(local_bytes(p) for p in {id(p): p for p in model.parameters()}.values())
        seen["max_param_bytes"] = max(seen["max_param_bytes"], held)

    return seen, [layer.register_forward_pre_hook(look) for layer in model.base_model.model.model.layers]


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


def join(cfg: dict, fail_rank: int) -> tuple[int, int, torch.device]:
    """Join the process group (rank 0 opens it at MASTER_ADDR:MASTER_PORT); return rank, world, device."""
    rank, world, local_rank = process_rank()  # (0, 1, 0) under accelerate's one-process launcher
    device = torch.device(f"cuda:{local_rank}" if cfg["device"] == "cuda" else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    timeout = datetime.timedelta(seconds=cfg["collective_timeout_s"])
    dist.init_process_group(cfg["backend"], timeout=timeout, rank=rank, world_size=world)
    log(rank, f"joined: world size {dist.get_world_size()}, backend {dist.get_backend()}, device {device}")
    if fail_rank >= world:
        log(rank, f"--fail-rank {fail_rank} names no rank of {world}: nothing fails on purpose")
    if rank == fail_rank:
        raise RuntimeError(f"rank {rank} fails on purpose (--fail-rank), before the first collective")
    dist.barrier()
    return rank, world, device


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", type=Path, required=True, help="JSON written by the notebook")
    ap.add_argument("--mode", choices=("ddp", "fsdp"), required=True)
    ap.add_argument("--fail-rank", type=int, default=-1, help="this rank raises after joining (lesson demo)")
    args = ap.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    out_dir = Path(cfg["out_dir"]) / args.mode
    out_dir.mkdir(parents=True, exist_ok=True)

    rank, world, device = join(cfg, args.fail_rank)
    base = load_model(cfg["model_id"], dtype=getattr(torch, cfg["dtype"]), device_map={"": str(device)})
    model = add_seeded_lora(base, cfg["lora_r"], cfg["lora_alpha"], cfg["target_modules"], cfg["seed"])
    if args.mode == "ddp":
        model = replicate(model, device)
    else:  # the launch's --fsdp_reshard_after_forward, handed on by accelerate in the environment
        model = shard(model, os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true") == "true")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg["learning_rate"])
    blocks = torch.load(cfg["data_path"])  # every process reads all rows; train_steps takes its slice
    steps = cfg["steps"][args.mode]
    if args.mode == "fsdp":  # the parameter bytes during the forward, with the gathered layers
        gathered, hooks = watch_gathered_params(model)
    losses, seconds = train_steps(model, optimizer, blocks, steps, cfg["batch_size"], rank, world, device)

    result = {"rank": rank, "world_size": world, "mode": args.mode, "losses": losses, "step_s": seconds,
              "held": held_bytes(model, optimizer),
              "launcher_env": {k: os.environ.get(k) for k in ("ACCELERATE_USE_FSDP", "FSDP_VERSION",
                                                               "FSDP_RESHARD_AFTER_FORWARD", "MASTER_PORT")}}
    log(rank, f"{args.mode}: trained {steps} steps: loss {losses[0]:.4f} -> {losses[-1]:.4f}, "
              f"median step {statistics.median(seconds):.2f} s")
    if args.mode == "ddp":
        result["probe"] = ddp_probe(model, blocks, cfg, rank, world, device)
    else:
        result["params_in_step"] = gathered["max_param_bytes"]
        for hook in hooks:
            hook.remove()
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
