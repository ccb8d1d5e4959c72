"""How one tensor moved between checkpoints, in one chunked pass over every copy of it.

For each checkpoint it measures the copy (count, mean, M2, min, max, NaN and Inf counts, from
which the norm and std follow); for pairs of checkpoints (A, B) it sums ‖B−A‖² and decides
whether A and B are the same bytes; for triples (A, B, C) it sums ⟨C−B, B−A⟩, the numerator of
the cosine between two consecutive updates. All copies are read in aligned 1-D chunks (views of
the memory-mapped files wherever the layouts allow) at the same positions, so each chunk of each
file is read once while it sits in the cache, and memory stays a few chunk-sized buffers
whatever the tensor's size and however many checkpoints take part. Chunk positions are spread
over ``chunks.map_chunks``' worker threads (measured 1.6x faster with a second core free, no
faster when another process keeps it busy) while ``madvise`` has the kernel read ahead of them;
their figures are added up in position order, so the result never depends on the threads'
timing.

Arithmetic follows ``diff.metrics`` and ``stats``: float32 within a chunk for float32 and
narrower tensors (torch's cascade sums), float64 across chunks. A difference whose float32
squares may have lost bits to underflow (differences below ~1e-19, as between two copies of
Adam's ``exp_avg_sq``), or overflowed, or that holds NaN/Inf, is taken and summed again in
float64, where the products of float32 values are exact; float64 and wide integer tensors are
summed in float64 throughout (exact while squares stay within float64's range). Each sum falls
back on its own, so a figure never depends on which others share the pass. Chunks with the same
bytes on both sides add nothing to a difference and cost one comparison. Complex tensors count
their real and imaginary parts as coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field

import torch

from ckpt_gui.core.chunks import CancelCheck, map_chunks, serial_torch, work_dtype
from ckpt_gui.core.run.positions import native_fits, native_position
from ckpt_gui.core.run.reading import AlignedChunks, Readahead, prepared
from ckpt_gui.core.stats import _sum_sq_dev, merge_moments

Pair = tuple[int, int]
Triple = tuple[int, int, int]
# 128K elements (512 KB of float32): a position's chunks, differences and scratch buffers stay
# in L2 while they are read again, and the ~15 torch calls per copy and position cost little
# next to the arithmetic (measured: 1.5x faster than 32K and 256K on a 2-core machine).
KERNEL_CHUNK_ELEMS = 1 << 17
_INTS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_PREFIX = 1024  # elements compared before a whole chunk: changed chunks differ at once


@dataclass(frozen=True)
class PointSums:
    """One copy: ``n`` finite values with their ``mean`` and ``m2`` (sum of squared deviations),
    ``min``/``max`` over them (``None`` without any), and the NaN and ±Inf counts."""

    n: int
    mean: float
    m2: float
    min: float | None
    max: float | None
    nan: int
    inf: int

    @property
    def l2(self) -> float:
        """‖x‖ over the finite values: sqrt(M2 + n·mean²), no cancellation."""
        return math.sqrt(max(self.m2 + self.n * self.mean * self.mean, 0.0))

    @property
    def std(self) -> float | None:
        """Bessel-corrected, like ``torch.std``."""
        return math.sqrt(max(self.m2, 0.0) / (self.n - 1)) if self.n > 1 else None


@dataclass(frozen=True)
class PairSums:
    """``sq``: ‖B−A‖² (NaN or inf where the tensors hold them). ``identical``: the same dtype
    and the same bytes, element for element."""

    sq: float
    identical: bool


@dataclass
class TensorSums:
    """What ``measure_tensor`` found, by checkpoint index, pair and triple."""

    points: dict[int, PointSums] = field(default_factory=dict)
    pairs: dict[Pair, PairSums] = field(default_factory=dict)
    dots: dict[Triple, float] = field(default_factory=dict)


def run_work_dtype(dtypes: Sequence[torch.dtype]) -> torch.dtype:
    """float64 when any copy needs it to be exact (float64, wide integers), else float32."""
    return torch.float64 if any(work_dtype(d) == torch.float64 for d in dtypes) else torch.float32


class _Plan:
    """Which copies to measure and which differences to take at each chunk position, and when
    each difference may be forgotten."""

    def __init__(self, points: Sequence[int], pairs: Sequence[Pair], triples: Sequence[Triple]):
        self.points = sorted(set(points))
        self.pairs = sorted(set(pairs))
        self.triples = sorted(set(triples), key=lambda t: (t[2], t[0], t[1]))
        diffs = set(pairs) | {(a, b) for a, b, _ in triples} | {(b, c) for _, b, c in triples}
        self.steps = sorted({b for _, b in diffs})
        self.into = {s: sorted(a for a, b in diffs if b == s) for s in self.steps}
        self.triples_at = {s: [t for t in self.triples if t[2] == s] for s in self.steps}
        last = {d: d[1] for d in diffs}
        for a, b, c in self.triples:
            last[(a, b)] = max(last[(a, b)], c)
            last[(b, c)] = max(last[(b, c)], c)
        self.forget_at = {s: [d for d, t in last.items() if t == s] for s in self.steps}
        self.members = sorted({i for d in diffs for i in d} | set(points))


def measure_tensor(
    tensors: dict[int, torch.Tensor],
    points: Sequence[int] = (),
    pairs: Sequence[Pair] = (),
    triples: Sequence[Triple] = (),
    *,
    chunk_elems: int = KERNEL_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
) -> Generator[int, None, TensorSums]:
    """Measure the copies ``points``, the pairs ``(a, b)`` (‖T[b]−T[a]‖²) and the triples
    ``(a, b, c)`` (⟨T[c]−T[b], T[b]−T[a]⟩) of the same-shaped tensors ``tensors[i]``, in one
    pass. Yields the elements done per copy after each chunk position (a progress and cancel
    point); ``cancel`` is also checked between positions."""
    plan = _Plan(points, pairs, triples)
    ts = [prepared(tensors[i]) for i in plan.members]
    if not ts:
        return TensorSums()
    if any(t.shape != ts[0].shape for t in ts):
        raise ValueError("a trajectory needs tensors of one shape")
    reader = AlignedChunks(ts, chunk_elems)
    sources = {i: t.dtype for i, t in zip(plan.members, ts)}
    work = run_work_dtype(list(sources.values()))
    size = min(chunk_elems, max(ts[0].numel(), 1)) * (2 if any(t.is_complex() for t in ts) else 1)
    totals = _Totals(plan, sources)
    readahead = Readahead(reader)
    # Positions go to ``chunks``' worker threads; each leaves its figures here, and they are
    # added up strictly in position order as they arrive (dict writes are atomic), so the
    # result does not depend on the threads' timing and only a few wait at any time.
    parts: dict[int, _Partial] = {}

    def step(one: _Pass, position: torch.Tensor) -> None:
        pos = int(position[0])
        readahead.advance(pos)
        parts[pos] = one.step(reader.chunks(pos))

    def make(_: int) -> _Pass:
        return _Pass(plan, sources, work, size)

    added = 0
    with serial_torch():  # positions run on this thread (a small tensor) run torch serially
        steps = map_chunks(torch.arange(reader.count), 1, make, step, cancel)
        try:
            for _ in steps:
                while added in parts:
                    totals.add(parts.pop(added))
                    added += 1
                yield min(added * chunk_elems, reader.numel)
        finally:
            steps.close()
    while added in parts:
        totals.add(parts.pop(added))
        added += 1
    return totals.result()


class _Totals:
    """Every unit's running figures, the positions added in order: Chan's merge for the
    copies' moments, float64 sums for the differences."""

    def __init__(self, plan: _Plan, sources: dict[int, torch.dtype]) -> None:
        self.plan = plan
        self.integer = {i for i, d in sources.items() if not (d.is_floating_point or d.is_complex)}
        self.moments = {i: (0, 0.0, 0.0, math.inf, -math.inf, 0, 0) for i in plan.points}
        self.sq = dict.fromkeys(plan.pairs, 0.0)
        self.same = dict.fromkeys(plan.pairs, True)
        self.dots = dict.fromkeys(plan.triples, 0.0)

    def add(self, part: _Partial) -> None:
        for i, (cn, cmean, cm2, clo, chi, cnan, cinf) in part.points.items():
            n, mean, m2, lo, hi, nan, inf = self.moments[i]
            n, mean, m2 = merge_moments(n, mean, m2, cn, cmean, cm2)
            self.moments[i] = (n, mean, m2, min(lo, clo), max(hi, chi), nan + cnan, inf + cinf)
        for p in self.plan.pairs:
            self.sq[p] += part.sq[p]
            self.same[p] = self.same[p] and part.same[p]
        for t in self.plan.triples:
            self.dots[t] += part.dots[t]

    def result(self) -> TensorSums:
        out = TensorSums(dots=self.dots)
        for i, (n, mean, m2, lo, hi, nan, inf) in self.moments.items():
            extremes: tuple[float | None, float | None] = (lo, hi) if n else (None, None)
            if n and i in self.integer:
                extremes = (int(lo), int(hi))
            out.points[i] = PointSums(n, mean, m2, *extremes, nan, inf)
        out.pairs = {p: PairSums(self.sq[p], self.same[p]) for p in self.plan.pairs}
        return out


@dataclass
class _Partial:
    """One chunk position's figures."""

    points: dict[int, tuple[int, float, float, float, float, int, int]] = field(
        default_factory=dict
    )
    sq: dict[Pair, float] = field(default_factory=dict)
    same: dict[Pair, bool] = field(default_factory=dict)
    dots: dict[Triple, float] = field(default_factory=dict)


class _Buffers:
    """Chunk-sized scratch space of one dtype: a converted chunk per member, and differences
    taken and given back as the plan goes."""

    def __init__(self, work: torch.dtype, size: int) -> None:
        self.work, self.size = work, size
        self.free: list[torch.Tensor] = []
        self.converted: dict[int, torch.Tensor] = {}
        self.scratch = torch.empty(size, dtype=work)

    def take(self, n: int) -> torch.Tensor:
        return (self.free.pop() if self.free else torch.empty(self.size, dtype=self.work))[:n]

    def give(self, buf: torch.Tensor | None) -> None:
        if buf is not None:
            self.free.append(buf)

    def as_work(self, member: int, chunk: torch.Tensor) -> torch.Tensor:
        """The chunk as a real 1-D tensor of this dtype (a view when it already is one)."""
        if chunk.is_complex():
            if chunk.dtype == torch.complex32:
                chunk = chunk.to(torch.complex64)
            chunk = torch.view_as_real(chunk).reshape(-1)
        if chunk.dtype == self.work:
            return chunk
        buf = self.converted.get(member)
        if buf is None:
            buf = self.converted[member] = torch.empty(self.size, dtype=self.work)
        return buf[: chunk.numel()].copy_(chunk)


class _Pass:
    """The buffers of one pass, and what it does at each chunk position."""

    def __init__(
        self, plan: _Plan, sources: dict[int, torch.dtype], work: torch.dtype, size: int
    ) -> None:
        self.plan, self.sources = plan, sources
        self.wide = _Buffers(torch.float64, size)
        self.narrow = self.wide if work == torch.float64 else _Buffers(work, size)

    def step(self, pieces: list[torch.Tensor]) -> _Partial:
        """The figures of one chunk position: in C where every copy is float32 (and the kernel
        was built), else with torch."""
        return self.in_c(pieces) if native_fits(pieces) else self.in_torch(pieces)

    def in_torch(self, pieces: list[torch.Tensor]) -> _Partial:
        plan = self.plan
        chunk = _Chunk(dict(zip(plan.members, pieces)), self)
        part = _Partial()
        for i in plan.points:
            part.points[i] = _moments(chunk.narrow_of(i), self.narrow.scratch)
        live: dict[Pair, _Diff] = {}
        for s in plan.steps:
            for a in plan.into[s]:
                d, sq, identical = chunk.difference(a, s)
                live[(a, s)] = d
                part.sq[(a, s)], part.same[(a, s)] = sq, identical
            for t in plan.triples_at[s]:
                part.dots[t] = chunk.dot(live[(t[1], t[2])], live[(t[0], t[1])])
            for pair in plan.forget_at[s]:
                chunk.forget(live.pop(pair))
        return part

    def in_c(self, pieces: list[torch.Tensor]) -> _Partial:
        """The position's figures from the C kernel (``positions.py``) in one call."""
        plan = self.plan
        at = {m: k for k, m in enumerate(plan.members)}
        points, pairs, dots = native_position(
            pieces,
            [at[i] for i in plan.points],
            [(at[a], at[b]) for a, b in plan.pairs],
            [(at[a], at[b], at[c]) for a, b, c in plan.triples],
        )
        part = _Partial()
        part.points = dict(zip(plan.points, points))
        for pair, (sq, same) in zip(plan.pairs, pairs):
            part.sq[pair], part.same[pair] = sq, same
        part.dots = dict(zip(plan.triples, dots))
        return part


class _Diff:
    """B − A of one chunk: in the work dtype, and in float64 once a sum over it needed that.
    Neither for the same bytes (a zero difference)."""

    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b
        self.narrow: torch.Tensor | None = None
        self.wide: torch.Tensor | None = None
        self.zero = False


class _Chunk:
    """One chunk position: the members' chunks as read and as converted. Each sum is taken in
    the work dtype and, only where that cannot be exact (``_sq32`` says so), again in float64."""

    def __init__(self, raw: dict[int, torch.Tensor], worker: _Pass) -> None:
        self.raw, self.sources = raw, worker.sources
        self.narrow, self.wide = worker.narrow, worker.wide
        self.xs: dict[int, torch.Tensor] = {}
        self.xs64: dict[int, torch.Tensor] = {}

    def narrow_of(self, i: int) -> torch.Tensor:
        if i not in self.xs:
            self.xs[i] = self.narrow.as_work(i, self.raw[i])
        return self.xs[i]

    def difference(self, a: int, b: int) -> tuple[_Diff, float, bool]:
        """The difference, ‖B−A‖² over the chunk, and whether A and B are the same bytes."""
        d = _Diff(a, b)
        if self.sources[a] == self.sources[b] and _same_bytes(self.raw[a], self.raw[b]):
            d.zero = True
            return d, 0.0, True
        sq: float | None = None
        if self.narrow is not self.wide:
            d.narrow = self._sub(a, b, self.narrow, self.narrow_of)
            sq = _sq32(d.narrow, self.narrow.scratch)
        if sq is None:
            sq = float(torch.dot(self.wide_of(d), self.wide_of(d)))
        return d, sq, False

    def dot(self, second: _Diff, first: _Diff) -> float:
        """⟨second, first⟩ over the chunk."""
        if second.zero or first.zero:
            return 0.0
        if second.wide is None and first.wide is None:
            assert second.narrow is not None and first.narrow is not None
            # Both sums of squares were exact in float32 (``_sq32``), so the products are too
            # (each lies between the smaller and the larger square); only the sum can overflow.
            s = float(
                torch.mul(
                    second.narrow, first.narrow, out=self.narrow.scratch[: len(second.narrow)]
                ).sum()
            )
            if math.isfinite(s):
                return s
        return float(torch.dot(self.wide_of(second), self.wide_of(first)))

    def wide_of(self, d: _Diff) -> torch.Tensor:
        if d.wide is None:
            d.wide = self._sub(d.a, d.b, self.wide, self._wide_x)
        return d.wide

    def _wide_x(self, i: int) -> torch.Tensor:
        if i not in self.xs64:
            self.xs64[i] = self.wide.as_work(i, self.raw[i])
        return self.xs64[i]

    def _sub(
        self, a: int, b: int, bufs: _Buffers, x: Callable[[int], torch.Tensor]
    ) -> torch.Tensor:
        xa, xb = x(a), x(b)
        return torch.sub(xb, xa, out=bufs.take(xa.numel()))

    def forget(self, d: _Diff) -> None:
        self.narrow.give(d.narrow)  # None where the work dtype is float64 itself
        self.wide.give(d.wide)


def _same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality of two 1-D chunks of one dtype (NaN payloads and -0.0 included),
    compared as integers: torch compares integers far faster than floats."""
    if not a.is_contiguous() or not b.is_contiguous():
        a, b = a.contiguous(), b.contiguous()
    ints = _INTS.get(a.element_size(), torch.int64)
    ia, ib = a.view(ints), b.view(ints)
    if ia.numel() > _PREFIX and not torch.equal(ia[:_PREFIX], ib[:_PREFIX]):
        return False
    return torch.equal(ia, ib)


def _sq32(d: torch.Tensor, scratch: torch.Tensor) -> float | None:
    """Sum of squares of a float32 difference; ``None`` when float32 cannot give it exactly."""
    s = float(torch.mul(d, d, out=scratch[: d.numel()]).sum())
    # Each square loses at most 2**-126 to underflow: under 1e-8 of a sum this large. A
    # smaller sum (or a zero one from differing bytes), an overflow or a NaN: float64.
    return s if 2 * d.numel() * 2.0**-96 <= s < math.inf else None


def _moments(
    x: torch.Tensor, scratch: torch.Tensor
) -> tuple[int, float, float, float, float, int, int]:
    """(n, mean, M2, min, max) of the finite values of one chunk, and its NaN and ±Inf counts.
    M2 is Σx² − (Σx)²/n where that loses no more than a bit to cancellation (weights, whose
    mean is small next to their spread), else ``stats``' shifted sum (a LayerNorm gain near
    1, Adam's ``exp_avg_sq``: all positive), which also handles squares out of float32's range."""
    n = x.numel()
    nan = inf = 0
    s = float(x.sum())
    if not math.isfinite(s):  # a NaN or Inf somewhere, or a float32 sum that overflowed
        bad = ~torch.isfinite(x)
        nan = int(torch.isnan(x).sum())
        inf = int(bad.sum()) - nan
        if nan or inf:
            x = x[~bad]
            n = x.numel()
        if n == 0:
            return 0, 0.0, 0.0, math.inf, -math.inf, nan, inf
        s = float(x.sum(dtype=torch.float64))
        if not math.isfinite(s):  # past float64's range: the scaled values' sum
            s = float((x.double() / n).sum()) * n
    values = x.numpy()  # NumPy's min and max: twice as fast as torch.aminmax on a chunk
    lo, hi = float(values.min()), float(values.max())
    mean = s / n
    if lo == hi:
        return n, mean, 0.0, lo, hi, nan, inf
    if x.dtype == torch.float32:
        sq = _sq32(x, scratch)
        if sq is not None and s * mean <= 0.5 * sq:
            return n, mean, sq - s * mean, lo, hi, nan, inf
    m2 = _sum_sq_dev(x, mean, max(-lo, hi), scratch[:n])
    return n, mean, m2, lo, hi, nan, inf
