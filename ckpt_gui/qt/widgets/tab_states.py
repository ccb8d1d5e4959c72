"""The states of a checkpoint tab (``CheckpointView.state``): opening, failed to open, filling
in statistics, ready, and opening cancelled."""

LOADING, FAILED, STATS, READY, CANCELLED = "loading", "failed", "stats", "ready", "cancelled"
