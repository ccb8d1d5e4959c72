"""The work the window's views hand to workers, in one place: each function runs on a worker
thread (so never touches a widget), and each ``close_*`` cleans up a result that arrives once
nobody wants it (a ``discard`` of ``ckpt_gui.qt.workers``). Qt-free."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.diff import (
    DiffEvent,
    DiffReport,
    KeyMatch,
    LayerChange,
    iter_diff,
    layer_changes,
)
from ckpt_gui.core.diff.layers import by_block
from ckpt_gui.core.memory import freeze_heap, gc_paused, thaw_heap
from ckpt_gui.core.stats import Progress, StatsFailed, StatsResult, TensorStats, iter_stats
from ckpt_gui.core.tree import Node
from ckpt_gui.qt.errors import error_text
from ckpt_gui.qt.models.items import Item, build_items

# Past this many tensors, the tree, its rows and their statistics are kept out of the garbage
# collector's passes while the tab shows them (core.memory.freeze_heap): each full pass over a
# million objects would stall the window for a second or more.
FREEZE_TENSORS = 50_000


# --- opening ----------------------------------------------------------------------------------
def open_checkpoint(path: Path, trust: bool) -> Checkpoint:
    """The checkpoint alone (the export dialog's)."""
    from ckpt_gui.core.reader import open_checkpoint as open_path

    return open_path(path, trust=trust)


def close_checkpoint(result: object) -> None:
    if isinstance(result, Checkpoint):
        result.close()


def open_with_rows(path: Path, trust: bool) -> tuple[Checkpoint, Item, bool]:
    """The checkpoint, its tree's rows, and whether the heap was frozen for them (a big tree):
    a checkpoint tab's."""
    from ckpt_gui.core.reader import open_checkpoint as open_path

    with gc_paused():
        ckpt = open_path(path, trust=trust)
        try:
            # Counted here, on the worker, for the summary bar on the GUI thread.
            big = ckpt.totals().tensors > FREEZE_TENSORS
            # Quantized weights as logical tensors, their raw parts below them (core/quant).
            items = build_items(ckpt.view_root())
        except BaseException:
            ckpt.close()
            raise
        if big:
            # A big tree and its rows live as long as the tab: the collector need not walk
            # them again (thawed when the tab lets them go).
            freeze_heap()
    return ckpt, items, big


def close_with_rows(result: object) -> None:
    if isinstance(result, tuple) and result and isinstance(result[0], Checkpoint):
        result[0].close()
        if result[-1] is True:  # the worker froze the heap for it
            thaw_heap()


def open_pair(a: Path, b: Path, trust: bool = False) -> tuple[Checkpoint, Checkpoint]:
    """Both files of a comparison; A is closed again when B fails. ``trust``: ``--trust``."""
    from ckpt_gui.core.reader import open_checkpoint as open_path

    ckpt_a = open_path(a, trust=trust)
    try:
        return ckpt_a, open_path(b, trust=trust)
    except BaseException:
        ckpt_a.close()
        raise


def close_pair(result: object) -> None:
    if isinstance(result, tuple):
        for ckpt in result:
            if isinstance(ckpt, Checkpoint):
                ckpt.close()


def scan(path: Path) -> Any:
    """The scan report of any file, even one that failed to open (opcodes only)."""
    from ckpt_gui.core.safety.scan import scan_path

    return scan_path(path)


# --- comparing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffOutcome:
    """A finished comparison as the window shows it: the report, its change per layer (and
    grouped by block, as the chart draws more than ``max_bars`` of them) and its summary line.
    Each is a walk over every entry: worked out on the worker, not on the GUI thread."""

    report: DiffReport
    layers: list[LayerChange]
    grouped: list[LayerChange]
    summary: str


def diff_outcome(report: DiffReport, max_bars: int) -> DiffOutcome:
    layers = layer_changes(report.entries)
    return DiffOutcome(report, layers, by_block(list(layers), max_bars), report.summary())


def diff_pair(
    ckpt_a: Checkpoint,
    ckpt_b: Checkpoint,
    match: str | KeyMatch,
    cancel: Callable[[], bool],
    max_bars: int,
) -> Generator[DiffEvent, None, DiffOutcome]:
    """``iter_diff``'s events, then the ``DiffOutcome``. The cyclic collector is kept out of
    the way meanwhile: comparing thousands of small tensors allocates in bursts that set off
    full collections, each walking both trees and all of torch with every thread waiting (a
    third of a second, the window frozen); what the diff makes is freed by reference counting
    or kept (its entries)."""
    with gc_paused():
        report = yield from iter_diff(ckpt_a, ckpt_b, match=match, cancel=cancel)
    return diff_outcome(report, max_bars)


# --- statistics -------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeStats:
    node: Node
    stats: Any


@dataclass(frozen=True)
class NodeFailed:
    node: Node
    message: str


def stats_events(nodes: list[Node], cancel: Callable[[], bool]) -> Iterator[Any]:
    """``iter_stats`` over ``nodes`` with results mapped back to their nodes. ``iter_stats``
    gives one result (or failure) per tensor node, in the order given, so results are matched
    by position: a quantized weight's logical tensor can share its key with a raw part."""
    measured = iter(n for n in nodes if n.tensor is not None)
    for event in iter_stats(nodes, cancel=cancel):
        if isinstance(event, StatsResult):
            node = next(measured)
            assert node.key == event.key
            yield NodeStats(node, event.stats)
        elif isinstance(event, StatsFailed):
            node = next(measured)
            assert node.key == event.key
            yield NodeFailed(node, event.message)
        else:
            yield event


def split_stats_events(
    batch: list[Any],
) -> tuple[list[tuple[Node, Any]], Progress | None, list[NodeFailed]]:
    """A batch of ``stats_events`` as (results, the latest progress, failures): on the GUI
    thread, for the tree model."""
    pairs: list[tuple[Node, Any]] = []
    failures: list[NodeFailed] = []
    progress: Progress | None = None
    for event in batch:
        if isinstance(event, NodeStats):
            pairs.append((event.node, event.stats))
        elif isinstance(event, NodeFailed):
            failures.append(event)
        elif isinstance(event, Progress):
            progress = event
    return pairs, progress, failures


# --- histograms -------------------------------------------------------------------------------
def histogram_events(
    nodes: list[Node],
    bins: int,
    exact: bool,
    cancel: Callable[[], bool],
    stats: Mapping[Node, TensorStats | None] | None = None,
) -> Iterator[tuple[Node, Any]]:
    """(node, Histogram or error message) for each node. A node's ``stats`` give the exact
    histogram its range, which spares it a pass over the tensor."""
    from ckpt_gui.core.histogram import histogram

    for node in nodes:
        if cancel():
            return
        known = stats.get(node) if stats is not None and exact else None
        try:
            fetch = node.tensor.fetch if node.tensor is not None else None
            for _ in fetch() if fetch is not None else ():  # a remote tensor's bytes, in steps
                if cancel():
                    return
            # A quantized weight's logical tensor is read dequantized, in row blocks.
            data = node.tensor.quant if node.tensor is not None else None
            data = data if data is not None else node.load()
            yield node, histogram(data, bins=bins, exact=exact, stats=known)
        except Exception as exc:  # noqa: BLE001 - one unreadable tensor must not end the others
            yield node, error_text(exc)[0]
