"""Roll-ups of tensor statistics per module prefix, so a tree row shows a block's health at once.

For keys such as ``model.layers.3.attn.q.weight`` every dotted prefix (``model.``,
``model.layers.``, ``model.layers.3.``, ``model.layers.3.attn.``, ...) gets a ``Rollup`` over
the tensors below it; the empty prefix ``""`` rolls up the whole checkpoint. Roll-ups can be
built at once with ``rollups`` or grown one tensor at a time (``add_to``) as results stream in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ckpt_gui.core.stats import TensorStats
from ckpt_gui.core.tree import dtype_from_name


@dataclass
class Rollup:
    """Totals over the tensors under one prefix. ``min``/``max`` are over their finite values
    (``None`` when none has any); ``l2`` is the norm of all those values taken together."""

    prefix: str
    tensors: int = 0
    numel: int = 0  # the parameter count, for a module's parameters
    nbytes: int = 0
    sum_squares: float = 0.0
    min: float | None = None
    max: float | None = None
    zeros: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0

    @property
    def l2(self) -> float:
        return math.sqrt(self.sum_squares)

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    @property
    def healthy(self) -> bool:
        """No NaN or Inf anywhere under this prefix."""
        return self.nonfinite == 0

    def add(self, stats: TensorStats, nbytes: int | None = None) -> None:
        """Count one tensor in; ``nbytes`` defaults to numel times the dtype's item size."""
        self.tensors += 1
        self.numel += stats.numel
        self.nbytes += nbytes if nbytes is not None else _nbytes(stats)
        if stats.l2 is not None:
            self.sum_squares += stats.l2 * stats.l2
        if stats.min is not None:
            self.min = stats.min if self.min is None else min(self.min, stats.min)
        if stats.max is not None:
            self.max = stats.max if self.max is None else max(self.max, stats.max)
        self.zeros += stats.zeros
        self.nan += stats.nan
        self.posinf += stats.posinf
        self.neginf += stats.neginf


def prefixes(key: str) -> list[str]:
    """``"a.b.c"`` -> ``["", "a.", "a.b."]``: the prefixes a tensor's figures roll up into."""
    parts = key.split(".")
    return [""] + [".".join(parts[:i]) + "." for i in range(1, len(parts))]


def add_to(
    table: dict[str, Rollup], key: str, stats: TensorStats, nbytes: int | None = None
) -> None:
    """Count the tensor ``key`` into every roll-up above it in ``table``, creating them."""
    for prefix in prefixes(key):
        rollup = table.get(prefix)
        if rollup is None:
            rollup = table[prefix] = Rollup(prefix)
        rollup.add(stats, nbytes)


def rollups(
    stats: Mapping[str, TensorStats] | Iterable[tuple[str, TensorStats]],
    nbytes: Mapping[str, int] | None = None,
) -> dict[str, Rollup]:
    """Roll-ups for every dotted prefix of the keys in ``stats`` (``key -> TensorStats``), in
    first-seen order. ``nbytes`` overrides the computed size per key where given."""
    items = stats.items() if isinstance(stats, Mapping) else stats
    table: dict[str, Rollup] = {}
    for key, s in items:
        add_to(table, key, s, None if nbytes is None else nbytes.get(key))
    return table


def _nbytes(stats: TensorStats) -> int:
    try:
        return stats.numel * dtype_from_name(stats.dtype).itemsize
    except ValueError:
        return 0
