"""What grid do a model's weights already sit on? Checks a reference model before quantizing it.

The cpu profile's SmolLM2 comes from a Q4_1 GGUF file: its "fp32" linear weights are 4-bit codes
dequantized once, so every block of 32 holds at most 16 distinct values. Comparing int8 or NF4
against that model compares one 4-bit-derived model with another, not the original bf16 checkpoint
with its quantization; a lesson that makes such a comparison should measure and say so.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def levels_per_block(weight: torch.Tensor, block: int = 32, max_blocks: int | None = None) -> torch.Tensor:
    """Return the number of distinct values in each block of ``block`` consecutive weights (1-D, int64).

    A tensor whose size is not a multiple of ``block`` is cut at the last whole block; with
    ``max_blocks`` only the first blocks are read (sorting every block of a large model takes seconds).
    """
    flat = weight.detach().reshape(-1)
    n_blocks = flat.numel() // block if max_blocks is None else min(flat.numel() // block, max_blocks)
    flat = flat[: n_blocks * block].reshape(-1, block)  # (n_blocks, block)
    ordered = flat.sort(dim=1).values
    return 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(dim=1)


def grid_bits(model: nn.Module, block: int = 32, max_blocks: int = 1024) -> dict[str, float]:
    """Return, per ``nn.Linear`` weight but the output head, log2 of the most distinct values in a block.

    A value ≤ 4 means the layer's weights sit on a 4-bit grid (at most 16 levels per block), as
    after dequantizing a 4-bit GGUF; fresh fp16/bf16/fp32 weights give log2(block) = 5 for block 32.
    The first ``max_blocks`` blocks of each layer are read: a 4-bit format puts every block on its grid.
    """
    out = {}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        # The output head is skipped like bitsandbytes skips it (tied, it is the token embedding).
        if isinstance(module, nn.Linear) and module is not head and module.weight.dtype.is_floating_point:
            levels = int(levels_per_block(module.weight, block, max_blocks).max())
            out[name] = float(torch.log2(torch.tensor(float(levels))))
    return out


def state_dict_checksum(model: torch.nn.Module) -> str:
    """Return a BLAKE2 hex digest of every parameter and buffer, byte for byte.

    Two digests are equal only if no single bit of any weight changed, a stricter check than
    comparing sums. Hashing the raw bytes of a 135M-parameter model takes about a second.

    Taught in lesson 02, section «3 · The model, and a fingerprint of its weights».
    """
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
