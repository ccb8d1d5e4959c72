"""The figures the run view offers per tensor and checkpoint, by name, read from a
``TensorTrajectory`` (Qt-free; the table, the heat map and the tests share it)."""

from __future__ import annotations

from ckpt_gui.core.run import TensorTrajectory

# name -> (title, the attribute holding one value per checkpoint)
METRICS: dict[str, tuple[str, str]] = {
    "rel_change_from_first": ("‖Wₜ−W₀‖/‖W₀‖", "rel_change_from_first"),
    "rel_update": ("‖Wₜ−Wₜ₋₁‖/‖Wₜ₋₁‖", "rel_update"),
    "norm": ("‖Wₜ‖", "norm"),
    "update_cosine": ("cos(updates)", "update_cosine"),
    "min": ("min", "min"),
    "max": ("max", "max"),
    "std": ("std", "std"),
    "nonfinite": ("NaN + Inf", ""),
}


def series(t: TensorTrajectory, metric: str) -> list[float | None]:
    """``metric`` of ``t`` per checkpoint; None where undefined."""
    if metric == "nonfinite":
        return [None if n is None or i is None else float(n + i) for n, i in zip(t.nan, t.inf)]
    values: list[float | None] = list(getattr(t, METRICS[metric][1]))
    return values


def pair_for_cell(metric: str, index: int, count: int) -> tuple[int, int]:
    """The two checkpoints a heat-map cell at ``index`` stands for: the first and this one for
    the change from the first, else the previous and this one (the first and second at 0)."""
    if count < 2:
        return 0, 0
    if metric == "rel_change_from_first":
        return 0, max(index, 1)
    return (index - 1, index) if index > 0 else (0, 1)
