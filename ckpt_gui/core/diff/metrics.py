"""How much one tensor changed: bit identity, max/mean |A−B|, ‖A−B‖/‖A‖ and cosine similarity.

Both tensors are read in aligned 1-D chunks (views of the memory-mapped files wherever the layout
allows), so memory stays bounded by a few chunk-sized buffers whatever the tensors' size and a
bfloat16 tensor is never copied to float32 whole. Each chunk is first compared as raw bytes,
which is cheap and decides "identical" exactly (NaN payloads and the sign of zero included);
only chunks that differ pay for the metrics. Within a chunk the sums run in the work dtype
(float32 for 32-bit and narrower inputs, torch's accurate cascade sum), and chunk sums are added
up in float64. A chunk whose float32 squares overflow, or are small enough to lose bits to
underflow (Adam's exp_avg_sq), is summed again over values scaled by powers of two. Positions
where either side is NaN or ±Inf are left out of the metrics and counted. Complex tensors:
|A−B| is the magnitude of the complex difference, ‖·‖ and the cosine treat real and imaginary
parts as coordinates (the cosine is Re⟨A, B⟩/‖A‖‖B‖). Quantized tensors are compared through
``dequantize()`` and never reported identical.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

# DEFAULT_CHUNK_ELEMS (256K): both sides' chunks and the scratch buffers stay in L2 while the
# sums reread them.
from ckpt_gui.core.chunks import (
    DEFAULT_CHUNK_ELEMS,
    CancelCheck,
    broadcast_dims,
    compact,
    drain,
    paired_chunks,
    paired_rows,
    scale_pow2,
    serial_torch,
)
from ckpt_gui.core.errors import Cancelled, CorruptError
from ckpt_gui.core.tree import dtype_name

# Bytes compared before the full identity check: a changed tensor usually differs right away.
_PREFIX_ELEMS = 1024
_WIDE = {
    torch.float64,
    torch.complex128,
    torch.int32,
    torch.int64,
    torch.uint32,
    torch.uint64,
}
_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


@dataclass(frozen=True)
class TensorDiff:
    """The comparison of two same-shaped tensors. The metrics are over the ``compared``
    positions where both sides are finite; ``None`` where a metric does not exist (no position
    compared, or a zero norm under a ratio)."""

    numel: int
    identical: bool  # the same bytes, element for element (same dtype only)
    within_tolerance: bool  # |a−b| <= atol + rtol·|b| everywhere; NaN = NaN, same infinities
    compared: int
    nonfinite: int  # positions where either side is NaN or ±Inf
    max_abs_diff: float | None
    mean_abs_diff: float | None
    diff_l2: float  # ‖A−B‖
    norm_a: float  # ‖A‖
    norm_b: float
    dot: float  # ⟨A, B⟩ (real part for complex tensors)
    work_dtype: str  # the dtype both sides were compared in
    complex_magnitude: bool = False
    # Positions where B is NaN or ±Inf and A is finite: values that went bad between A and B.
    nonfinite_b_only: int = 0

    @property
    def rel_l2(self) -> float | None:
        """‖A−B‖/‖A‖: 0 when nothing changed, ``None`` when A is all zeros and B is not."""
        if self.diff_l2 == 0:
            return 0.0
        return self.diff_l2 / self.norm_a if self.norm_a > 0 else None

    @property
    def cosine(self) -> float | None:
        if self.norm_a == 0 or self.norm_b == 0:
            return None
        return max(-1.0, min(1.0, self.dot / (self.norm_a * self.norm_b)))


def compare_dtype(a: torch.dtype, b: torch.dtype) -> torch.dtype:
    """The dtype chunks of ``a`` and ``b`` are compared in: float32 unless either side needs
    float64 (float64 and wide integers) to be exact; complex if either side is complex."""
    wide = a in _WIDE or b in _WIDE
    if a.is_complex or b.is_complex:
        return torch.complex128 if wide else torch.complex64
    return torch.float64 if wide else torch.float32


def _bits(chunk: torch.Tensor) -> np.ndarray:
    """The chunk's bytes as an integer array (numpy has no bfloat16, any dtype has bytes)."""
    size = chunk.element_size()
    view = chunk.view(_BITS[size]) if size in _BITS else chunk.view(torch.int64)
    return view.numpy()


def _same_bits(ca: torch.Tensor, cb: torch.Tensor) -> bool:
    ba, bb = _bits(ca), _bits(cb)
    if ba.size > _PREFIX_ELEMS and not np.array_equal(ba[:_PREFIX_ELEMS], bb[:_PREFIX_ELEMS]):
        return False
    return bool(np.array_equal(ba, bb))


class _Sums:
    """Running float64 sums over chunks."""

    def __init__(self) -> None:
        self.compared = 0
        self.nonfinite = 0
        self.nonfinite_b_only = 0
        self.sum_abs = 0.0
        self.sum_sq = 0.0
        self.max_abs = 0.0
        self.aa = 0.0
        self.bb = 0.0
        self.ab = 0.0
        self.within = True


class _Buffers:
    """Scratch space sized for one chunk, allocated once per tensor pair."""

    def __init__(self, work: torch.dtype, size: int) -> None:
        real = torch.float64 if work in (torch.float64, torch.complex128) else torch.float32
        self.a = torch.empty(size, dtype=work)
        self.b = torch.empty(size, dtype=work)
        self.d = torch.empty(size, dtype=real)
        self.p = torch.empty(2 * size if work.is_complex else size, dtype=real)
        self.size = size
        self._q: torch.Tensor | None = None

    def q(self, n: int) -> torch.Tensor:
        """One more float32 scratch buffer, made only for chunks that need rescaling."""
        if self._q is None:
            self._q = torch.empty(self.size, dtype=torch.float32)
        return self._q[:n]

    def work(self, chunk: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
        if chunk.dtype == buf.dtype:
            return chunk
        if chunk.dtype == torch.complex32:
            chunk = chunk.to(torch.complex64)
        return buf[: chunk.numel()].copy_(chunk)


def _chunk_sums(wa: torch.Tensor, wb: torch.Tensor, bufs: _Buffers) -> list[float]:
    """[sum|d|, sum d², max|d|, sum a², sum b², sum a·b] of one chunk, d = a − b."""
    n = wa.numel()
    if wa.is_complex():
        ad = torch.abs(wa - wb)
        ra, rb = torch.view_as_real(wa).reshape(-1), torch.view_as_real(wb).reshape(-1)
    else:
        ad = torch.sub(wa, wb, out=bufs.d[:n] if wa.dtype == bufs.d.dtype else None).abs_()
        ra, rb = wa, wb
    p = bufs.p[: ra.numel()] if ra.dtype == bufs.p.dtype else None
    sums = torch.stack(
        [
            ad.sum(),
            torch.mul(ad, ad, out=p[:n] if p is not None else None).sum(),
            ad.amax(),
            torch.mul(ra, ra, out=p).sum(),
            torch.mul(rb, rb, out=p).sum(),
            torch.mul(ra, rb, out=p).sum(),
        ]
    )
    return sums.tolist()


def _add(acc: _Sums, sums: list[float], n: int) -> None:
    acc.compared += n
    acc.sum_abs += sums[0]
    acc.sum_sq += sums[1]
    acc.max_abs = max(acc.max_abs, sums[2])
    acc.aa += sums[3]
    acc.bb += sums[4]
    acc.ab += sums[5]


def _fold_chunk(
    acc: _Sums, wa: torch.Tensor, wb: torch.Tensor, bufs: _Buffers, atol: float, rtol: float
) -> None:
    """Fold one differing chunk into ``acc``, leaving out non-finite positions."""
    sums = _chunk_sums(wa, wb, bufs)
    if not all(math.isfinite(s) for s in sums):  # NaN/Inf somewhere, or float32 overflow
        plain: list[float] | None = sums  # overflow alone: the finite sums hold
        if wa.is_complex() or _extremes(wa) is None or _extremes(wb) is None:
            finite = torch.isfinite(wa) & torch.isfinite(wb)
            na, nb = wa[~finite], wb[~finite]
            same = (na == nb) | (torch.isnan(na) & torch.isnan(nb))
            acc.within = acc.within and bool(same.all())
            acc.nonfinite += na.numel()
            acc.nonfinite_b_only += int((torch.isfinite(na) & ~torch.isfinite(nb)).sum())
            wa, wb, plain = wa[finite], wb[finite], None
        if wa.numel() == 0:
            return
        sums, wa, wb = _exact_sums(wa, wb, bufs, plain)
    elif _underflowed([sums[1], sums[3], sums[4]] if sums[2] > 0 else sums[3:5], wa):
        sums, wa, wb = _exact_sums(wa, wb, bufs, sums)
    _add(acc, sums, wa.numel())
    if acc.within and sums[2] > atol:
        if rtol == 0 or not math.isfinite(sums[2]):
            acc.within = False
        else:
            d = torch.abs(wa - wb)
            acc.within = bool((d <= atol + rtol * torch.abs(wb)).all())


def _fold_identical(acc: _Sums, wa: torch.Tensor, bufs: _Buffers) -> None:
    """An identical chunk adds only to the norms (and to the non-finite count)."""
    n = wa.numel()
    s = _square_sum(wa, bufs)
    if not math.isfinite(s) or _underflowed([s], wa):  # NaN/Inf (equal on both sides) as well
        extremes = None if wa.is_complex() else _extremes(wa)
        kept = wa if extremes is not None else wa[torch.isfinite(wa)]
        acc.nonfinite += n - kept.numel()
        n = kept.numel()
        if kept.dtype == torch.float32:
            s = _scaled_square_sum(kept, _exponent(kept, extremes), bufs.p[:n])
        else:
            s = _square_sum(kept.to(torch.complex128 if kept.is_complex() else torch.float64), bufs)
    acc.compared += n
    acc.aa += s
    acc.bb += s
    acc.ab += s


def _underflowed(square_sums: list[float], w: torch.Tensor) -> bool:
    """Whether float32 squares of the chunk ``w`` may have lost more than ~1e-8 of one of
    ``square_sums`` to underflow (see ``_safe_square_sum``)."""
    if w.dtype not in (torch.float32, torch.complex64):
        return False
    return min(square_sums) < _safe_square_sum(w)


def _safe_square_sum(w: torch.Tensor) -> float:
    """The least float32 sum of squares over the chunk ``w`` that underflow cannot have made
    inexact: a square loses at most 2**-126 to it, under 1e-8 of 2n * 2**-96 (2n: a complex
    element holds two coordinates). Adam's exp_avg_sq, at ~1e-22, has subnormal squares."""
    return 2 * w.numel() * 2.0**-96


def _exact_sums(
    wa: torch.Tensor, wb: torch.Tensor, bufs: _Buffers, plain: list[float] | None = None
) -> tuple[list[float], torch.Tensor, torch.Tensor]:
    """``_chunk_sums`` of a chunk with no NaN/Inf whose float32 squares overflowed or lost bits
    to underflow, and the chunk as it was summed. ``plain``: the float32 sums, of which those
    still exact are kept. Real float32 chunks stay float32, each sum of squares taken over
    values scaled by a power of two (exact) so that the squares land near 1; complex ones, and
    differences past float32's range, go to float64."""
    if wa.dtype == torch.float32:
        sums = _scaled_sums(wa, wb, bufs, plain)
        if sums is not None:
            return sums, wa, wb
    wide = torch.complex128 if wa.is_complex() else torch.float64
    wa, wb = wa.to(wide), wb.to(wide)
    return _chunk_sums(wa, wb, bufs), wa, wb


def _extremes(w: torch.Tensor) -> tuple[float, float] | None:
    """min and max of a real chunk, ``None`` when it holds a NaN or ±Inf. Much cheaper than
    ``isfinite(w).all()``, and (as two reductions) than ``aminmax``."""
    lo, hi = float(w.amin()), float(w.amax())
    return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) else None


def _exponent(w: torch.Tensor, extremes: tuple[float, float] | None = None) -> int | None:
    """The e with max|w| < 2**e, so that w * 2**-e lies within (-1, 1); ``None`` when ``w`` is
    all zeros. ``extremes``: w's min and max where known already; w holds no NaN or ±Inf."""
    if w.numel() == 0:
        return None
    lo, hi = extremes or (float(w.amin()), float(w.amax()))
    top = max(-lo, hi)
    return math.frexp(top)[1] if top > 0 else None


def _scaled_square_sum(w: torch.Tensor, e: int | None, out: torch.Tensor) -> float:
    """Sum of w**2 taken as sum((w * 2**-e)**2) * 4**e; ``out`` may be ``w``."""
    if e is None:
        return 0.0
    return math.ldexp(float(scale_pow2(w, -e, out).square_().sum()), 2 * e)


def _scaled_sums(
    wa: torch.Tensor, wb: torch.Tensor, bufs: _Buffers, plain: list[float] | None
) -> list[float] | None:
    """``_exact_sums`` of a real float32 chunk; ``None`` when a difference itself overflows."""
    n = wa.numel()
    safe = _safe_square_sum(wa)
    out = list(plain) if plain is not None else [math.nan] * 6

    def exact(i: int) -> bool:
        return safe <= out[i] < math.inf  # False for NaN

    if not (math.isfinite(out[0]) and math.isfinite(out[2]) and (out[2] == 0 or exact(1))):
        d = torch.sub(wa, wb, out=bufs.d[:n]).abs_()
        out[2] = float(d.amax())
        if not math.isfinite(out[2]):
            return None
        ed = math.frexp(out[2])[1]
        out[0] = math.ldexp(float(scale_pow2(d, -ed, d).sum()), ed)
        out[1] = math.ldexp(float(d.square_().sum()), 2 * ed)
    # With both sums of squares exact, so is the dot product: a product a·b is no smaller than
    # the smaller of a² and b², and no larger than the larger.
    exact_a, exact_b = exact(3), exact(4)
    if exact_a and exact_b:
        return out
    ea = _exponent(wa)
    eb = _exponent(wb) if ea is not None else None
    if ea is not None and eb is not None:
        xa, xb = scale_pow2(wa, -ea, bufs.p[:n]), scale_pow2(wb, -eb, bufs.q(n))
        scratch = bufs.d[:n]
        out[3] = math.ldexp(float(torch.mul(xa, xa, out=scratch).sum()), 2 * ea)
        out[4] = math.ldexp(float(torch.mul(xb, xb, out=scratch).sum()), 2 * eb)
        out[5] = math.ldexp(float(torch.mul(xa, xb, out=scratch).sum()), ea + eb)
    elif ea is None:  # A is all zeros (a zero-initialised tensor): so are its norm and the dot
        out[3] = out[5] = 0.0
        if not exact_b:
            out[4] = _scaled_square_sum(wb, _exponent(wb), bufs.p[:n])
    else:
        out[4] = out[5] = 0.0
        if not exact_a:
            out[3] = _scaled_square_sum(wa, ea, bufs.p[:n])
    return out


def _square_sum(w: torch.Tensor, bufs: _Buffers) -> float:
    r = torch.view_as_real(w).reshape(-1) if w.is_complex() else w
    out = bufs.p[: r.numel()] if r.dtype == bufs.p.dtype else None
    return float(torch.mul(r, r, out=out).sum())


def diff_steps(
    a: torch.Tensor | Any,
    b: torch.Tensor | Any,
    *,
    atol: float = 0.0,
    rtol: float = 0.0,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
) -> Generator[int, None, TensorDiff]:
    """Compare ``a`` with ``b`` chunk by chunk, yielding the number of elements done after each
    chunk (a progress and cancel point); the generator's return value is the ``TensorDiff``."""
    # A quantized weight's LogicalTensor on either side: compared row block by row block.
    lazy = not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor)
    if lazy:
        repeat, same_dtype = 1, False
        src_a, src_b = (_source_dtype(t) for t in (a, b))
        room = max(chunk_elems, a.shape[-1] if a.shape else 1)
    else:
        if a.device.type != "cpu" or b.device.type != "cpu":
            raise ValueError("tensor diffs need CPU tensors")
        a, b, repeat = _compact_pair(a, b)
        same_dtype = a.dtype == b.dtype and not a.is_quantized and not b.is_quantized
        src_a, src_b = _source_dtype(a), _source_dtype(b)
        room = chunk_elems
    work = compare_dtype(src_a, src_b)
    bufs = _Buffers(work, min(room, max(a.numel(), 1)))
    acc = _Sums()
    identical = same_dtype
    done = 0
    with serial_torch():
        pairs = paired_rows(a, b, chunk_elems) if lazy else paired_chunks(a, b, chunk_elems)
        for ca, cb in pairs:
            if cancel is not None and cancel():
                raise Cancelled()
            same = same_dtype and _same_bits(ca, cb)
            identical = identical and same
            wa = bufs.work(ca, bufs.a)
            if same:
                _fold_identical(acc, wa, bufs)
            else:
                _fold_chunk(acc, wa, bufs.work(cb, bufs.b), bufs, atol, rtol)
            done += ca.numel()
            yield done
    n = acc.compared
    diff = TensorDiff(
        numel=a.numel(),
        identical=identical,
        within_tolerance=identical or acc.within,
        compared=n,
        nonfinite=acc.nonfinite,
        nonfinite_b_only=acc.nonfinite_b_only,
        max_abs_diff=acc.max_abs if n else None,
        mean_abs_diff=acc.sum_abs / n if n else None,
        diff_l2=math.sqrt(acc.sum_sq),
        norm_a=math.sqrt(acc.aa),
        norm_b=math.sqrt(acc.bb),
        dot=acc.ab,
        work_dtype=dtype_name(work),
        complex_magnitude=work.is_complex,
    )
    return _repeated(diff, repeat)


def _source_dtype(t: torch.Tensor | Any) -> torch.dtype:
    """The dtype ``t``'s chunks come in: float32 for quantized and logical tensors."""
    if not isinstance(t, torch.Tensor) or t.is_quantized:
        return torch.float32
    return t.dtype


# Beyond this, a broadcast view is compared only against one that repeats the same way.
HUGE_BROADCAST_ELEMS = 1 << 28


def _compact_pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both tensors without the repetition of shared broadcast dimensions, and how often each
    compared element stands in them. Every metric follows exactly from the compact pair."""
    dims_a, dims_b = broadcast_dims(a), broadcast_dims(b)
    if dims_a and dims_a == dims_b:
        (ca, repeat), (cb, _) = compact(a), compact(b)
        return ca, cb, repeat
    if (dims_a or dims_b) and a.numel() > HUGE_BROADCAST_ELEMS:
        raise CorruptError(
            f"a broadcast view of {a.numel():,} elements compared with a tensor laid out "
            "differently; too large to compare element by element"
        )
    compact(a), compact(b)  # refuses views that overlap their storage beyond reason
    return a, b, 1


def _repeated(d: TensorDiff, k: int) -> TensorDiff:
    if k == 1:
        return d
    root = math.sqrt(k)
    return replace(
        d,
        numel=d.numel * k,
        compared=d.compared * k,
        nonfinite=d.nonfinite * k,
        nonfinite_b_only=d.nonfinite_b_only * k,
        diff_l2=d.diff_l2 * root,
        norm_a=d.norm_a * root,
        norm_b=d.norm_b * root,
        dot=d.dot * k,
    )


def tensor_diff(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    atol: float = 0.0,
    rtol: float = 0.0,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
) -> TensorDiff:
    """Compare two same-shaped CPU tensors of any dtypes and layouts (see the module doc)."""
    return drain(diff_steps(a, b, atol=atol, rtol=rtol, chunk_elems=chunk_elems, cancel=cancel))
