"""Roll-ups of per-tensor statistics for module and container rows.

Combines any objects with ``numel, zeros, nan, posinf, neginf, min, max, mean, std, l2, absmax``
(the core's ``TensorStats`` or another roll-up), so a row's roll-up is built from its children's
and updating one tensor only recomputes the rows above it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass
class RolledStats:
    numel: int = 0
    zeros: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    l2: float | None = None
    absmax: float | None = None
    tensors: int = 0  # how many tensors' statistics went in


def _get(stats: Any, name: str, default: Any = None) -> Any:
    value = getattr(stats, name, default)
    return default if value is None else value


def combine(parts: Iterable[Any]) -> RolledStats | None:
    """Pooled statistics of ``parts``; ``None`` when no part has statistics yet."""
    out = RolledStats()
    pieces: list[tuple[int, float, float | None]] = []  # (finite count, mean, std)
    l2_sq = 0.0
    have_l2 = False
    seen = False
    for s in parts:
        if s is None:
            continue
        seen = True
        numel = int(_get(s, "numel", 0))
        nan, pinf, ninf = (int(_get(s, k, 0)) for k in ("nan", "posinf", "neginf"))
        out.numel += numel
        out.zeros += int(_get(s, "zeros", 0))
        out.nan, out.posinf, out.neginf = out.nan + nan, out.posinf + pinf, out.neginf + ninf
        out.tensors += int(_get(s, "tensors", 1))
        for name, pick in (("min", min), ("max", max), ("absmax", max)):
            value = _get(s, name)
            if value is not None and not math.isnan(value):
                current = getattr(out, name)
                setattr(out, name, value if current is None else pick(current, value))
        l2 = _get(s, "l2")
        if l2 is not None and math.isfinite(l2):
            l2_sq += float(l2) ** 2
            have_l2 = True
        mean = _get(s, "mean")
        finite = numel - nan - pinf - ninf
        if mean is not None and finite > 0 and math.isfinite(mean):
            pieces.append((finite, float(mean), _get(s, "std")))
    if not seen:
        return None
    out.l2 = math.sqrt(l2_sq) if have_l2 else None
    total = sum(n for n, _, _ in pieces)
    if total:
        mean = sum(n * m for n, m, _ in pieces) / total
        out.mean = mean
        if total > 1:
            ss = 0.0
            for n, m, sd in pieces:
                var = (sd or 0.0) ** 2 if sd is not None and math.isfinite(sd) else 0.0
                ss += (n - 1) * var + n * (m - mean) ** 2
            out.std = math.sqrt(max(ss, 0.0) / (total - 1))
    return out
