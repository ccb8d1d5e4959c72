"""``iter_trajectory``: how every tensor moved across a training run, streamed tensor by tensor.

For each tensor of the first checkpoint (matched in the others as ``diff`` matches keys), one
chunked pass over all its copies (``run.kernel``) measures each copy and the differences from
the first checkpoint, between consecutive checkpoints and between consecutive updates. Only one
tensor's copies are read at a time, chunk by chunk, so memory stays bounded by a few chunk-sized
buffers whatever the run's size.

Everything measured is kept in the run cache (``run.cache``) per checkpoint, pair and triple of
checkpoints: a run opened again reads no checkpoint at all, and a checkpoint added to it costs
its own statistics and its differences with the first, the previous and the one before that.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from fnmatch import fnmatchcase
from typing import Any

from ckpt_gui.core.chunks import CancelCheck, drain
from ckpt_gui.core.diff.matching import match_leaves
from ckpt_gui.core.run.cache import RunCache, default_cache_dir
from ckpt_gui.core.run.events import (
    RunOpened,
    Trajectory,
    TrajectoryEvent,
    TrajectoryResult,
)
from ckpt_gui.core.run.kernel import KERNEL_CHUNK_ELEMS
from ckpt_gui.core.run.manifest import Manifest
from ckpt_gui.core.run.measure import (
    ProgressCounter,
    TensorPlan,
    assemble,
    find_missing,
    measure,
)
from ckpt_gui.core.run.members import order_run, run_paths
from ckpt_gui.core.run.series import OptimizerSeries, PointStats
from ckpt_gui.core.run.session import RunSession
from ckpt_gui.core.tree import dtype_from_name

# Progress events within one tensor's pass come about this often: a few per second.
DEFAULT_PROGRESS_BYTES = 64 << 20


def iter_trajectory(
    paths: Sequence[str | os.PathLike[str]],
    *,
    glob: str | None = None,
    cache: RunCache | bool = True,
    trust: bool = False,
    chunk_elems: int = KERNEL_CHUNK_ELEMS,
    cancel: CancelCheck | None = None,
    progress_bytes: int = DEFAULT_PROGRESS_BYTES,
) -> Generator[TrajectoryEvent, None, Trajectory]:
    """Follow every tensor of a run (``members.run_paths``: a folder of checkpoints, or a list
    of them) as a stream of events:

    - ``RunOpened(checkpoints, order_by, keys)`` once, first;
    - ``Progress(done_bytes, total_bytes, key)``: bytes read for what the cache lacks; first
      ``Progress(0, total)``, then about every ``progress_bytes`` and after each tensor;
    - ``TrajectoryResult(tensor)``: one per tensor of the first checkpoint whose key matches
      ``glob`` (all without one), in that checkpoint's order;
    - ``TrajectoryFailed(key, path, message)``: data that could not be read; the run goes on;
    - the ``Trajectory`` last, which is also the generator's return value.

    ``cache``: ``True`` for the user cache folder, ``False`` for none, or a ``RunCache``.
    Every yield is a cancel point (closing the generator keeps what was measured so far in
    the cache); ``cancel`` is also checked between chunks. A checkpoint that fails to open
    raises its ``CheckpointError``, whose message names it.
    """
    if isinstance(cache, RunCache):
        store = cache
    else:
        store = RunCache(default_cache_dir() if cache else None)
    run = RunSession(run_paths(paths), store, trust)
    try:
        manifests = [run.manifest(i) for i in range(len(run.paths))]
        order_by, perm, members = order_run(run.paths, [m.counters for m in manifests])
        run.reorder(perm)
        manifests = [manifests[i] for i in perm]
        tensors = _tensors(manifests, glob)
        report = Trajectory(list(members), order_by)
        yield RunOpened(tuple(members), order_by, tuple(t.key for t in tensors))
        optimizer = _optimizer_tensors(manifests, glob)
        for t in [*tensors, *optimizer]:
            find_missing(run, t)
        total = sum(t.to_read() for t in [*tensors, *optimizer])
        progress = ProgressCounter(total, progress_bytes)
        yield progress.event()
        computed: dict[str, set[Any]] = {"checkpoints": set(), "pairs": set(), "triples": set()}
        for t in tensors:
            yield from measure(run, t, computed, report, chunk_elems, cancel, progress)
            trajectory = assemble(t)
            report.tensors.append(trajectory)
            yield TrajectoryResult(trajectory)
            yield progress.event(t.key)
        for t in optimizer:
            yield from measure(run, t, computed, report, chunk_elems, cancel, progress)
        yield progress.event()
        report.values = _values(manifests)
        report.optimizer = [OptimizerSeries(t.key, _norms(t.points)) for t in optimizer]
        report.opened = sorted(run.opened)
        report.computed = {k: sorted(v) for k, v in computed.items()}
        yield report
        return report
    finally:
        run.close()


def _tensors(manifests: list[Manifest], glob: str | None) -> list[TensorPlan]:
    """The first checkpoint's tensors, found in every other by ``diff``'s key matching (a
    bare state_dict against a training checkpoint's ``model_state_dict.``, ...)."""
    first = manifests[0]
    nodes = first.tensor_nodes()
    n = len(manifests)
    out = [
        TensorPlan(e.key, e.shape, e.dtype, e.role, [e.key] + [None] * (n - 1), [0] * n)
        for e in first.tensors
        if glob is None or fnmatchcase(e.key, glob)
    ]
    index = {t.key: t for t in out}
    for i, manifest in enumerate(manifests):
        entries = {e.key: e for e in manifest.tensors}
        if i > 0:
            matching = match_leaves(
                nodes, manifest.tensor_nodes(), "auto", first.models, manifest.models
            )
            for a, b in matching.pairs:
                t = index.get(a.key)
                if t is not None and entries[b.key].shape == t.shape:
                    t.keys[i] = b.key
        for t in out:
            key = t.keys[i]
            if key is not None:
                t.nbytes[i] = _nbytes(entries[key].dtype, entries[key].shape)
    return out


def _optimizer_tensors(manifests: list[Manifest], glob: str | None) -> list[TensorPlan]:
    """Optimizer-state tensors by series name (``linear1.weight.exp_avg_sq``), measured for
    their norm alone."""
    n = len(manifests)
    series: dict[str, TensorPlan] = {}
    for i, manifest in enumerate(manifests):
        for e in manifest.optimizer:
            if glob is not None and not fnmatchcase(e.series, glob):
                continue
            t = series.get(e.series)
            if t is None:
                t = series[e.series] = TensorPlan(
                    e.series, e.shape, e.dtype, "optimizer_state", [None] * n, [0] * n
                )
            if e.shape == t.shape:  # another shape: another parameter, absent here
                t.keys[i] = e.key
                t.nbytes[i] = _nbytes(e.dtype, e.shape)
    return list(series.values())


def _nbytes(dtype: str, shape: tuple[int, ...]) -> int:
    numel = 1
    for s in shape:
        numel *= s
    return numel * dtype_from_name(dtype).itemsize


def _values(manifests: list[Manifest]) -> dict[str, list[int | float | None]]:
    """Every numeric value found in any checkpoint, in first-seen order, per checkpoint."""
    keys: dict[str, None] = {}
    for manifest in manifests:
        keys.update(dict.fromkeys(manifest.values))
    return {k: [m.values.get(k) for m in manifests] for k in keys}


def _norms(points: list[PointStats | None]) -> list[float | None]:
    return [p.norm if p is not None else None for p in points]


def compute_trajectory(paths: Sequence[str | os.PathLike[str]], **options: Any) -> Trajectory:
    """``iter_trajectory`` run to the end: the ``Trajectory``."""
    return drain(iter_trajectory(paths, **options))
