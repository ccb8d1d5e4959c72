"""Iterate a tensor in cache-sized 1-D chunks, optionally spread over a pool of worker threads.

Chunks are views of the memory-mapped file wherever the layout allows, chunk-sized copies
otherwise, so memory stays bounded by a few chunk-sized buffers whatever the tensor's size. The
statistics (``ckpt_gui.core.stats``) and the histograms (``ckpt_gui.core.histogram``) run their
per-chunk reductions through ``map_chunks``.

Chunks of a large tensor are spread over a small pool of worker threads (torch releases the GIL),
each running torch single-threaded: per-op OpenMP teams on small chunks stall at every barrier
when other processes share the cores, and a work queue of chunks does not.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, TypeVar

import torch

from ckpt_gui.core.errors import Cancelled, CorruptError

# 256K elements: a 1 MiB float32 chunk stays in L2 while the fused reductions read it again.
DEFAULT_CHUNK_ELEMS = 1 << 18
# Progress within a tensor is reported at most this often (seconds): a bar moves smoothly and a
# GUI thread is not flooded with events.
PROGRESS_INTERVAL = 0.05
# A tensor may view its storage at most this many times over (beyond broadcast dimensions)
# before it is refused: no real tensor overlaps itself, but a hostile file can describe a
# trillion-element view of four bytes.
MAX_OVERLAP = 64

CancelCheck = Callable[[], Any]
# Tensors of at most this many elements are handled many at once, end to end in one array
# (statistics: ``stats_tiny``; export verification: ``export.verify``): a dozen calls per tensor
# would make a file of half a million one-byte tensors take a minute. Past a thousand elements
# the chunked paths' fused reductions are the faster.
TINY_ELEMS = 1024


def plain_tiny(t: torch.Tensor) -> bool:
    """A dense CPU tensor (not nested, not quantized) of at most ``TINY_ELEMS`` elements: one
    whose values can join a batch of others."""
    return (
        t.layout == torch.strided
        and not t.is_nested
        and not t.is_quantized
        and t.device.type == "cpu"
        and t.numel() <= TINY_ELEMS
    )


S = TypeVar("S")
R = TypeVar("R")


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The float type chunks of ``dtype`` are reduced in: float32 for 16-bit and smaller floats
    and small integers (exact there), float64 for float64 and wide integers."""
    if dtype in (torch.float64, torch.complex128, torch.int32, torch.int64):
        return torch.float64
    if dtype in (torch.uint32, torch.uint64):
        return torch.float64
    return torch.float32


# float4_e2m1fn_x2 packs two e2m1 values a byte (the low nibble first); torch cannot convert it,
# so its values are looked up: sign, two exponent bits, one mantissa bit.
FP4_VALUES = torch.tensor(
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
)
# Dtypes whose elements are raw bits with no numeric meaning: nothing to measure.
NO_VALUES = frozenset(
    d for d in (getattr(torch, f"bits{n}", None) for n in ("1x8", "2x4", "4x2", "8", "16")) if d
)


def values_per_element(dtype: torch.dtype) -> int:
    """How many values one element holds: 2 for packed float4, else 1."""
    return 2 if dtype == torch.float4_e2m1fn_x2 else 1


def unpack_fp4(raw: torch.Tensor) -> torch.Tensor:
    """The float32 values of packed float4 bytes (a uint8 tensor), two per byte."""
    pairs = torch.stack((raw & 0x0F, raw >> 4), dim=-1).reshape(-1)
    return FP4_VALUES[pairs.long()]


def dense_flat(t: torch.Tensor) -> torch.Tensor | None:
    """A 1-D view of every element of ``t`` exactly once, or ``None`` when the layout has gaps
    or overlaps. Statistics ignore element order, so a transposed (permuted) tensor qualifies."""
    if t.is_contiguous():
        return t.view(-1)
    order = sorted(range(t.dim()), key=lambda d: t.stride(d), reverse=True)
    permuted = t.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else None


def flat_chunks(t: torch.Tensor, chunk_elems: int = DEFAULT_CHUNK_ELEMS) -> Iterator[torch.Tensor]:
    """1-D pieces covering every element of ``t`` once, at most ``chunk_elems`` long (in no
    particular order). Views where the layout allows; otherwise chunk-sized copies, never a copy
    of the whole tensor. Quantized tensors come out dequantized, chunk by chunk."""
    if t.is_quantized:
        for piece in row_pieces(t, chunk_elems):
            yield piece.dequantize().reshape(-1)
        return
    if t.dtype == torch.float4_e2m1fn_x2:  # decoded chunk by chunk, never the whole tensor
        for piece in flat_chunks(t.view(torch.uint8), max(1, chunk_elems // 2)):
            yield unpack_fp4(piece)
        return
    flat = dense_flat(t)
    if flat is not None:
        for start in range(0, flat.numel(), chunk_elems):
            yield flat[start : start + chunk_elems]
        return
    for piece in row_pieces(t, chunk_elems):
        yield piece.reshape(-1)  # a copy of at most chunk_elems elements


def row_pieces(t: torch.Tensor, chunk_elems: int) -> Iterator[torch.Tensor]:
    """Slices of ``t`` along its first dimension, each at most ``chunk_elems`` elements."""
    if t.dim() == 0:
        yield t
        return
    if t.numel() == 0:
        return
    row = t.numel() // t.shape[0]
    if row <= chunk_elems:
        step = chunk_elems // row
        for i in range(0, t.shape[0], step):
            yield t[i : i + step]
        return
    for i in range(t.shape[0]):
        yield from row_pieces(t[i], chunk_elems)


def to_work(chunk: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """``chunk`` as a real tensor of ``buf``'s dtype, converted into ``buf`` when needed.
    Complex chunks become their magnitude."""
    if chunk.dtype == buf.dtype:
        return chunk
    out = buf[: chunk.numel()]
    if chunk.is_complex():
        if chunk.dtype == torch.complex32:
            chunk = chunk.to(torch.complex64)
        return torch.abs(chunk, out=out)
    return out.copy_(chunk)


def scale_pow2(w: torch.Tensor, k: int, out: torch.Tensor) -> torch.Tensor:
    """``w * 2**k`` written into ``out`` (which may be ``w``): exact wherever the result is a
    normal number of w's dtype. Squares of float32 values around 1e-22 are subnormal and of
    values past 1e19 infinite; scaled first, they land near 1. Steps of at most 2**±120, as
    torch turns the factor into w's dtype: 2**132 (for float32 subnormals) would be infinite."""
    step = max(-120, min(120, k))
    torch.mul(w, 2.0**step, out=out)
    k -= step
    while k:
        step = max(-120, min(120, k))
        out.mul_(2.0**step)
        k -= step
    return out


# -- running chunks on worker threads ------------------------------------------------------------

_GRAIN = 32_000  # below torch's internal grain size (32768) an op runs on the calling thread
_pool_lock = threading.Lock()
_pool: tuple[ThreadPoolExecutor, int, int] | None = None
_pool_pid = 0  # a forked child inherits the pool object but not its threads


def _omp_threads(n: int) -> int | None:
    """Set this thread's OpenMP team size to ``n``; the size before, or None when no OpenMP
    runtime is in reach. Only the calling thread changes: ``torch.set_num_threads`` would
    change every new thread's default. Two teams forked onto two busy cores stall at every
    barrier (measured 4-10x slower on a shared machine), hence one thread per worker."""
    torch.get_num_threads()  # torch's lazy per-thread setup first, so it cannot undo the call
    try:
        omp = ctypes.CDLL(None)
        before = int(omp.omp_get_max_threads())
        omp.omp_set_num_threads(n)
    except (OSError, AttributeError, TypeError):
        return None
    return before


@contextmanager
def serial_torch() -> Iterator[None]:
    """Run torch ops on the calling thread alone while inside, restored on the way out."""
    # The worker pool is sized from torch's thread count: made before this thread's count is
    # lowered, or work started inside (a run's positions) would get a pool of one thread.
    _workers()
    before = _omp_threads(1)
    try:
        yield
    finally:
        if before is not None:
            _omp_threads(before)


def _serial_torch_in_this_thread() -> int:
    """Worker initializer: torch ops on this thread run on it alone for good (without OpenMP,
    chunks are kept below the grain size instead)."""
    _omp_threads(1)
    return torch.get_num_threads()


def _workers() -> tuple[ThreadPoolExecutor, int, int]:
    """The shared worker pool, its size (torch's thread count, so OMP_NUM_THREADS and
    ``torch.set_num_threads`` are honoured) and the largest chunk it can take."""
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            n = max(1, min(torch.get_num_threads(), 8))
            pool = ThreadPoolExecutor(n, "ckpt-stats", initializer=_serial_torch_in_this_thread)
            serial = pool.submit(torch.get_num_threads).result() == 1
            _pool, _pool_pid = (pool, n, (1 << 40 if serial else _GRAIN)), os.getpid()
        return _pool


def submit(fn: Callable[..., R], *args: Any) -> Future[R]:
    """Run ``fn(*args)`` on one of the pool's threads (torch single-threaded there): work done
    ahead, such as a merge's next module computed while the current one is written."""
    pool, _, _ = _workers()
    return pool.submit(fn, *args)


def map_chunks(
    t: torch.Tensor | Any,
    chunk_elems: int,
    make_state: Callable[[int], S],
    step: Callable[[S, Any], None],
    cancel: CancelCheck | None = None,
) -> Generator[int, None, list[S]]:
    """Call ``step(state, chunk)`` on every chunk of ``t`` (``flat_chunks``), spread over the
    worker threads, each with its own ``make_state(chunk_elems)``; the generator yields the
    number of elements done about 20 times a second and returns the states. ``cancel`` is
    called between chunks. Closing the generator stops the workers before it returns.

    ``t`` may also be a quantized weight's ``LogicalTensor``: its row blocks are dequantized
    on the worker threads, each chunk as long as ``chunk_elems`` or one row, if longer."""
    pool, workers, cap = _workers()
    lazy = not isinstance(t, torch.Tensor)
    if t.numel() <= 2 * chunk_elems or workers == 1:  # small: run it here
        state, done = make_state(_room(t, chunk_elems)), 0
        every = (
            flat_chunks(t, chunk_elems) if isinstance(t, torch.Tensor) else t.chunks(chunk_elems)
        )
        for chunk in every:
            _check(cancel)
            step(state, chunk)
            done += chunk.numel()
            yield done
        return [state]
    chunk_elems = min(chunk_elems, cap)
    pieces: Iterator[Any] = (
        flat_chunks(t, chunk_elems) if isinstance(t, torch.Tensor) else t.lazy_chunks(chunk_elems)
    )
    # Chunk j always goes to state j % workers, and each state takes its chunks in order,
    # whichever thread reads them: the states, and so the sums merged from them, are the same
    # in every run (threads grabbing chunks into their own state made the last bits of a mean
    # depend on which thread was faster).
    states = [make_state(_room(t, chunk_elems)) for _ in range(workers)]
    served = [0] * workers  # per state: chunks stepped into it so far
    turn = threading.Condition()
    stop, done_box, taken = threading.Event(), [0], [0]

    def work() -> None:
        try:
            while True:
                with turn:
                    chunk = None if stop.is_set() else next(pieces, None)
                    if chunk is None:
                        return
                    j = taken[0]
                    taken[0] += 1
                    _check(cancel)
                if lazy:
                    chunk = chunk()  # dequantized here, outside the lock
                which, place = j % workers, j // workers
                with turn:
                    while served[which] != place and not stop.is_set():
                        turn.wait(PROGRESS_INTERVAL)
                    if stop.is_set():
                        return
                step(states[which], chunk)  # its predecessor is done, its successor waits
                with turn:
                    served[which] += 1
                    done_box[0] += chunk.numel()
                    turn.notify_all()
        except BaseException:
            stop.set()
            raise

    futures = [pool.submit(work) for _ in range(workers)]
    try:
        pending: set[Future[None]] = set(futures)
        while pending:
            _, pending = wait(pending, timeout=PROGRESS_INTERVAL)
            yield done_box[0]
    finally:
        stop.set()
        wait(futures)  # no chunk is still being read once this returns
    for f in futures:
        f.result()  # a worker's error, raised here
    return states


def _room(t: torch.Tensor | Any, chunk_elems: int) -> int:
    """The longest chunk ``map_chunks`` hands a state: a quantized weight's chunks are whole
    rows, so one row at least."""
    return chunk_elems if isinstance(t, torch.Tensor) else max(chunk_elems, t.cols)


def _check(cancel: CancelCheck | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def drain(steps: Generator[Any, None, R]) -> R:
    """Run a generator that reports progress to its end and return its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def broadcast_dims(t: torch.Tensor) -> tuple[int, ...]:
    """The dimensions along which ``t`` repeats itself (stride 0, size above 1)."""
    if t.layout != torch.strided:
        return ()
    return tuple(d for d, (n, s) in enumerate(zip(t.shape, t.stride())) if s == 0 and n > 1)


def compact(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t`` with each broadcast dimension cut to size 1, and how many times every element of
    that view repeats in ``t``. Statistics, histograms and differences of ``t`` follow exactly
    from the compact view, so a 10**12-element broadcast view costs what its storage holds.
    Raises ``CorruptError`` for views that overlap their storage beyond reason."""
    dims = broadcast_dims(t)
    view, repeat = t, 1
    if dims:
        view = t[tuple(slice(0, 1) if d in dims else slice(None) for d in range(t.dim()))]
        # A size-1 dimension never steps, so its stride is free: 1 keeps byte views possible.
        strides = [1 if d in dims else s for d, s in enumerate(view.stride())]
        view = view.as_strided(view.shape, strides, view.storage_offset())
        for d in dims:
            repeat *= t.shape[d]
    if t.layout == torch.strided and not t.is_quantized and view.numel() > (1 << 20):
        held = t.untyped_storage().nbytes() // max(t.element_size(), 1)
        if view.numel() > MAX_OVERLAP * held:
            raise CorruptError(
                f"a view of {t.numel():,} elements over a storage of {held:,} "
                "overlaps itself; not read"
            )
    return view, repeat


def paired_chunks(
    a: torch.Tensor, b: torch.Tensor, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Aligned 1-D pieces of two same-shaped tensors: element i of one piece of ``a`` sits at the
    same index as element i of the matching piece of ``b``. Views where both layouts allow,
    otherwise chunk-sized copies; never a copy of a whole tensor (quantized tensors aside)."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a = a.dequantize() if a.is_quantized else a
    b = b.dequantize() if b.is_quantized else b
    flat = _aligned_flat(a, b)
    if flat is not None:
        fa, fb = flat
        for start in range(0, fa.numel(), chunk_elems):
            yield fa[start : start + chunk_elems], fb[start : start + chunk_elems]
        return
    for pa, pb in zip(row_pieces(a, chunk_elems), row_pieces(b, chunk_elems)):
        yield pa.reshape(-1), pb.reshape(-1)


def paired_rows(
    a: torch.Tensor | Any, b: torch.Tensor | Any, chunk_elems: int = DEFAULT_CHUNK_ELEMS
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``paired_chunks`` where one side (or both) is a quantized weight's ``LogicalTensor``:
    the same row blocks of both, 1-D, the logical side dequantized block by block."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    lazy: Any = a if not isinstance(a, torch.Tensor) else b
    for start, stop in lazy.row_blocks(max(chunk_elems, lazy.cols)):
        yield _row_block(a, start, stop), _row_block(b, start, stop)


def _row_block(t: torch.Tensor | Any, start: int, stop: int) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        return t.block(start, stop).reshape(-1)
    rows = t.reshape(-1, t.shape[-1]) if t.dim() else t.reshape(1, 1)
    return rows[start:stop].reshape(-1)


def _aligned_flat(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    if a.is_contiguous() and b.is_contiguous():
        return a.reshape(-1), b.reshape(-1)
    if a.stride() == b.stride():  # the same permuted layout (a transposed weight): one order
        order = sorted(range(a.dim()), key=lambda d: a.stride(d), reverse=True)
        pa, pb = a.permute(order), b.permute(order)
        if pa.is_contiguous() and pb.is_contiguous():
            return pa.reshape(-1), pb.reshape(-1)
    return None
