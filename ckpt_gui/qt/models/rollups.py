"""The roll-ups the tree shows on module and container rows: built from the rows below on first
request, then kept up to date as statistics arrive, a batch at a time, so that a module row over
half a million tensors is never summed again from scratch. Qt-free; ``CheckpointModel`` owns
one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ckpt_gui.core.rollup import COUNTER_NAMES, Rollup, combine, is_counter
from ckpt_gui.core.stats import TensorStats
from ckpt_gui.qt.models.items import Item

_UNKNOWN: Any = object()  # a roll-up not built yet
_COUNTER_ENDINGS = tuple(COUNTER_NAMES)


class RowRollups:
    """Roll-ups of container rows over ``stats`` (tensor row -> its statistics, which the
    owner fills and tells about through ``arrived`` and ``replaced``)."""

    def __init__(self, root: Item, stats: dict[Item, TensorStats]) -> None:
        self._root = root
        self._stats = stats
        self._rolled: dict[Item, Rollup | None] = {}  # built so far (None: nothing below yet)
        self._counts: dict[Item, bool] = {}  # tensor rows whose figures count in roll-ups
        self._mixes: dict[Item, bool] = {}  # container rows that mix state names

    def of(self, item: Item) -> Rollup | None:
        """The roll-up of the container row ``item`` (built from the rows below, then kept)."""
        if not item.tensors or not self._stats or self.mixes_state_names(item):
            return None  # a row mixing state names stays blank (see details_stats)
        if item not in self._rolled:
            parts = (self._part(c) for c in item.children if c.tensors)
            self._rolled[item] = combine(parts, _prefix(item))
        return self._rolled[item]

    def _part(self, item: Item) -> TensorStats | Rollup | None:
        if item.is_tensor:
            stats = self._stats.get(item)
            return stats if stats is not None and self.counts(item) else None
        return self.of(item)

    def counts(self, item: Item) -> bool:
        """Whether a tensor row's figures count in the roll-ups above it: integer and bool
        tensors (masks) and counters (Adam's float step, num_batches_tracked) would swamp a
        module's min and max."""
        counts = self._counts.get(item)
        if counts is None:
            node = item.node
            assert node is not None
            # The name test first: is_counter splits the name, and most names end otherwise.
            counter = node.name.endswith(_COUNTER_ENDINGS) and is_counter(node)
            # A quantized weight's raw parts (fp8 codes, scales) are figures of the weight
            # above them, which counts in their place.
            part = node.role == "quantization"
            counts = self._counts[item] = is_float(item) and not counter and not part
        return counts

    def mixes_state_names(self, item: Item) -> bool:
        """``mixes_state_names``, remembered per row (the tree never changes)."""
        mixes = self._mixes.get(item)
        if mixes is None:
            mixes = self._mixes[item] = mixes_state_names(item)
        return mixes

    def replaced(self, item: Item) -> Iterable[Item]:
        """A tensor row's statistics were replaced: the roll-ups above it are built again when
        next asked for. Yields the rows above (whose cells change)."""
        up = item.parent
        while up is not None:
            self._rolled.pop(up, None)
            yield up
            up = up.parent

    def arrived(self, parent: Item, many: list[TensorStats]) -> Iterable[Item]:
        """First statistics for tensor rows under ``parent`` (rows that count, ``counts``):
        every roll-up built above takes them in at once. Yields the rows whose roll-up
        changed."""
        batch = Rollup("")
        batch.add_all(many)
        up: Item | None = parent
        while up is not None:
            cached = self._rolled.get(up, _UNKNOWN)
            if cached is None:  # no figures below it before these
                cached = self._rolled[up] = Rollup(_prefix(up))
            if cached is not _UNKNOWN:
                cached.absorb(batch)
            yield up
            if self.mixes_state_names(up):  # passes nothing up (see _part)
                return
            up = up.parent

    def clear(self) -> None:
        self._rolled.clear()
        self._counts.clear()
        self._mixes.clear()


def _prefix(item: Item) -> str:
    return f"{item.key}." if item.key else ""


def mixes_state_names(item: Item) -> bool:
    """An optimizer, its ``state``, or one parameter's state: rows whose tensors are different
    quantities (exp_avg next to exp_avg_sq) that no single roll-up describes."""
    node = item.node
    if node is None or node.kind == "tensor":
        return False
    if node.label == "optimizer":
        return True
    while node.parent is not None:  # inside an optimizer's "state"?
        if node.parent.label == "optimizer":
            return node.name == "state"
        node = node.parent
    return False


def is_float(item: Item) -> bool:
    assert item.node is not None and item.node.tensor is not None
    return item.node.tensor.dtype.startswith(("float", "bfloat", "complex"))
