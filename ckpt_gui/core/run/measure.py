"""What the cache lacks for one tensor of a run, measuring it (``run.kernel``), and the
tensor's figures across the run put together from its cache units."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import torch

from ckpt_gui.core.chunks import CancelCheck
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.run.events import Trajectory, TrajectoryEvent, TrajectoryFailed
from ckpt_gui.core.run.kernel import PairSums, TensorSums, measure_tensor
from ckpt_gui.core.run.series import PointStats, TensorTrajectory, build_trajectory
from ckpt_gui.core.run.session import Pair, RunSession, Triple, point_of
from ckpt_gui.core.stats import Progress

# Copies of one tensor that a format reads into memory (not memory-mapped) are measured all in
# one pass only up to this many bytes together; beyond, step by step (``measure``).
WHOLE_PASS_BYTES = 256 << 20


@dataclass
class TensorPlan:
    """One tensor to follow: its key in each checkpoint (``None``: absent or another shape),
    its figures per checkpoint so far, and what the cache lacks."""

    key: str
    shape: tuple[int, ...]
    dtype: str
    role: str
    keys: list[str | None]
    nbytes: list[int]
    points: list[PointStats | None] = field(default_factory=list)
    stats: list[int] = field(default_factory=list)  # checkpoints to measure
    pairs: list[Pair] = field(default_factory=list)  # pairs to measure
    triples: list[Triple] = field(default_factory=list)
    found_pairs: dict[Pair, PairSums] = field(default_factory=dict)  # cached or measured
    found_dots: dict[Triple, float] = field(default_factory=dict)

    def key_in(self, i: int) -> str:
        key = self.keys[i]
        assert key is not None, "only checkpoints that hold the tensor are measured"
        return key

    def pair_keys(self, p: Pair) -> tuple[str, str]:
        a, b = self.keys[p[0]], self.keys[p[1]]
        assert a is not None and b is not None
        return a, b

    def triple_keys(self, t: Triple) -> tuple[str, str, str]:
        a, b, c = (self.keys[i] for i in t)
        assert a is not None and b is not None and c is not None
        return a, b, c

    def members(self) -> set[int]:
        """The checkpoints whose copy the missing units read."""
        pairs = {i for p in self.pairs for i in p} | {i for t in self.triples for i in t}
        return pairs | set(self.stats)

    def to_read(self) -> int:
        """Bytes the missing units read: each copy once, in one pass."""
        return sum(self.nbytes[i] for i in self.members())


class ProgressCounter:
    """Bytes read so far of the run's total, and whether a ``Progress`` event is due."""

    def __init__(self, total: int, step: int) -> None:
        self.total, self.step, self.done, self.reported = total, step, 0, 0

    def event(self, key: str | None = None) -> Progress:
        self.reported = self.done
        return Progress(self.done, self.total, key)

    def due(self) -> bool:
        return self.done - self.reported >= self.step


def find_missing(run: RunSession, t: TensorPlan) -> None:
    """Read ``t``'s units from the cache and list what is missing. Pairs and triples only for
    model tensors: from the first checkpoint, between consecutive ones, consecutive updates."""
    n = len(t.keys)
    t.points = [None] * n
    for i, key in enumerate(t.keys):
        if key is not None:
            t.points[i] = run.point(i, key)
            if t.points[i] is None:
                t.stats.append(i)
    if t.role == "optimizer_state":
        return
    present = [k is not None for k in t.keys]
    pairs = {(0, i) for i in range(1, n)} | {(i - 1, i) for i in range(1, n)}
    for p in sorted(pairs):
        if present[p[0]] and present[p[1]]:
            sums = run.pair_sums(p, t.pair_keys(p))
            if sums is None:
                t.pairs.append(p)
            else:
                t.found_pairs[p] = sums
    for i in range(2, n):
        tr = (i - 2, i - 1, i)
        if all(present[j] for j in tr):
            dot = run.dot(tr, t.triple_keys(tr))
            if dot is None:
                t.triples.append(tr)
            else:
                t.found_dots[tr] = dot


def measure(
    run: RunSession,
    t: TensorPlan,
    computed: dict[str, set[Any]],
    report: Trajectory,
    chunk_elems: int,
    cancel: CancelCheck | None,
    progress: ProgressCounter,
) -> Generator[TrajectoryEvent, None, None]:
    """Measure what the cache lacks for ``t`` (``run.kernel``): the missing checkpoints'
    figures, pairs and triples. Memory-mapped copies go through one pass all together (each
    chunk of each file read once); copies a format reads into memory (legacy torch files, DCP)
    go step by step, at most four alive at once (the first, the checkpoint and the two before
    it), when all of them together would pass ``WHOLE_PASS_BYTES``. Results go to the cache."""
    members = t.members()
    if not members:
        return
    groups: list[tuple[set[int], list[int], list[Pair], list[Triple]]] = []
    if all(run.mapped(i) for i in members) or sum(t.nbytes[i] for i in members) <= WHOLE_PASS_BYTES:
        groups.append((members, t.stats, t.pairs, t.triples))
    else:
        for s in sorted(members):  # the units that end at checkpoint s
            pairs = [p for p in t.pairs if p[1] == s]
            triples = [tr for tr in t.triples if tr[2] == s]
            needed = {s}.union(*pairs, *triples)
            groups.append((needed, [s] if s in t.stats else [], pairs, triples))
    tensors: dict[int, torch.Tensor] = {}
    failed: set[int] = set()
    for needed, stats, pairs, triples in groups:
        for i in list(tensors):
            if i not in needed:
                del tensors[i]  # no longer needed: its memory goes before the next copy's
        for i in needed:
            if i not in tensors and i not in failed:
                try:
                    tensors[i] = run.node(i, t.key_in(i)).load()
                except CheckpointError as exc:
                    failed.add(i)
                    yield _failure(report, t.key, run, i, str(exc))
        units = (
            [i for i in stats if i not in failed],
            [p for p in pairs if not failed & set(p)],
            [tr for tr in triples if not failed & set(tr)],
        )
        present = {i: x for i, x in tensors.items() if i in needed}
        yield from _pass(run, t, present, units, computed, chunk_elems, cancel, progress)


def _pass(
    run: RunSession,
    t: TensorPlan,
    tensors: dict[int, torch.Tensor],
    units: tuple[list[int], list[Pair], list[Triple]],
    computed: dict[str, set[Any]],
    chunk_elems: int,
    cancel: CancelCheck | None,
    progress: ProgressCounter,
) -> Generator[TrajectoryEvent, None, None]:
    """One ``measure_tensor`` pass, its progress, and its results stored."""
    width = sum(x.element_size() for x in tensors.values())
    start = progress.done
    steps = measure_tensor(tensors, *units, chunk_elems=chunk_elems, cancel=cancel)
    try:
        while True:
            try:
                elems = next(steps)
            except StopIteration as stop:
                sums: TensorSums = stop.value
                break
            progress.done = start + elems * width
            if progress.due():
                yield progress.event(t.key)
    finally:
        steps.close()
    for i, sums_i in sums.points.items():
        point = t.points[i] = point_of(sums_i)
        run.put_point(i, t.key_in(i), point)
        computed["checkpoints"].add(i)
    for p, pair in sums.pairs.items():
        t.found_pairs[p] = pair
        run.put_pair_sums(p, t.pair_keys(p), pair)
        computed["pairs"].add(p)
    for tr, value in sums.dots.items():
        t.found_dots[tr] = value
        run.put_dot(tr, t.triple_keys(tr), value)
        computed["triples"].add(tr)
    progress.done = start + sum(t.nbytes[i] for i in tensors)


def _failure(
    report: Trajectory, key: str, run: RunSession, i: int, message: str
) -> TrajectoryFailed:
    failure = TrajectoryFailed(key, str(run.paths[i]), message)
    report.failed.append(failure)
    return failure


def assemble(t: TensorPlan) -> TensorTrajectory:
    """``t``'s figures across the run from its units (cached or measured): a pair or triple
    counts only where each checkpoint in it was measured."""
    present = [k is not None and t.points[i] is not None for i, k in enumerate(t.keys)]
    pairs = {p: s for p, s in t.found_pairs.items() if present[p[0]] and present[p[1]]}
    dots = {tr: d for tr, d in t.found_dots.items() if all(present[j] for j in tr)}
    keys = [k if present[i] else None for i, k in enumerate(t.keys)]
    return build_trajectory(t.key, t.shape, t.dtype, t.role, keys, t.points, pairs, dots)
