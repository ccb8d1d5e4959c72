"""Compare two checkpoints: ``iter_diff`` streams per-key results and ends with a ``DiffReport``.

Every leaf (tensor or plain value) falls in one category: only in A, only in B, shape mismatch,
dtype mismatch, identical (bit for bit) or changed. Tensors with a dtype mismatch but the same
shape are still compared, in a common wider dtype, and carry metrics like changed ones. A changed
tensor whose every element satisfies |a−b| <= atol + rtol·|b| is "within tolerance": still listed
as changed, but it does not make the two files differ (``DiffReport.equal``).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.chunks import drain
from ckpt_gui.core.diff.matching import KeyMatch, match_checkpoints
from ckpt_gui.core.diff.metrics import DEFAULT_CHUNK_ELEMS, CancelCheck, TensorDiff, diff_steps
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.stats import Progress
from ckpt_gui.core.tree import Node

ONLY_A, ONLY_B = "only_a", "only_b"
SHAPE, DTYPE = "shape_mismatch", "dtype_mismatch"
IDENTICAL, CHANGED = "identical", "changed"
CATEGORIES = (ONLY_A, ONLY_B, SHAPE, DTYPE, CHANGED, IDENTICAL)
CATEGORY_TITLES = {
    ONLY_A: "only in A",
    ONLY_B: "only in B",
    SHAPE: "shape mismatch",
    DTYPE: "dtype mismatch",
    CHANGED: "changed",
    IDENTICAL: "identical",
}


@dataclass
class DiffEntry:
    """One key of the comparison. ``key`` is A's key (B's for a key only in B); ``name`` is the
    key with the matching's wrapper prefix removed, the same on both sides."""

    key: str
    name: str
    category: str
    kind: str  # "tensor" | "value"
    key_b: str | None = None
    role: str = "other"
    dtype_a: str | None = None
    dtype_b: str | None = None
    shape_a: tuple[int, ...] | None = None
    shape_b: tuple[int, ...] | None = None
    metrics: TensorDiff | None = None
    value_a: Any = None
    value_b: Any = None
    node_a: Node | None = field(default=None, repr=False, compare=False)
    node_b: Node | None = field(default=None, repr=False, compare=False)

    @property
    def within_tolerance(self) -> bool:
        """Identical, or changed by no more than the tolerance (never for mismatches)."""
        if self.category == IDENTICAL:
            return True
        return (
            self.category == CHANGED and self.metrics is not None and self.metrics.within_tolerance
        )

    @property
    def rel_l2(self) -> float | None:
        return self.metrics.rel_l2 if self.metrics is not None else None

    @property
    def nbytes(self) -> int:
        """Bytes read to compare this entry (both sides)."""
        total = 0
        for node in (self.node_a, self.node_b):
            if node is not None and node.tensor is not None:
                total += node.tensor.nbytes
        return total


@dataclass(frozen=True)
class MatchFound:
    """First event: how keys were aligned and how many leaves each category starts with."""

    match: KeyMatch
    pairs: int
    only_a: int
    only_b: int


@dataclass(frozen=True)
class DiffResult:
    """One finished key."""

    entry: DiffEntry


@dataclass(frozen=True)
class DiffFailed:
    """A tensor whose data could not be read (a ``CheckpointError``); the diff goes on."""

    key: str
    message: str


@dataclass
class DiffReport:
    """Everything ``iter_diff`` found, in A's order (then B's keys only in B)."""

    path_a: str
    path_b: str
    match: KeyMatch
    atol: float = 0.0
    rtol: float = 0.0
    entries: list[DiffEntry] = field(default_factory=list)
    failed: list[DiffFailed] = field(default_factory=list)

    def of(self, category: str, kind: str | None = "tensor") -> list[DiffEntry]:
        return [
            e for e in self.entries if e.category == category and (kind is None or e.kind == kind)
        ]

    def counts(self, kind: str | None = "tensor") -> dict[str, int]:
        """Entries per category, every category present (0 when empty)."""
        out = dict.fromkeys(CATEGORIES, 0)
        for e in self.entries:
            if kind is None or e.kind == kind:
                out[e.category] += 1
        return out

    @property
    def equal(self) -> bool:
        """No key only on one side, no mismatch, every tensor identical or within tolerance,
        every value equal, and nothing that failed to read: diff(1)'s exit status 0."""
        return not self.failed and all(e.within_tolerance for e in self.entries)

    def largest_change(self) -> DiffEntry | None:
        """The compared tensor with the largest ‖A−B‖/‖A‖ (A all zeros counts as largest)."""
        best: DiffEntry | None = None
        best_rel = -1.0
        for e in self.entries:
            if e.metrics is None or e.category not in (CHANGED, DTYPE) or e.metrics.diff_l2 == 0:
                continue
            rel = e.metrics.rel_l2
            rel = math.inf if rel is None else rel
            if rel > best_rel:
                best, best_rel = e, rel
        return best

    def summary(self) -> str:
        """One line: how many tensors are identical, changed, missing, mismatched; the largest
        change."""
        return summary_line(self.counts(), self.largest_change(), self.of(CHANGED))


def summary_line(
    counts: dict[str, int], largest: DiffEntry | None, changed: Sequence[DiffEntry] = ()
) -> str:
    """The summary sentence shared by the CLI report and the window."""
    total = sum(counts.values())
    within = sum(1 for e in changed if e.within_tolerance and e.metrics is not None)
    parts = [f"{counts[IDENTICAL]} identical", f"{counts[CHANGED]} changed"]
    if within:
        parts[-1] += f" ({within} within tolerance)"
    missing = counts[ONLY_A] + counts[ONLY_B]
    if missing:
        parts.append(f"{counts[ONLY_A]} only in A, {counts[ONLY_B]} only in B")
    mismatched = counts[SHAPE] + counts[DTYPE]
    if mismatched:
        parts.append(f"{counts[SHAPE]} shape and {counts[DTYPE]} dtype mismatches")
    line = f"{total} tensors: " + ", ".join(parts)
    if largest is not None and largest.rel_l2 is not None:
        line += f"; largest change {largest.key} (‖A−B‖/‖A‖ = {largest.rel_l2:.3g})"
    elif largest is not None:
        line += f"; largest change {largest.key} (A is all zeros)"
    return line


# Progress events are yielded about this often within a tensor: a few per second on any machine.
DEFAULT_PROGRESS_BYTES = 64 << 20

DiffEvent = Progress | MatchFound | DiffResult | DiffFailed | DiffReport


def iter_diff(
    ckpt_a: Checkpoint,
    ckpt_b: Checkpoint,
    *,
    match: str | KeyMatch = "auto",
    atol: float = 0.0,
    rtol: float = 0.0,
    chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
    progress_bytes: int = DEFAULT_PROGRESS_BYTES,
) -> Generator[DiffEvent, None, DiffReport]:
    """Compare two opened checkpoints as a stream of events:

    - ``MatchFound(match, pairs, only_a, only_b)`` once, first;
    - ``DiffResult(entry)``: at once for keys on one side only, mismatched shapes and plain
      values, then one per compared tensor as soon as it is done, in A's order;
    - ``Progress(done_bytes, total_bytes, key)`` (the stats module's event): bytes read from both
      files, first ``Progress(0, total)``, then about every ``progress_bytes`` and after each
      tensor;
    - ``DiffFailed(key, message)``: a tensor that could not be read; the diff goes on;
    - the ``DiffReport`` last, which is also the generator's return value.

    Every yield is a cancel point; ``cancel`` is also checked between chunks (a true result
    raises ``Cancelled``).
    """
    if atol < 0 or rtol < 0:
        raise ValueError("atol and rtol must not be negative")
    matching = match_checkpoints(ckpt_a, ckpt_b, match)
    report = DiffReport(str(ckpt_a.path), str(ckpt_b.path), matching.match, atol, rtol)
    yield MatchFound(
        matching.match, len(matching.pairs), len(matching.only_a), len(matching.only_b)
    )
    entries: dict[int, DiffEntry] = {}
    pending: list[tuple[int, DiffEntry]] = []
    for i, (na, nb) in enumerate(matching.pairs):
        entry = _pair_entry(na, nb, matching.match)
        entries[i] = entry
        if entry.kind == "tensor" and entry.category in ("", DTYPE):  # to be compared
            pending.append((i, entry))
        else:
            yield DiffResult(entry)
    only = [_one_side(n, ONLY_A, matching.match) for n in matching.only_a]
    only_b = [_one_side(n, ONLY_B, matching.match) for n in matching.only_b]
    for entry in only + only_b:
        yield DiffResult(entry)
    total = sum(e.nbytes for _, e in pending)
    done = 0
    yield Progress(0, total)
    for i, entry in pending:
        nbytes = entry.nbytes
        try:
            assert entry.node_a is not None and entry.node_b is not None
            ta, tb = _source(entry.node_a), _source(entry.node_b)
        except CheckpointError as exc:
            failure = DiffFailed(entry.key, str(exc))
            report.failed.append(failure)
            del entries[i]
            done += nbytes
            yield failure
            yield Progress(done, total, entry.key)
            continue
        steps = diff_steps(ta, tb, atol=atol, rtol=rtol, chunk_elems=chunk_elems, cancel=cancel)
        numel, reported = max(ta.numel(), 1), 0
        while True:
            try:
                elems = next(steps)
            except StopIteration as stop:
                metrics: TensorDiff = stop.value
                break
            read = elems * nbytes // numel
            if read - reported >= progress_bytes:
                reported = read
                yield Progress(done + read, total, entry.key)
        del ta, tb, steps  # let the mappings go before the next pair
        entry.metrics = metrics
        if entry.category == "":
            entry.category = IDENTICAL if metrics.identical else CHANGED
        done += nbytes
        yield DiffResult(entry)
        yield Progress(done, total, entry.key)
    report.entries = [entries[i] for i in sorted(entries)] + only + only_b
    yield report
    return report


def _source(node: Node) -> Any:
    """What a tensor is compared through: its data, or a quantized weight's ``LogicalTensor``
    (dequantized block by block)."""
    assert node.tensor is not None
    return node.tensor.quant if node.tensor.quant is not None else node.load()


def diff_checkpoints(ckpt_a: Checkpoint, ckpt_b: Checkpoint, **options: Any) -> DiffReport:
    """``iter_diff`` run to the end: the ``DiffReport``."""
    return drain(iter_diff(ckpt_a, ckpt_b, **options))


def _pair_entry(na: Node, nb: Node, match: KeyMatch) -> DiffEntry:
    """The entry of a matched pair: final for values and shape mismatches, otherwise with an
    empty category (or DTYPE) to be completed by the comparison."""
    entry = DiffEntry(
        key=na.key,
        name=match.canonical_a(na.key),
        category="",
        kind="tensor" if na.kind == "tensor" and nb.kind == "tensor" else "value",
        key_b=nb.key,
        role=na.role if na.kind == "tensor" else "other",
        node_a=na,
        node_b=nb,
    )
    if entry.kind == "value":
        entry.value_a, entry.value_b = _value(na), _value(nb)
        entry.category = IDENTICAL if _values_equal(entry.value_a, entry.value_b) else CHANGED
        return entry
    assert na.tensor is not None and nb.tensor is not None
    entry.dtype_a, entry.dtype_b = na.tensor.dtype, nb.tensor.dtype
    entry.shape_a, entry.shape_b = na.tensor.shape, nb.tensor.shape
    if entry.shape_a != entry.shape_b:
        entry.category = SHAPE
    elif entry.dtype_a != entry.dtype_b:
        entry.category = DTYPE
    return entry


def _one_side(node: Node, category: str, match: KeyMatch) -> DiffEntry:
    canonical = match.canonical_a if category == ONLY_A else match.canonical_b
    entry = DiffEntry(
        key=node.key,
        name=canonical(node.key),
        category=category,
        kind="tensor" if node.kind == "tensor" else "value",
        role=node.role if node.kind == "tensor" else "other",
    )
    if category == ONLY_A:
        entry.node_a = node
    else:
        entry.node_b, entry.key_b = node, node.key
    if node.tensor is not None:
        if category == ONLY_A:
            entry.dtype_a, entry.shape_a = node.tensor.dtype, node.tensor.shape
        else:
            entry.dtype_b, entry.shape_b = node.tensor.dtype, node.tensor.shape
    elif category == ONLY_A:
        entry.value_a = node.value
    else:
        entry.value_b = node.value
    return entry


def _value(node: Node) -> Any:
    if node.tensor is not None:  # a tensor on one side, a plain value on the other
        return f"<tensor {node.tensor.dtype} {list(node.tensor.shape)}>"
    return node.value


def _values_equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - an odd __eq__ means "not provably equal"
        return False
