"""A tensor's figures across a run, from the measured units: norms and counts per checkpoint,
‖B−A‖² per pair, ⟨C−B, B−A⟩ per triple; and the flags that point at trouble.

Conventions (docs/cli.md): one entry per checkpoint in run order; ``None`` where the tensor is
absent (or has nothing to measure) or the figure is undefined (``rel_update`` at the first
checkpoint, ``update_cosine`` at the first two, a ratio over a zero norm, the cosine of a zero
update); NaN where a NaN or ±Inf in the tensors makes a norm or a difference meaningless
(``nan`` and ``inf`` still count them exactly). ``min``, ``max`` and ``std`` are over the finite
values, as in ``ckpt-gui stats``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from ckpt_gui.core.run.kernel import PairSums

# A tensor's norm is "exploding" once it reaches EXPLODING_RATIO times its norm at the first
# checkpoint, and "vanishing" once it falls to VANISHING_RATIO times that (never for a tensor
# that starts at zero, such as a zero-initialised bias).
EXPLODING_RATIO = 10.0
VANISHING_RATIO = 0.1
FLAGS = ("frozen", "nonfinite", "exploding", "vanishing")


@dataclass(frozen=True)
class PointStats:
    """One tensor at one checkpoint (from ``core.stats``): the norm is NaN when the tensor holds
    a NaN, inf when it holds an infinity, else the L2 norm."""

    numel: int
    norm: float
    min: float | None
    max: float | None
    std: float | None
    nan: int
    inf: int

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0


@dataclass
class TensorTrajectory:
    """One tensor of the first checkpoint followed across the run. ``keys[i]``: its key in
    checkpoint i (wrapper prefixes differ between a bare state_dict and a training
    checkpoint), ``None`` where it is absent or has another shape."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    role: str
    keys: list[str | None]
    norm: list[float | None] = field(default_factory=list)
    rel_change_from_first: list[float | None] = field(default_factory=list)
    rel_update: list[float | None] = field(default_factory=list)
    update_cosine: list[float | None] = field(default_factory=list)
    nan: list[int | None] = field(default_factory=list)
    inf: list[int | None] = field(default_factory=list)
    min: list[float | None] = field(default_factory=list)
    max: list[float | None] = field(default_factory=list)
    std: list[float | None] = field(default_factory=list)
    frozen: bool = False
    first_nonfinite: int | None = None  # the first checkpoint (run index) with a NaN or Inf
    flags: tuple[str, ...] = ()

    @property
    def final_norm(self) -> float | None:
        return _last(self.norm)

    @property
    def final_change(self) -> float | None:
        """‖W−W₀‖/‖W₀‖ at the last checkpoint that has it."""
        return _last(self.rel_change_from_first)

    @property
    def max_rel_update(self) -> float | None:
        """The largest step-to-step change (NaN when a step is NaN), ``None`` without one."""
        steps = [r for r in self.rel_update if r is not None]
        if any(math.isnan(r) for r in steps):
            return math.nan
        return max(steps) if steps else None


@dataclass(frozen=True)
class OptimizerSeries:
    """The norm of one optimizer-state tensor (``linear1.weight.exp_avg_sq``) per checkpoint."""

    key: str
    norm: list[float | None]


def build_trajectory(
    key: str,
    shape: tuple[int, ...],
    dtype: str,
    role: str,
    keys: list[str | None],
    points: Sequence[PointStats | None],
    pairs: dict[tuple[int, int], PairSums],
    dots: dict[tuple[int, int, int], float],
) -> TensorTrajectory:
    """Every figure of one tensor from its units; missing units leave ``None``."""
    n = len(keys)
    out = TensorTrajectory(key, shape, dtype, role, keys)
    out.norm = [p.norm if p is not None else None for p in points]
    out.nan = [p.nan if p is not None else None for p in points]
    out.inf = [p.inf if p is not None else None for p in points]
    out.min = [p.min if p is not None else None for p in points]
    out.max = [p.max if p is not None else None for p in points]
    out.std = [p.std if p is not None else None for p in points]

    def finite(*members: int) -> bool:
        return all(_finite(points[i]) for i in members)

    def rel(a: int, b: int) -> float | None:
        """‖W_b − W_a‖ / ‖W_a‖ (0 when nothing changed, as ``diff``'s rel_l2)."""
        p, base = pairs.get((a, b)), points[a]
        if p is None or base is None or points[b] is None:
            return None
        if not finite(a, b):
            return math.nan
        if p.sq == 0:
            return 0.0
        return math.sqrt(p.sq) / base.norm if base.norm > 0 else None

    out.rel_change_from_first = [
        (0.0 if finite(0) else math.nan) if i == 0 and points[0] is not None else rel(0, i)
        for i in range(n)
    ]
    none: list[float | None] = [None, None]
    out.rel_update = none[:1] + [rel(i - 1, i) for i in range(1, n)]
    out.update_cosine = none[:n] + [_cosine(i, points, pairs, dots) for i in range(2, n)]
    out.frozen = n > 1 and all(
        (i - 1, i) in pairs and pairs[(i - 1, i)].identical for i in range(1, n)
    )
    out.first_nonfinite = next(
        (i for i, p in enumerate(points) if p is not None and not p.finite), None
    )
    out.flags = _flags(out)
    return out


def _cosine(
    i: int,
    points: Sequence[PointStats | None],
    pairs: dict[tuple[int, int], PairSums],
    dots: dict[tuple[int, int, int], float],
) -> float | None:
    """cos(W_i − W_{i−1}, W_{i−1} − W_{i−2}); undefined when either update is zero."""
    dot = dots.get((i - 2, i - 1, i))
    now, before = pairs.get((i - 1, i)), pairs.get((i - 2, i - 1))
    if dot is None or now is None or before is None:
        return None
    if not all(_finite(points[j]) for j in (i - 2, i - 1, i)):
        return math.nan
    if now.sq == 0 or before.sq == 0:
        return None
    return max(-1.0, min(1.0, dot / (math.sqrt(now.sq) * math.sqrt(before.sq))))


def _finite(p: PointStats | None) -> bool:
    return p is not None and p.finite


def _flags(t: TensorTrajectory) -> tuple[str, ...]:
    flags = []
    if t.frozen:
        flags.append("frozen")
    if t.first_nonfinite is not None:
        flags.append("nonfinite")
    first = t.norm[0] if t.norm else None
    if first is not None and math.isfinite(first) and first > 0:
        later = [x for x in t.norm[1:] if x is not None and math.isfinite(x)]
        if any(x >= EXPLODING_RATIO * first for x in later):
            flags.append("exploding")
        if any(x <= VANISHING_RATIO * first for x in later):
            flags.append("vanishing")
    return tuple(flags)


def _last(values: list[float | None]) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)
