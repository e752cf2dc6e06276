"""A memory budget: entries by device that enter, leave with their owner, and are checked against a profile.

The accounting under the memory ledger (``ledger``), with no estimation in it: an entry is a name, bytes by
part and a device ("gpu" or "host"). ``Budget.enter`` checks the new total against the profile's budget for
that device (in a rehearsal; ``force=True`` checks on a real GPU too), keeps each device's peak, and ties the
entry's lifetime to an owner object through a weakref finalizer, so ``del model`` takes its bytes out.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

from ..memory import fmt_bytes
from .profiles import Profile

GB = 1e9  # budgets are in GB (10^9 bytes), as the profiles state them
DEVICES = ("gpu", "host")


class MemoryBudgetError(RuntimeError):
    """A rehearsal cell whose real-scale memory would not fit the profile's GPU or host RAM."""


@dataclass
class Entry:
    """One line of the budget: a name, bytes by part, and the device those bytes occupy."""

    name: str
    device: str
    parts: dict[str, float]
    kind: str = "other"
    info: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> float:
        return float(sum(self.parts.values()))


class Budget:
    """Entries per device; enforces the profile's budgets when the profile is a rehearsal."""

    def __init__(self, profile: Profile):
        self.profile = profile
        self.active = profile.gpu_recipe
        self.enforce = profile.rehearsal
        self.entries: dict[int, Entry] = {}
        self.peak = {d: 0.0 for d in DEVICES}
        self._next = 0

    def budget(self, device: str) -> float:
        """The profile's budget in bytes for ``device`` ("gpu" or "host")."""
        return (self.profile.gpu_memory_gb if device == "gpu" else self.profile.host_ram_gb) * GB

    def total(self, device: str) -> float:
        """Bytes the current entries hold on ``device``, at real scale."""
        return sum(e.nbytes for e in self.entries.values() if e.device == device)

    def check(self, entry: Entry, replacing: int | None = None, force: bool = False) -> None:
        """Raise ``MemoryBudgetError`` when ``entry`` (in place of entry ``replacing``) would not fit."""
        held = [e for k, e in self.entries.items() if e.device == entry.device and k != replacing]
        need = sum(e.nbytes for e in held) + entry.nbytes
        if not (self.enforce or force) or need <= self.budget(entry.device):
            return
        where = "GPU memory" if entry.device == "gpu" else "host RAM"
        lines = [f"{self.profile.name}: {entry.name} would need {fmt_bytes(entry.nbytes)} of {where} at "
                 f"real scale, {fmt_bytes(need)} in all, over the {self.profile.target} budget of "
                 f"{self.budget(entry.device) / GB:g} GB."]
        lines += [f"  {fmt_bytes(e.nbytes):>11}  {e.name}" for e in held]
        lines += [f"  {fmt_bytes(entry.nbytes):>11}  {entry.name} (new): "
                  + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in entry.parts.items() if v)]
        lines.append("What to change: " + _advice(entry))
        raise MemoryBudgetError("\n".join(lines))

    def enter(self, entry: Entry, owner=None, replacing: int | None = None) -> int | None:
        """Add ``entry`` (in place of entry ``replacing``, under its key); it leaves when ``owner`` is
        garbage-collected. Returns its key; None when the budget is off."""
        if not self.active:
            return None
        if entry.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, not {entry.device!r}")
        entry.parts = {k: float(v) for k, v in entry.parts.items()}
        self.check(entry, replacing)
        if replacing in self.entries:
            key = replacing  # the key an owner's finalizer already knows
        else:
            key, self._next = self._next, self._next + 1
            if owner is not None:
                weakref.finalize(owner, self.leave, key)
        self.entries[key] = entry
        self.peak[entry.device] = max(self.peak[entry.device], self.total(entry.device))
        return key

    def leave(self, key: int | None) -> None:
        """Remove an entry (called by the garbage collector for entries with an owner)."""
        self.entries.pop(key, None)


def _advice(entry: Entry) -> str:
    if entry.kind == "plan":
        return ("free the models you no longer need, load the base in fewer bits (int8, or NF4 as QLoRA "
                "does), lower the batch size or the sequence length, or use a GPU with more memory.")
    if entry.kind == "training":
        return ("lower the batch size (raise gradient accumulation to keep the effective batch) or the "
                "sequence length, turn gradient checkpointing on, or use an 8-bit/paged optimizer.")
    if entry.device == "host":
        return ("do not keep a CPU-side copy of the whole model: work on one layer, or merge in the "
                "compute dtype on the GPU.")
    return ("free the models you no longer need first (`del model; free_memory()`), load in a smaller "
            "format (nf4 instead of int8 or 16-bit), or compare one layer instead of a second model.")
