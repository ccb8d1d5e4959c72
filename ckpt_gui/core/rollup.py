"""Roll-ups of tensor statistics per module prefix, so a tree row shows a block's health at once.

For keys such as ``model.layers.3.attn.q.weight`` every dotted prefix (``model.``,
``model.layers.``, ``model.layers.3.``, ``model.layers.3.attn.``, ...) gets a ``Rollup`` over
the tensors below it; the empty prefix ``""`` rolls up the whole checkpoint. Roll-ups can be
built at once with ``rollups``, grown one tensor at a time (``add_to``) as results stream in, or
built from the roll-ups of the rows below (``combine``), which is how the window's module rows
get theirs: a tensor's new result then recomputes only the rows above it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ckpt_gui.core.stats import TensorStats, merge_moments
from ckpt_gui.core.tree import Node, dtype_from_name

# Scalars that count events rather than hold values: an optimizer's step, a batch norm's
# num_batches_tracked. Rolled up with weights they would show "max 3" for a layer of weights.
COUNTER_NAMES = frozenset({"step", "num_batches_tracked"})


@dataclass
class Rollup:
    """Totals over the tensors under one prefix. ``min``/``max``/``absmax`` are over their
    finite values (``None`` when none has any); ``mean`` and ``std`` pool those values, as if
    taken over all of them at once; ``l2`` is their norm taken together (``None`` when no
    tensor has one)."""

    prefix: str
    tensors: int = 0
    numel: int = 0  # the parameter count, for a module's parameters
    nbytes: int = 0
    sum_squares: float | None = None
    min: float | None = None
    max: float | None = None
    absmax: float | None = None
    mean: float | None = None
    zeros: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    # The pooled moments behind ``mean`` and ``std``: how many values, and the sum of their
    # squared deviations from ``mean`` (merged with the same formula as a tensor's chunks).
    counted: int = 0
    m2: float = 0.0

    @property
    def l2(self) -> float | None:
        return None if self.sum_squares is None else math.sqrt(self.sum_squares)

    @property
    def std(self) -> float | None:
        """Bessel-corrected, like ``TensorStats.std``; ``None`` for fewer than two values."""
        return math.sqrt(self.m2 / (self.counted - 1)) if self.counted > 1 else None

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
        self._count(stats.zeros, stats.nan, stats.posinf, stats.neginf)
        self._extremes(stats.min, stats.max, stats.absmax)
        if stats.l2 is not None:
            self._add_squares(stats.l2 * stats.l2)
        n = stats.finite
        if stats.mean is not None and n > 0 and math.isfinite(stats.mean):
            m2 = (stats.std or 0.0) ** 2 * (n - 1) if n > 1 else 0.0
            self._pool(n, stats.mean, m2)

    def add_all(self, many: Iterable[TensorStats]) -> None:
        """``add`` each of ``many`` (with its default ``nbytes``), in one loop without a call
        per figure: the window adds thousands of tensors to a module row at a time."""
        part = Rollup(self.prefix)
        itemsize: dict[str, int] = {}
        lo = hi = absmax = squares = mean = None
        tensors = numel = nbytes = zeros = nan = posinf = neginf = counted = 0
        m2 = 0.0
        for s in many:
            tensors += 1
            numel += s.numel
            size = itemsize.get(s.dtype)
            if size is None:
                size = itemsize[s.dtype] = _itemsize(s)
            nbytes += s.numel * size
            zeros += s.zeros
            nan += s.nan
            posinf += s.posinf
            neginf += s.neginf
            if s.min is not None and (lo is None or s.min < lo):
                lo = s.min
            if s.max is not None and (hi is None or s.max > hi):
                hi = s.max
            if s.absmax is not None and (absmax is None or s.absmax > absmax):
                absmax = s.absmax
            if s.l2 is not None:
                squares = s.l2 * s.l2 if squares is None else squares + s.l2 * s.l2
            n = s.numel - s.nan - s.posinf - s.neginf
            if s.mean is not None and n > 0 and math.isfinite(s.mean):
                s_m2 = (s.std or 0.0) ** 2 * (n - 1) if n > 1 else 0.0
                if mean is None:
                    counted, mean, m2 = n, s.mean, s_m2
                else:
                    counted, mean, m2 = merge_moments(counted, mean, m2, n, s.mean, s_m2)
        part.tensors, part.numel, part.nbytes = tensors, numel, nbytes
        part.zeros, part.nan, part.posinf, part.neginf = zeros, nan, posinf, neginf
        part.min, part.max, part.absmax, part.sum_squares = lo, hi, absmax, squares
        part.counted, part.mean, part.m2 = counted, mean, m2
        self.absorb(part)

    def absorb(self, other: Rollup) -> None:
        """Count in every tensor of ``other`` (the roll-up of a prefix below this one)."""
        self.tensors += other.tensors
        self.numel += other.numel
        self.nbytes += other.nbytes
        self._count(other.zeros, other.nan, other.posinf, other.neginf)
        self._extremes(other.min, other.max, other.absmax)
        if other.sum_squares is not None:
            self._add_squares(other.sum_squares)
        if other.mean is not None:
            self._pool(other.counted, other.mean, other.m2)

    def _count(self, zeros: int, nan: int, posinf: int, neginf: int) -> None:
        self.zeros += zeros
        self.nan += nan
        self.posinf += posinf
        self.neginf += neginf

    def _extremes(self, lo: float | None, hi: float | None, absmax: float | None) -> None:
        if lo is not None:
            self.min = lo if self.min is None else min(self.min, lo)
        if hi is not None:
            self.max = hi if self.max is None else max(self.max, hi)
        if absmax is not None:
            self.absmax = absmax if self.absmax is None else max(self.absmax, absmax)

    def _add_squares(self, squares: float) -> None:
        self.sum_squares = squares if self.sum_squares is None else self.sum_squares + squares

    def _pool(self, n: int, mean: float, m2: float) -> None:
        if self.mean is None:
            self.counted, self.mean, self.m2 = n, mean, m2
        else:
            self.counted, self.mean, self.m2 = merge_moments(
                self.counted, self.mean, self.m2, n, mean, m2
            )


def combine(parts: Iterable[TensorStats | Rollup | None], prefix: str = "") -> Rollup | None:
    """One roll-up over ``parts``: tensors' statistics and roll-ups of the prefixes below, in
    any mix; ``None`` parts (statistics not there yet) are skipped, and ``None`` comes back when
    every part is."""
    out = Rollup(prefix)
    seen = False
    for part in parts:
        if part is None:
            continue
        seen = True
        if isinstance(part, Rollup):
            out.absorb(part)
        else:
            out.add(part)
    return out if seen else None


def is_counter(node: Node) -> bool:
    """A counter (Adam's ``step``, ``num_batches_tracked``): kept out of value roll-ups."""
    info = node.tensor
    # A state_dict entry's name is its whole dotted key ("bn.num_batches_tracked").
    return info is not None and node.name.rsplit(".", 1)[-1] in COUNTER_NAMES and info.numel <= 1


def optimizer_state_rollups(
    root: Node, stats: Mapping[str, TensorStats]
) -> dict[str, dict[str, Rollup]]:
    """Per optimizer (its key) and per state name (``exp_avg``, ``exp_avg_sq``,
    ``momentum_buffer``): one roll-up over every parameter's tensor of that name. Adding Adam's
    first and second moments together would mean nothing; counters are left out."""
    out: dict[str, dict[str, Rollup]] = {}
    for node in root.tensors():
        if node.role != "optimizer_state" or is_counter(node) or node.key not in stats:
            continue
        optimizer = _optimizer_of(node)
        table = out.setdefault(optimizer, {})
        rollup = table.get(node.name)
        if rollup is None:
            rollup = table[node.name] = Rollup(node.name)
        rollup.add(stats[node.key], node.tensor.nbytes if node.tensor else None)
    return out


def _optimizer_of(node: Node) -> str:
    parent = node.parent
    while parent is not None and parent.label != "optimizer":
        parent = parent.parent
    return parent.key if parent is not None else ""


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
    return stats.numel * _itemsize(stats)


def _itemsize(stats: TensorStats) -> int:
    try:
        return dtype_from_name(stats.dtype).itemsize
    except ValueError:
        return 0
