"""The checkpoints of one run while it is measured: opened only when something must be read
from them, with the cache units (checkpoint, pair, triple) of what they hold."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.run.cache import RunCache
from ckpt_gui.core.run.kernel import PairSums, PointSums
from ckpt_gui.core.run.manifest import Manifest, manifest_of
from ckpt_gui.core.run.members import identity
from ckpt_gui.core.run.series import PointStats
from ckpt_gui.core.tree import Node

Pair = tuple[int, int]
Triple = tuple[int, int, int]
# Formats whose tensors ``open_checkpoint`` maps from the file rather than reads into memory.
MAPPED_FORMATS = frozenset({"torch-zip", "safetensors", "safetensors-sharded", "torch-sharded"})


class Unit:
    """One cache unit: its data as read from the cache (or empty), and whether it changed."""

    def __init__(self, cache: RunCache, kind: str, ident: list[Any]) -> None:
        self.cache, self.kind, self.ident = cache, kind, ident
        self.data = cache.load(kind, ident)
        self.dirty = False

    def table(self, name: str) -> dict[str, Any]:
        table = self.data.get(name)
        if not isinstance(table, dict):
            table = self.data[name] = {}
        return table

    def put(self, name: str, key: str, value: Any) -> None:
        self.table(name)[key] = value
        self.dirty = True

    def flush(self) -> None:
        if self.dirty:
            self.cache.store(self.kind, self.ident, self.data)
            self.dirty = False


class RunSession:
    """The run's checkpoints (in the order given until ``reorder``), their cache units, and
    those opened so far. ``close`` writes what changed and closes what was opened."""

    def __init__(self, paths: list[Path], cache: RunCache, trust: bool) -> None:
        self.paths, self.cache, self.trust = paths, cache, trust
        # A trusted load can read a file differently from the safe views: its own units.
        self.ids = [[*identity(p), "trusted"] if trust else identity(p) for p in paths]
        self.units = [Unit(cache, "checkpoint", [ident]) for ident in self.ids]
        self.opened: dict[int, Checkpoint] = {}
        self._pairs: dict[Pair, Unit] = {}
        self._triples: dict[Triple, Unit] = {}

    def reorder(self, perm: list[int]) -> None:
        """Put the checkpoints in run order: index i becomes the old ``perm[i]``."""
        self.paths = [self.paths[i] for i in perm]
        self.ids = [self.ids[i] for i in perm]
        self.units = [self.units[i] for i in perm]
        self.opened = {perm.index(i): c for i, c in self.opened.items()}

    def checkpoint(self, i: int) -> Checkpoint:
        if i not in self.opened:
            path = self.paths[i]
            try:
                self.opened[i] = open_checkpoint(path, trust=self.trust)
            except CheckpointError as exc:
                text = str(exc)
                if str(path) not in text:
                    raise type(exc)(f"{path}: {text}") from None
                raise
        return self.opened[i]

    def manifest(self, i: int) -> Manifest:
        """Checkpoint i's manifest, from the cache or (opening it) from the file."""
        unit = self.units[i]
        data = unit.data.get("manifest")
        if data is not None:
            try:
                return Manifest.from_json(data)
            except (ValueError, TypeError, KeyError, AttributeError):
                unit.data = {}  # a damaged entry: everything in it is measured again
        manifest = manifest_of(self.checkpoint(i))
        unit.data["manifest"] = manifest.to_json()
        unit.dirty = True
        return manifest

    def mapped(self, i: int) -> bool:
        """Whether checkpoint i's tensors are views of memory-mapped files (torch.save zip
        files and safetensors, also sharded or inside a folder), not copies in memory."""
        return self.checkpoint(i).format in MAPPED_FORMATS

    def node(self, i: int, key: str) -> Node:
        node = self.checkpoint(i).find(key)
        if node is None or node.tensor is None:
            raise CheckpointError(f"{self.paths[i]}: no tensor {key!r}")
        return node

    def pair(self, p: Pair) -> Unit:
        if p not in self._pairs:
            self._pairs[p] = Unit(self.cache, "pair", [self.ids[p[0]], self.ids[p[1]]])
        return self._pairs[p]

    def triple(self, t: Triple) -> Unit:
        if t not in self._triples:
            ident = [self.ids[t[0]], self.ids[t[1]], self.ids[t[2]]]
            self._triples[t] = Unit(self.cache, "triple", ident)
        return self._triples[t]

    # -- measured figures, as the cache keeps them -------------------------------------------

    def point(self, i: int, key: str) -> PointStats | None:
        return point_from_json(self.units[i].table("stats").get(key))

    def put_point(self, i: int, key: str, p: PointStats) -> None:
        self.units[i].put("stats", key, point_to_json(p))

    def pair_sums(self, p: Pair, keys: tuple[str, str]) -> PairSums | None:
        entry = _lookup(self.pair(p).table("sums"), keys)
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        sq, same = entry
        return PairSums(float(sq), same) if _is_float(sq) and isinstance(same, bool) else None

    def put_pair_sums(self, p: Pair, keys: tuple[str, str], sums: PairSums) -> None:
        unit = self.pair(p)
        _store(unit.table("sums"), keys, [sums.sq, sums.identical])
        unit.dirty = True

    def dot(self, t: Triple, keys: tuple[str, str, str]) -> float | None:
        value = _lookup(self.triple(t).table("dots"), keys)
        return float(value) if isinstance(value, (int, float)) and _is_float(value) else None

    def put_dot(self, t: Triple, keys: tuple[str, str, str], value: float) -> None:
        unit = self.triple(t)
        _store(unit.table("dots"), keys, value)
        unit.dirty = True

    def close(self) -> None:
        try:
            for unit in [*self.units, *self._pairs.values(), *self._triples.values()]:
                unit.flush()
        finally:
            for ckpt in self.opened.values():
                ckpt.close()


def _lookup(table: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """``table[k0][k1]...``: a pair's or a triple's entry is found by each checkpoint's key."""
    entry: Any = table
    for key in keys:
        if not isinstance(entry, dict):
            return None
        entry = entry.get(key)
    return entry


def _store(table: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        inner = table.get(key)
        if not isinstance(inner, dict):
            inner = table[key] = {}
        table = inner
    table[keys[-1]] = value


def point_of(sums: PointSums) -> PointStats:
    """A checkpoint's figures for a tensor: the norm is NaN with a NaN, inf with an infinity
    (``min``, ``max`` and ``std`` are over the finite values)."""
    norm = math.nan if sums.nan else math.inf if sums.inf else sums.l2
    return PointStats(
        numel=sums.n + sums.nan + sums.inf,
        norm=norm,
        min=_float(sums.min),
        max=_float(sums.max),
        std=sums.std,
        nan=sums.nan,
        inf=sums.inf,
    )


def point_to_json(p: PointStats) -> list[Any]:
    return [p.numel, p.norm, p.min, p.max, p.std, p.nan, p.inf]


def point_from_json(entry: Any) -> PointStats | None:
    """The figures ``point_to_json`` wrote, or ``None`` for anything else (a cache miss)."""
    if not isinstance(entry, list) or len(entry) != 7:
        return None
    numel, norm, lo, hi, std, nan, inf = entry
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (numel, nan, inf)):
        return None
    if not _is_float(norm) or not all(v is None or _is_float(v) for v in (lo, hi, std)):
        return None
    return PointStats(numel, float(norm), _float(lo), _float(hi), _float(std), nan, inf)


def _is_float(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)
