"""The events of ``iter_trajectory`` and what it returns: the checkpoints in run order, each
tensor's figures as it is done, what could not be read, and the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ckpt_gui.core.run.members import RunCheckpoint
from ckpt_gui.core.run.series import OptimizerSeries, TensorTrajectory
from ckpt_gui.core.stats import Progress


@dataclass(frozen=True)
class RunOpened:
    """First event: the checkpoints in run order, how they were ordered (``"step"``,
    ``"epoch"``, ``"name"`` or ``"mtime"``) and the tensor keys that will follow, in order."""

    checkpoints: tuple[RunCheckpoint, ...]
    order_by: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class TrajectoryResult:
    """One tensor done: every figure across the run."""

    tensor: TensorTrajectory


@dataclass(frozen=True)
class TrajectoryFailed:
    """A tensor whose data could not be read in one checkpoint; its figures there stay
    ``None`` and the run goes on."""

    key: str
    path: str
    message: str


@dataclass
class Trajectory:
    """Everything ``iter_trajectory`` found. ``values``: every numeric value (loss, lr, epoch,
    global_step, ...) per checkpoint; ``optimizer``: optimizer-state norms per checkpoint.
    ``opened``: run indices of the checkpoints that had to be opened (none for a run read
    whole from the cache); ``computed``: what was measured rather than read from the cache
    (``checkpoints``: indices, ``pairs`` and ``triples``: tuples of indices)."""

    checkpoints: list[RunCheckpoint]
    order_by: str
    tensors: list[TensorTrajectory] = field(default_factory=list)
    values: dict[str, list[int | float | None]] = field(default_factory=dict)
    optimizer: list[OptimizerSeries] = field(default_factory=list)
    failed: list[TrajectoryFailed] = field(default_factory=list)
    opened: list[int] = field(default_factory=list)
    computed: dict[str, list[Any]] = field(default_factory=dict)


TrajectoryEvent = RunOpened | Progress | TrajectoryResult | TrajectoryFailed | Trajectory
