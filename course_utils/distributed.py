"""Several processes, one fine-tuning run: launch it, split the batch, shard the model, measure it.

Lesson 11 runs the same LoRA training on N processes with ``accelerate launch`` (which starts them
through ``torch.distributed``'s elastic agent). This module holds the pieces the notebook and the
training script ``course_utils/scripts/scale_out_train.py`` share: choosing the backend and a free
port, running an ``accelerate launch`` line with a timeout, the training step that every process
runs on its slice of the global batch, and the byte counts of what each process holds.
"""

from __future__ import annotations

import math
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

SCRIPT = Path(__file__).parent / "scripts" / "scale_out_train.py"


# ----------------------------------------------------------------------------- choosing how to run

def default_backend(device: str) -> str:
    """NCCL between CUDA GPUs, gloo between CPU processes.

    Taught in lesson 11, section «2 · One config object».
    """
    return "nccl" if device == "cuda" else "gloo"


def default_num_processes(device: str, cpu_processes: int = 2) -> int:
    """Every GPU the runtime has (Kaggle: 2 T4s), else ``cpu_processes`` CPU processes.

    Taught in lesson 11, section «2 · One config object».
    """
    return torch.cuda.device_count() if device == "cuda" else cpu_processes


def check_backend(backend: str, platform: str = sys.platform) -> None:
    """Raise a RuntimeError that says what to do when this machine cannot run ``backend``.

    Taught in lesson 11, section «3 · Can this machine form a process group?».
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(
            f"this PyTorch build has no torch.distributed (common on {platform} wheels), so no "
            "process group can be formed. Run this notebook on Linux (Colab, Kaggle) or in WSL2.")
    if backend == "nccl" and (not dist.is_nccl_available() or platform != "linux"):
        raise RuntimeError(
            f"backend 'nccl' needs Linux with NVIDIA GPUs (this is {platform}); NCCL does not exist "
            "on Windows or macOS. Use backend 'gloo' there (CPU processes), or Linux/WSL2.")
    if backend == "gloo" and not dist.is_gloo_available():
        raise RuntimeError(f"this PyTorch build has no gloo backend on {platform}; use Linux or WSL2.")
    if backend not in ("nccl", "gloo"):
        raise ValueError(f"unknown backend {backend!r}; the course uses 'nccl' (GPUs) or 'gloo' (CPU)")


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the operating system for a TCP port nobody listens on (bind to port 0, read it back).

    Taught in lesson 11, section «3 · Can this machine form a process group?».
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise a RuntimeError naming the port when another process already listens on it.

    Rank 0 opens the rendezvous store on ``main_process_port``; if a previous run (or a second
    notebook) still holds it, the launch fails deep inside c10d with ``EADDRINUSE``.

    Taught in lesson 11, section «3 · Can this machine form a process group?».
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as err:
            raise RuntimeError(
                f"port {port} on {host} is already in use (a previous run that is still alive, or "
                f"another notebook). Pick a free one with free_port(), or stop that process. ({err})"
            ) from err


def process_rank(environ: dict | None = None) -> tuple[int, int, int]:
    """Return this process's ``(RANK, WORLD_SIZE, LOCAL_RANK)``; one plain process is ``(0, 1, 0)``.

    With several processes (or ``--use_fsdp``) ``accelerate launch`` starts the script through
    torch's elastic agent, which sets the three variables, ``MASTER_ADDR`` and ``MASTER_PORT``. With
    one process it uses its simple launcher (a plain ``python script.py``), which sets none of them:
    that process is rank 0 of 1, and it is given a local address and a free port (written into
    ``environ``) so that it can still form a process group of one.
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", str(free_port()))
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


# ----------------------------------------------------------------------------- running a launch

@dataclass
class LaunchResult:
    """What a launch returned: exit code, seconds, all output lines, and whether the timeout hit."""

    returncode: int
    seconds: float
    lines: list[str]
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.lines[-n:])


def run_launch(cmd: list[str], timeout_s: float, env: dict | None = None,
               show: Callable[[str], bool] | None = None) -> LaunchResult:
    """Run a launch command in its own process group; print the lines ``show`` accepts; never hang.

    On timeout the whole group (launcher and every worker) gets SIGTERM, then SIGKILL: a worker
    stuck in a collective whose partner died must not outlive the notebook cell.

    Taught in lesson 11, section «6 · Data parallel: the same run on N processes».
    """
    show = show or (lambda line: True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True, bufsize=1)
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in proc.stdout], daemon=True)
    reader.start()  # a thread reads, so the loop below can check the clock while a rank is silent
    seen: list[str] = []
    timed_out = False
    while reader.is_alive() or not lines.empty():
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if time.perf_counter() - t0 > timeout_s:
                timed_out = True
                _stop_group(proc)
                reader.join(5)
                break
            continue
        seen.append(line)
        if show(line):
            print(line, flush=True)
    lines = seen
    return LaunchResult(proc.wait(), time.perf_counter() - t0, lines, timed_out)


def _stop_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the launch's process group, SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace_s)
            return
        except subprocess.TimeoutExpired:
            continue


# torch.distributed.elastic's report names the first rank that failed under "Root Cause", in a line
# `  rank      : 1 (local_rank: 1)`; the ranks it stopped afterwards are listed above it.
_ROOT_CAUSE_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")


def explain_failure(result: LaunchResult) -> str:
    """Turn a failed launch into one paragraph: timeout, or which rank died and with what.

    Taught in lesson 11, section «6 · Data parallel: the same run on N processes».
    """
    if result.timed_out:
        return (f"the launch did not finish within {result.seconds:.0f} s and was stopped (all its "
                "processes were killed). A rank waiting for a partner that died or never started "
                "looks like this; the last lines were:\n" + result.tail())
    if result.returncode == 0:
        return "the launch succeeded"
    start = max((i for i, line in enumerate(result.lines) if "Root Cause" in line), default=0)
    ranks = sorted({m.group(1) for line in result.lines[start:] if (m := _ROOT_CAUSE_RANK.match(line))})
    died = f"rank(s) {', '.join(ranks)} exited with an error" if ranks else "a process exited with an error"
    own = tuple(f"[rank{r}]:" for r in ranks)  # the elastic agent prefixes each worker's traceback
    causes = [line for line in result.lines if line.startswith(own) and "Error" in line]
    if causes:
        died += f" ({causes[-1].split(':', 1)[1].strip()})"
    return (f"{died}; the launcher stopped the other ranks and returned {result.returncode} after "
            f"{result.seconds:.0f} s. The last lines were:\n" + result.tail())


def launch_and_wait(command: str, timeout_s: float, show_prefix: str = "[rank ") -> LaunchResult:
    """Run one ``accelerate launch ...`` line from a notebook and wait for it; return what it printed.

    The plumbing a terminal would leave to you, in one place: ``accelerate`` runs through this
    kernel's Python (``python -m accelerate.commands.launch``), on a free port (``--main_process_port``,
    unless the line names one), with this checkout on ``PYTHONPATH`` so every process imports the same
    ``course_utils``; every output line is kept (the lines starting with ``show_prefix`` are printed),
    and after ``timeout_s`` the whole launch is killed (``run_launch``). The line it runs is printed first;
    the script's own lines start with ``[rank N] `` (the elastic agent prefixes tracebacks ``[rankN]:``).

    Taught in lesson 11, section «6 · Data parallel: the same run on N processes».
    """
    args = shlex.split(command)
    if args[:2] != ["accelerate", "launch"]:
        raise ValueError(f"expected a line starting with 'accelerate launch', got {command!r}")
    options = args[2:]
    if "--main_process_port" not in options:  # rank 0 opens the rendezvous store there
        options = ["--main_process_port", str(free_port()), *options]
    print("$ accelerate launch", shlex.join(options), flush=True)
    repo = str(SCRIPT.parents[2])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return run_launch([sys.executable, "-m", "accelerate.commands.launch", *options], timeout_s,
                      env={"PYTHONPATH": path}, show=lambda line: line.startswith(show_prefix))


# ----------------------------------------------------------------------------- data and training

def pack_blocks(token_lists: list[list[int]], block_size: int) -> torch.Tensor:
    """Concatenate tokenized texts and cut them into full blocks: (n_blocks, block_size), no padding.

    Every sequence then has the same number of predicted tokens, so the mean loss of a slice of
    the batch, averaged over equal slices, is exactly the mean loss of the whole batch.

    Taught in lesson 11, section «4 · The data: full rows, so slices average exactly».
    """
    flat = [t for tokens in token_lists for t in tokens]
    n = len(flat) // block_size
    if n == 0:
        raise ValueError(f"{len(flat)} tokens make no block of {block_size}")
    return torch.tensor(flat[: n * block_size], dtype=torch.long).view(n, block_size)


def global_batch(blocks: torch.Tensor, step: int, size: int) -> torch.Tensor:
    """Rows of optimizer step ``step``: the next ``size`` blocks, wrapping around the data.

    Taught in lesson 11, section «5 · The reference: one process, the whole global batch».
    """
    idx = (torch.arange(size) + step * size) % blocks.shape[0]
    return blocks[idx]


def rank_slice(batch: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's rows of a global batch: contiguous, equal slices (the batch must divide evenly).

    Taught in lesson 11, section «5 · The reference: one process, the whole global batch».
    """
    if batch.shape[0] % world_size:
        raise ValueError(f"global batch {batch.shape[0]} does not split into {world_size} equal slices")
    per = batch.shape[0] // world_size
    return batch[rank * per:(rank + 1) * per]


def lora_loss(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over every token of the rows (labels = inputs, shifted inside)."""
    return model(input_ids=input_ids, labels=input_ids).loss


# ----------------------------------------------------------------------------- memory per process

def local_bytes(t: torch.Tensor) -> int:
    """Bytes this process stores for a tensor: a sharded DTensor counts only its local shard."""
    if hasattr(t, "to_local"):
        t = t.to_local()
    return t.numel() * t.element_size()


def held_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer states held by this process (not activations).

    Taught in lesson 11, section «5 · The reference: one process, the whole global batch».
    """
    params = {id(p): p for p in model.parameters()}.values()
    states = [v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v) and v.dim() > 0]
    out = {"params": sum(local_bytes(p) for p in params),
           "grads": sum(local_bytes(p.grad) for p in params if p.grad is not None),
           "optimizer": sum(local_bytes(v) for v in states)}
    out["total"] = sum(out.values())
    return out


def predicted_held_bytes(run, world_size: int, sharded: bool) -> dict[str, float]:
    """The course's LoRA bill per process for ``run`` (a ``memory.TrainingRun``), the parts held at rest.

    ``memory.lora_training_bill``'s ``HELD_PARTS``: base weights, fp32 LoRA weights, their gradients and the
    optimizer state; a partial bill on purpose (activations, logits, autocast copies and the CUDA context,
    which depend on the batch and the device, are left out). Replicated (DDP), each process holds all of
    it; sharded (FSDP), each holds 1/world_size of it.

    Taught in lesson 11, section «7 · Sharding: each process holds 1/N of the model».
    """
    from .memory import lora_training_bill, meta_model

    bill = lora_training_bill(meta_model(run.config), run)
    share = 1 / world_size if sharded else 1.0
    out = {"params": (bill["weights"] + bill["quant_constants"] + bill["trainable_weights"]) * share,
           "grads": bill["gradients"] * share, "optimizer": bill["optimizer"] * share}
    out["total"] = sum(out.values())
    return out


def max_rel_diff(a: list[float], b: list[float]) -> float:
    """Largest |a_i - b_i| / |b_i| of two equally long curves.

    Taught in lesson 11, section «6 · Data parallel: the same run on N processes».
    """
    if len(a) != len(b):
        raise ValueError(f"curves of different length: {len(a)} and {len(b)}")
    return max(abs(x - y) / abs(y) for x, y in zip(a, b))


def dtype_rtol(dtype: torch.dtype, steps: int = 1) -> float:
    """A relative tolerance for a loss computed in ``dtype`` by two different reduction orders.

    fp32 keeps ~7 digits, so a few ulps times the steps; bf16/fp16 keep 2-3 digits (a bf16 ulp is
    2**-7 of the value), and summing the batch in two halves may round each step differently.

    Taught in lesson 11, section «2 · One config object».
    """
    eps = torch.finfo(dtype).eps
    return max(1e-4, 20 * eps) * math.sqrt(steps) if dtype == torch.float32 else 4 * eps * math.sqrt(steps)


def add_seeded_lora(base, r: int, alpha: int, target_modules, seed: int):
    """Add a LoRA adapter initialised from ``seed`` to a loaded base model, in training mode.

    Dropout is 0: a dropout mask is drawn from each process's own random stream, so with it a
    2-process run could not reproduce the single-process curve (and is not meant to).

    Taught in lesson 11, section «5 · The reference: one process, the whole global batch».
    """
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA's A matrices are drawn here: the same seed gives the same adapter
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=list(target_modules),
                        task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    model.train()
    return model


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, blocks: torch.Tensor, steps: int,
                batch_size: int, rank: int = 0, world_size: int = 1,
                device: torch.device | str = "cpu") -> tuple[list[float], list[float]]:
    """Run ``steps`` optimizer steps on this rank's slice of each global batch of ``batch_size`` rows.

    Returns the loss of the whole global batch per step (the slices' losses averaged over the
    ranks with an all-reduce when there are several) and this rank's seconds per step. The
    gradients of the last step are kept (``zero_grad`` runs at the start of a step) so that what a
    process holds can be counted afterwards.

    Taught in lesson 11, section «5 · The reference: one process, the whole global batch».
    """
    import torch.distributed as dist

    losses, seconds = [], []
    for step in range(steps):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        rows = rank_slice(global_batch(blocks, step, batch_size), rank, world_size).to(device)
        loss = lora_loss(model, rows)
        loss.backward()  # DDP all-reduces gradients here; FSDP reduce-scatters them
        optimizer.step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        total = loss.detach().float().clone()
        if world_size > 1:
            dist.all_reduce(total)  # sum of the slices' mean losses
        losses.append(total.item() / world_size)
    return losses, seconds
