"""Exact per-tensor statistics, streamed in chunks at close to memory speed.

A tensor is read in cache-sized 1-D chunks (views of the memory-mapped file wherever the layout
allows), and each chunk goes through one fused set of reductions while it sits in L2: a float64
sum (finite iff the chunk holds no NaN/Inf, so the masking path runs only for chunks that need
it), min/max, a zero count (skipped when min |x| > 0 proves there is none) and a sum of squares
about the chunk's own mean, taken after scaling the chunk by a power of two wherever its
magnitude would make float32 squares underflow or overflow. Chunk moments are merged in float64
with Chan et al.'s formula, so ``std`` stays accurate when the mean is large next to the spread.
Memory stays bounded by a few chunk-sized buffers whatever the tensor's size.

Chunking and the worker threads that reduce chunks of a large tensor in parallel live in
``ckpt_gui.core.chunks``. Tiny tensors (a thousand elements or fewer) are measured thousands at a
time instead, by ``ckpt_gui.core.stats_tiny``.

``iter_stats`` is the generator the window's worker thread and the CLI consume; see its docstring
for the events it yields.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from ckpt_gui.core.chunks import (
    DEFAULT_CHUNK_ELEMS,
    NO_VALUES,
    PROGRESS_INTERVAL,
    CancelCheck,
    compact,
    drain,
    map_chunks,
    scale_pow2,
    to_work,
    values_per_element,
    work_dtype,
)
from ckpt_gui.core.errors import Cancelled, CheckpointError
from ckpt_gui.core.quant.nibble_stats import BlockMoments
from ckpt_gui.core.tree import Node, dtype_from_name, dtype_name

_NATIVE_MINMAX = {torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64}


@dataclass(frozen=True)
class TensorStats:
    """Statistics of one tensor. ``min``..``absmax`` are over the finite values; ``None`` where
    a statistic does not exist (the mean of no values, the std of one value). Integer and bool
    tensors give integer ``min``/``max``/``absmax``. ``complex_magnitude`` says the figures
    describe ``abs(z)`` of a complex tensor; ``dequantized`` that a quantized tensor was read
    through ``dequantize()``."""

    dtype: str
    numel: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None  # Bessel-corrected, like torch.std
    l2: float | None  # 0.0 for an empty tensor; None when no value is finite
    absmax: float | None
    zeros: int
    nan: int
    posinf: int
    neginf: int
    complex_magnitude: bool = False
    dequantized: bool = False

    @property
    def finite(self) -> int:
        return self.numel - self.nan - self.posinf - self.neginf

    @property
    def nonfinite(self) -> int:
        return self.nan + self.posinf + self.neginf

    @property
    def sparsity(self) -> float | None:
        """Fraction of elements equal to zero; ``None`` for an empty tensor."""
        return self.zeros / self.numel if self.numel else None


@dataclass(frozen=True)
class Progress:
    """``done_bytes`` of ``total_bytes`` read so far; ``key`` is the tensor being read."""

    done_bytes: int
    total_bytes: int
    key: str | None = None


@dataclass(frozen=True)
class StatsResult:
    """The statistics of one tensor, yielded as soon as that tensor is done."""

    key: str
    stats: TensorStats


@dataclass(frozen=True)
class StatsFailed:
    """A tensor that could not be read (a ``CheckpointError``); the sweep goes on."""

    key: str
    message: str


StatsEvent = Progress | StatsResult | StatsFailed

# -- the fused reductions ---------------------------------------------------------------------


def merge_moments(
    n_a: int, mean_a: float, m2_a: float, n_b: int, mean_b: float, m2_b: float
) -> tuple[int, float, float]:
    """The (count, mean, M2) of two groups of values taken together, from each group's count,
    mean and M2 (sum of squared deviations from its mean): Chan et al.'s parallel update, exact
    in float64 whatever the group means. Chunks of a tensor merge with it, and so do the
    tensors under a module (``ckpt_gui.core.rollup``)."""
    if n_b == 0:
        return n_a, mean_a, m2_a
    total = n_a + n_b
    delta = mean_b - mean_a
    return total, mean_a + delta * n_b / total, m2_a + (m2_b + delta * delta * n_a * n_b / total)


# Chunks whose absmax lies in this window have their squared deviations summed as they are:
# no square overflows, and what underflow loses (at most 2**-126 per element) is below 1e-8 of
# any nonzero M2 such a chunk can have. Outside it (Adam's exp_avg_sq at ~1e-22, whose squares
# are float32 subnormals; values past ~1e19, whose squares overflow) the chunk is first scaled
# by a power of two, which is exact, so the squares land near 1.
_PLAIN_WINDOW = {torch.float32: (2.0**-16, 2.0**32), torch.float64: (2.0**-300, 2.0**300)}


def _sum_sq_dev(w: torch.Tensor, m: float, absmax: float, out: torch.Tensor) -> float:
    """Sum of (x - m)^2 over the float chunk ``w`` (absmax > 0), accurate to ~1e-7 relative at
    any magnitude; ``out`` is a buffer of w's dtype and size."""
    low, high = _PLAIN_WINDOW[w.dtype]
    e = 0 if low <= absmax < high else math.frexp(absmax)[1]  # absmax < 2**e
    m_scaled = math.ldexp(m, -e)
    # Squares about the chunk's own mean (rounded to w's dtype, corrected below) stay free of
    # the cancellation that sum(x^2) - n*mean^2 suffers when the mean dwarfs the spread.
    # torch's float32 sum is a cascade sum, accurate to ~1e-7 here; a BLAS dot is not.
    shift = float(np.float32(m_scaled)) if w.dtype == torch.float32 else m_scaled
    if e == 0:
        torch.sub(w, shift, out=out)
    else:
        scale_pow2(w, -e, out).sub_(shift)
    syy = out.square_().sum().item()
    d = m_scaled - shift
    return math.ldexp(max(syy - w.numel() * d * d, 0.0), 2 * e)


# Below this many elements, the zeros of a chunk are counted as the float sum of a 0/1 mask:
# every partial sum is an integer under 2**24, so exact.
_EXACT_COUNT = 1 << 24


def _zeros(w: torch.Tensor, scratch: torch.Tensor) -> int:
    """How many elements of the finite float chunk ``w`` are zero (either sign): a 0/1 mask
    written into ``scratch`` and summed, several times faster than ``count_nonzero``."""
    if w.numel() >= _EXACT_COUNT or not scratch.is_floating_point():
        return w.numel() - int(torch.count_nonzero(w))
    return int(torch.eq(w, 0, out=scratch).sum())


class _Moments:
    """Running count, mean, M2 (sum of squared deviations), min, max and counts over chunks."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.zeros = self.nan = self.posinf = self.neginf = 0

    def add(self, w: torch.Tensor, scratch: torch.Tensor) -> None:
        """Fold in the 1-D float chunk ``w``; ``scratch`` is a buffer of w's dtype, as long."""
        n = w.numel()
        if n == 0:
            return
        s = w.sum(dtype=torch.float64).item()
        if not math.isfinite(s):  # a NaN or Inf somewhere (or float64 overflow): careful path
            self.nan += int(torch.isnan(w).sum())
            self.posinf += int((w == math.inf).sum())
            self.neginf += int((w == -math.inf).sum())
            w = w[torch.isfinite(w)]
            n = w.numel()
            if n == 0:
                return
            s = w.sum(dtype=torch.float64).item()
            if not math.isfinite(s):  # huge float64 values: sum the scaled values instead
                s = (w / n).sum().item() * n
        # amin and amax apart: torch's fused aminmax is slower than the two (same values).
        lo, hi = float(w.amin()), float(w.amax())
        if lo <= 0.0 <= hi:
            self.zeros += _zeros(w, scratch[:n])
        m = s / n
        m2 = 0.0 if lo == hi else _sum_sq_dev(w, m, max(-lo, hi), scratch[:n])
        self.merge(n, m, m2, lo, hi)

    def merge(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        if n == 0:
            return
        self.n, self.mean, self.m2 = merge_moments(self.n, self.mean, self.m2, n, mean, m2)
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def add_block(self, block: BlockMoments) -> None:
        """Fold in a block's moments read from packed parts (``nibble_stats``)."""
        self.merge(block.count, block.mean, block.m2, block.min, block.max)
        self.zeros += block.zeros

    def absorb(self, other: _Moments) -> None:
        self.merge(other.n, other.mean, other.m2, other.min, other.max)
        self.zeros += other.zeros
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf


class _Reducer:
    """One worker's buffers and running figures for one tensor."""

    def __init__(self, wdtype: torch.dtype, size: int, native_int: bool) -> None:
        self.buf = torch.empty(size, dtype=wdtype)
        self.scratch = torch.empty(size, dtype=wdtype)
        self.acc = _Moments()
        self.native_int = native_int
        self.int_lo: int | None = None
        self.int_hi: int | None = None

    def add(self, chunk: torch.Tensor) -> None:
        self.acc.add(to_work(chunk, self.buf), self.scratch)
        if self.native_int and chunk.numel():  # exact integer min/max, even past 2**53
            lo, hi = (int(v) for v in torch.aminmax(chunk))
            self.int_lo = lo if self.int_lo is None else min(self.int_lo, lo)
            self.int_hi = hi if self.int_hi is None else max(self.int_hi, hi)


def _stats_steps(
    t: torch.Tensor, chunk_elems: int, cancel: CancelCheck | None
) -> Generator[int, None, TensorStats]:
    """Reduce ``t`` chunk by chunk, yielding the number of elements done now and then; the
    generator's return value is the ``TensorStats``."""
    if t.device.type != "cpu":
        raise ValueError("tensor_stats needs a CPU tensor")
    t, repeat = compact(t)
    packed = t.dtype == torch.float4_e2m1fn_x2  # decoded to float32 chunk by chunk
    source = torch.float32 if t.is_quantized or packed else t.dtype
    wdtype = work_dtype(source)
    size = min(chunk_elems, max(t.numel(), 1))
    native = t.dtype in _NATIVE_MINMAX
    reducers = yield from map_chunks(
        t, size, lambda n: _Reducer(wdtype, n, native), _Reducer.add, cancel
    )
    acc = _Moments()
    for r in reducers:
        acc.absorb(r.acc)
    los = [r.int_lo for r in reducers if r.int_lo is not None]
    his = [r.int_hi for r in reducers if r.int_hi is not None]
    is_int = not (source.is_floating_point or source.is_complex)
    lo_hi = (min(los), max(his)) if los and his else None
    numel = t.numel() * values_per_element(t.dtype)
    kind = (t.is_complex(), t.is_quantized)
    return _repeated(_finish(acc, dtype_name(t.dtype), numel, is_int, lo_hi, *kind), repeat)


def _logical_steps(
    lt: Any, chunk_elems: int, cancel: CancelCheck | None
) -> Generator[int, None, TensorStats]:
    """``_stats_steps`` of a quantized weight's ``LogicalTensor``: its row blocks are
    dequantized to float32 and reduced on the chunk workers, never the whole weight at once;
    or, where the scheme can (4-bit GPTQ), their moments are read from the packed parts."""
    acc = _Moments()
    blocks = lt.moment_blocks()
    if blocks is not None:
        # Blocks of packed words, larger than value chunks: a block costs a call into the kernel.
        states = yield from map_chunks(
            blocks, chunk_elems * _MOMENT_BLOCK, lambda _: _Moments(), _Moments.add_block, cancel
        )
        for state in states:
            acc.absorb(state)
    else:
        reducers = yield from map_chunks(
            lt, chunk_elems, lambda n: _Reducer(torch.float32, n, False), _Reducer.add, cancel
        )
        for r in reducers:
            acc.absorb(r.acc)
    return _finish(acc, lt.dtype, lt.numel(), False, None, False, True)


_MOMENT_BLOCK = 8  # value chunks per block of packed words whose moments are read at once


def _repeated(s: TensorStats, k: int) -> TensorStats:
    """The statistics of a tensor in which every element of the one ``s`` describes appears
    ``k`` times (a broadcast view): extremes and mean stay, counts scale, and the spread
    follows from the same sum of squared deviations counted ``k`` times."""
    if k == 1:
        return s
    n = s.finite
    m2 = (s.std or 0.0) ** 2 * (n - 1) if n > 1 else 0.0
    total = n * k
    return replace(
        s,
        numel=s.numel * k,
        zeros=s.zeros * k,
        nan=s.nan * k,
        posinf=s.posinf * k,
        neginf=s.neginf * k,
        l2=None if s.l2 is None else s.l2 * math.sqrt(k),
        std=math.sqrt(k * m2 / (total - 1)) if n and total > 1 else None,
    )


def _finish(
    acc: _Moments,
    dtype: str,
    numel: int,
    is_int: bool,
    int_lo_hi: tuple[int, int] | None,
    complex_magnitude: bool = False,
    dequantized: bool = False,
) -> TensorStats:
    n = acc.n
    lo: float | None = None
    hi: float | None = None
    if n:
        lo, hi = acc.min, acc.max
        if is_int:
            lo, hi = int_lo_hi if int_lo_hi is not None else (int(acc.min), int(acc.max))
    mean = acc.mean if n else None
    if n:
        l2: float | None = math.sqrt(acc.m2 + n * acc.mean * acc.mean)
    else:
        l2 = 0.0 if numel == 0 else None
    return TensorStats(
        dtype=dtype,
        numel=numel,
        min=lo,
        max=hi,
        mean=mean,
        std=math.sqrt(acc.m2 / (n - 1)) if n > 1 else None,
        l2=l2,
        absmax=max(abs(lo), abs(hi)) if lo is not None and hi is not None else None,
        zeros=acc.zeros,
        nan=acc.nan,
        posinf=acc.posinf,
        neginf=acc.neginf,
        complex_magnitude=complex_magnitude,
        dequantized=dequantized,
    )


def tensor_stats(
    t: torch.Tensor,
    *,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
) -> TensorStats:
    """Exact statistics of one CPU tensor (memory-mapped or not, any layout, any dtype).

    ``cancel`` is called between chunks; a true result (or a ``Cancelled`` it raises) stops the
    work with ``Cancelled``.
    """
    return drain(_stats_steps(t, chunk_elems, cancel))


def iter_stats(
    nodes: Iterable[Node],
    *,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
    progress_interval: float = PROGRESS_INTERVAL,
) -> Iterator[StatsEvent]:
    """Statistics of tensor nodes, one after another, as a stream of events:

    - ``Progress(done_bytes, total_bytes, key)``: first ``Progress(0, total)``, then at most
      every ``progress_interval`` seconds while a tensor is read, and after each tensor (after
      each batch, for tiny tensors, which are measured up to thousands at once);
    - ``StatsResult(key, stats)``: one per tensor, in the order given, as soon as it is done;
    - ``StatsFailed(key, message)``: a tensor whose data could not be read; the sweep goes on.

    Every yield is a cancel point: stop iterating (or ``close()`` the generator) to cancel.
    ``cancel`` is also checked between chunks, for callers that cannot stop iterating.
    """
    # Imported here: stats_tiny builds on this module's TensorStats and chunked path.
    from ckpt_gui.core.stats_tiny import BATCH_ELEMS, BATCH_TENSORS, is_tiny, tiny_batch

    nodes = [n for n in nodes if n.tensor is not None]
    total = sum(n.tensor.nbytes for n in nodes if n.tensor is not None)
    done = 0
    yield Progress(0, total)
    i = 0
    while i < len(nodes):
        if is_tiny(nodes[i].tensor):
            j, elems = i, 0
            while (
                j < len(nodes)
                and j - i < BATCH_TENSORS
                and elems < BATCH_ELEMS
                and is_tiny(nodes[j].tensor)
            ):
                elems += nodes[j].tensor.numel  # type: ignore[union-attr]
                j += 1
            _check(cancel)
            batch, i = nodes[i:j], j
            yield from tiny_batch(batch, chunk_elems, cancel)
            done += sum(n.tensor.nbytes for n in batch if n.tensor is not None)
            yield Progress(done, total, batch[-1].key)
            continue
        node = nodes[i]
        i += 1
        assert node.tensor is not None
        nbytes, numel = node.tensor.nbytes, node.tensor.numel
        if dtype_from_name(node.tensor.dtype) in NO_VALUES:
            done += nbytes
            yield StatsFailed(node.key, no_values(node.tensor.dtype))
            yield Progress(done, total, node.key)
            continue
        try:
            fetched = 0
            for n in node.tensor.fetch() if node.tensor.fetch is not None else ():
                _check(cancel)  # a download is cancelled between its steps
                fetched += n
                yield Progress(done + min(fetched, nbytes), total, node.key)
            t = None if node.tensor.quant is not None else node.load()
        except CheckpointError as exc:
            done += nbytes
            yield StatsFailed(node.key, str(exc))
            yield Progress(done, total, node.key)
            continue
        if t is None:
            steps = _logical_steps(node.tensor.quant, chunk_elems, cancel)
        else:
            steps = _stats_steps(t, chunk_elems, cancel)
        last = time.monotonic()
        failed: str | None = None
        try:
            while True:
                try:
                    elems = next(steps)
                except StopIteration as stop:
                    stats = stop.value
                    break
                except CheckpointError as exc:  # a quantized weight's parts that disagree
                    failed = str(exc)
                    break
                if time.monotonic() - last >= progress_interval and not fetched:
                    last = time.monotonic()  # (after a download, its steps were the progress)
                    yield Progress(done + elems * nbytes // max(numel, 1), total, node.key)
        finally:
            steps.close()  # on a cancel, the workers stop before the generator does
        del t, steps  # let the mapping go before the next tensor
        done += nbytes
        yield StatsFailed(node.key, failed) if failed is not None else StatsResult(node.key, stats)
        yield Progress(done, total, node.key)


def _check(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def no_values(dtype: str) -> str:
    """Why a tensor of ``dtype`` has no statistics (``bits8``: raw bits, no numbers)."""
    return f"{dtype} holds raw bits, not numbers"


def has_statistics(dtype: str) -> bool:
    return dtype_from_name(dtype) not in NO_VALUES


def to_json(stats: TensorStats, key: str | None = None) -> dict[str, Any]:
    """The ``stats`` entry of CLI.md for one tensor (plus ``sparsity`` and the two flags).
    Never NaN or Infinity: a figure that overflowed float64 becomes ``null``."""
    out: dict[str, Any] = {} if key is None else {"key": key}
    out.update(dtype=stats.dtype, numel=stats.numel)
    for name in ("min", "max", "mean", "std", "l2", "absmax"):
        value = getattr(stats, name)
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[name] = value
    out.update(
        zeros=stats.zeros,
        nan=stats.nan,
        posinf=stats.posinf,
        neginf=stats.neginf,
        sparsity=stats.sparsity,
        complex_magnitude=stats.complex_magnitude,
        dequantized=stats.dequantized,
    )
    return out
