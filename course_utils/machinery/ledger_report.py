"""Reporting a memory ledger (``ledger``): its entries and totals, and the peaks ``make test`` checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..memory import CUDA_CONTEXT_BYTES, fmt_bytes
from .budget import DEVICES, GB, Budget


def report(ledger: Budget) -> dict[str, float]:
    """Print the entries and totals per device (beside CUDA's measured peak on a GPU); return totals."""
    totals = {d: ledger.total(d) for d in DEVICES}
    if not ledger.active:
        print(f"memory ledger: off in the {ledger.profile.name} profile")
        return totals
    print(f"memory ledger ({ledger.profile.name}, real-scale prediction):")
    for e in ledger.entries.values():
        print(f"  {e.device:<5}{fmt_bytes(e.nbytes):>11}  {e.name}")
    for d in DEVICES:
        print(f"  {d} now {fmt_bytes(totals[d])}, peak {fmt_bytes(ledger.peak[d])} of the "
              f"{ledger.budget(d) / GB:g} GB budget")
    if torch.cuda.is_available():
        measured = torch.cuda.max_memory_allocated()
        print(f"  measured: torch.cuda.max_memory_allocated {fmt_bytes(measured)} vs predicted peak "
              f"{fmt_bytes(ledger.peak['gpu'] - CUDA_CONTEXT_BYTES)} (both without the CUDA context)")
        reserved = torch.cuda.max_memory_reserved()  # what the caching allocator took from the card
        extra = fmt_bytes(reserved - measured)
        print(f"  reserved by the allocator: peak {fmt_bytes(reserved)} ({extra} "
              f"cached or fragmented beyond the allocated peak; expandable_segments: "
              f"{'expandable_segments:True' in os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '')})")
    return totals


def save_peak(ledger: Budget, path) -> None:
    """Write the ledger's peaks (bytes per device), profile and load counts to ``path`` as JSON.

    ``make test`` calls it in every rehearsal kernel after the notebook's last cell (see the
    repository's conftest.py); ``tools/runtime_table.py`` turns the peaks into the notebook headers'
    "peak memory" cells and checks that they still agree.
    """
    Path(path).write_text(json.dumps({"profile": ledger.profile.name, "target": ledger.profile.target,
                                      **{d: ledger.peak[d] for d in DEVICES},
                                      "loads": getattr(ledger, "loads", {})}) + "\n")
