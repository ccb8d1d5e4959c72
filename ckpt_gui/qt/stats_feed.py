"""Adapts the core's ``iter_stats`` event stream to what the tree model wants: (node, stats) pairs
and a byte-based progress figure. Qt-free; runs on the statistics worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ckpt_gui.core.stats import Progress, StatsFailed, StatsResult, iter_stats
from ckpt_gui.core.tree import Node


@dataclass(frozen=True)
class NodeStats:
    node: Node
    stats: Any


@dataclass(frozen=True)
class NodeFailed:
    node: Node
    message: str


def stats_events(nodes: list[Node], cancel: Callable[[], bool]) -> Iterator[Any]:
    """``iter_stats`` over ``nodes`` with results mapped back to their nodes (keys can repeat
    across files but not within one tree, so the first node with a key wins)."""
    by_key: dict[str, Node] = {}
    for node in nodes:
        by_key.setdefault(node.key, node)
    for event in iter_stats(nodes, cancel=cancel):
        if isinstance(event, StatsResult):
            found = by_key.get(event.key)
            if found is not None:
                yield NodeStats(found, event.stats)
        elif isinstance(event, StatsFailed):
            found = by_key.get(event.key)
            if found is not None:
                yield NodeFailed(found, event.message)
        else:
            yield event


def split_events(
    batch: list[Any],
) -> tuple[list[tuple[Node, Any]], Progress | None, list[NodeFailed]]:
    """A batch of events as (results, the latest progress, failures)."""
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
