"""Training runs: a folder (or list) of checkpoints, and how every tensor moved across it.

``iter_trajectory`` is the generator the CLI drains and the window's worker runs; see its
docstring for the events. Key matching is ``diff``'s; statistics are ``stats``'s; the
differences between checkpoints are summed by ``run.kernel`` and kept by ``run.cache``.
"""

from __future__ import annotations

from ckpt_gui.core.run.cache import RunCache, default_cache_dir
from ckpt_gui.core.run.events import (
    RunOpened,
    Trajectory,
    TrajectoryEvent,
    TrajectoryFailed,
    TrajectoryResult,
)
from ckpt_gui.core.run.members import (
    ORDER_MODES,
    RunCheckpoint,
    RunError,
    order_run,
    run_paths,
)
from ckpt_gui.core.run.series import (
    EXPLODING_RATIO,
    FLAGS,
    VANISHING_RATIO,
    OptimizerSeries,
    PointStats,
    TensorTrajectory,
)
from ckpt_gui.core.run.trajectory import compute_trajectory, iter_trajectory
from ckpt_gui.core.stats import Progress

__all__ = [
    "EXPLODING_RATIO",
    "FLAGS",
    "ORDER_MODES",
    "VANISHING_RATIO",
    "OptimizerSeries",
    "PointStats",
    "Progress",
    "RunCache",
    "RunCheckpoint",
    "RunError",
    "RunOpened",
    "TensorTrajectory",
    "Trajectory",
    "TrajectoryEvent",
    "TrajectoryFailed",
    "TrajectoryResult",
    "default_cache_dir",
    "iter_trajectory",
    "order_run",
    "run_paths",
    "compute_trajectory",
]
