"""A real training run for the trajectory tests: a small model trained with Adam between
``torch.save`` calls, saved the ways people save runs, and float64 references computed straight
from what ``torch.load`` reads back."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

EPOCHS = 5
STEPS_PER_EPOCH = 3
NAN_AT = 3  # the checkpoint whose hidden.bias holds a NaN
NAN_KEY = "hidden.bias"


class RunNet(nn.Module):
    """``embed`` is frozen (requires_grad False): Adam never moves it."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 8)
        self.hidden = nn.Linear(8, 8)
        self.norm = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 3)
        self.embed.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(torch.tanh(self.hidden(self.embed(x)))))


def train_states(epochs: int = EPOCHS, seed: int = 0) -> list[dict]:
    """What a training script would save after each epoch: the model's state_dict (cloned),
    the optimizer's, the epoch, the global step and the last loss. ``hidden.bias`` holds a NaN
    at epoch ``NAN_AT`` (in the saved copy only, as when one save caught a bad step)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = RunNet()
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        data = torch.randn(32, 6)
        target = torch.randn(32, 3)
        saved = []
        step = 0
        for epoch in range(epochs):
            for _ in range(STEPS_PER_EPOCH):
                opt.zero_grad()
                loss = (model(data) - target).pow(2).mean()
                loss.backward()
                opt.step()
                step += 1
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if epoch == NAN_AT:
                state[NAN_KEY][1] = math.nan
            saved.append(
                {
                    "model_state_dict": state,
                    "optimizer_state_dict": _clone(opt.state_dict()),
                    "epoch": epoch,
                    "global_step": step,
                    "loss": float(loss.detach()),
                }
            )
    return saved


def _clone(obj: object) -> object:
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clone(v) for v in obj]
    return obj


def save_all(
    folder: Path, states: Sequence[dict], name: Callable[[int, dict], str], what: str = "training"
) -> list[Path]:
    """Save each state as ``what``: ``training`` (the whole dict), ``bare`` (the model's
    state_dict alone) or ``lightning`` (Lightning's layout). Returns the paths in run order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, state in enumerate(states):
        path = folder / name(i, state)
        if what == "training":
            torch.save(state, path)
        elif what == "bare":
            torch.save(state["model_state_dict"], path)
        else:
            torch.save(lightning(state), path)
        paths.append(path)
    return paths


def lightning(state: dict) -> dict:
    return {
        "epoch": state["epoch"],
        "global_step": state["global_step"],
        "pytorch-lightning_version": "2.1.0",
        "state_dict": {"model." + k: v for k, v in state["model_state_dict"].items()},
        "optimizer_states": [state["optimizer_state_dict"]],
        "lr_schedulers": [],
    }


def set_mtimes(paths: Sequence[Path], start: float = 1_600_000_000.0) -> None:
    """Modification times one minute apart, in the order given."""
    for i, path in enumerate(paths):
        os.utime(path, (start + 60 * i, start + 60 * i))


# -- float64 references, straight from torch.load ---------------------------------------------


def load_model(path: Path) -> dict[str, torch.Tensor]:
    obj = torch.load(path, weights_only=True)
    if "model_state_dict" in obj:
        return obj["model_state_dict"]
    if "state_dict" in obj:
        return {k.removeprefix("model."): v for k, v in obj["state_dict"].items()}
    return obj


def reference(tensors: Sequence[torch.Tensor]) -> dict[str, list]:
    """Every figure of one tensor across a run, in float64, with the conventions of
    ``core.run.series``: NaN where a NaN or Inf makes a norm or difference meaningless,
    ``None`` where undefined."""
    w = [t.double() for t in tensors]
    finite = [bool(torch.isfinite(t).all()) for t in w]
    n = len(w)

    def norm(t: torch.Tensor) -> float:
        return float(torch.linalg.vector_norm(t))

    def dot(x: torch.Tensor, y: torch.Tensor) -> float:
        return float(x.flatten() @ y.flatten())

    out: dict[str, list] = {"norm": [], "rel_change_from_first": [], "rel_update": [None]}
    out["update_cosine"] = [None, None]
    for i in range(n):
        out["norm"].append(norm(w[i]) if finite[i] else math.nan)
        ok = finite[0] and finite[i]
        out["rel_change_from_first"].append(norm(w[i] - w[0]) / norm(w[0]) if ok else math.nan)
        if i >= 1:
            ok = finite[i - 1] and finite[i]
            out["rel_update"].append(norm(w[i] - w[i - 1]) / norm(w[i - 1]) if ok else math.nan)
        if i >= 2:
            if not (finite[i - 2] and finite[i - 1] and finite[i]):
                out["update_cosine"].append(math.nan)
                continue
            d1, d0 = w[i] - w[i - 1], w[i - 1] - w[i - 2]
            if norm(d1) == 0 or norm(d0) == 0:
                out["update_cosine"].append(None)
            else:
                out["update_cosine"].append(dot(d1, d0) / (norm(d1) * norm(d0)))
    fin = [t[torch.isfinite(t)] for t in w]
    out["min"] = [float(f.min()) for f in fin]
    out["max"] = [float(f.max()) for f in fin]
    out["std"] = [float(f.std()) if f.numel() > 1 else None for f in fin]
    out["nan"] = [int(torch.isnan(t).sum()) for t in w]
    out["inf"] = [int(torch.isinf(t).sum()) for t in w]
    return out


def close(got: Sequence[float | None], want: Sequence[float | None], rel: float = 1e-6) -> bool:
    """Equal lists of figures: ``None`` where ``None``, NaN where NaN, else within ``rel``
    (and an absolute 1e-12 of the largest value, for figures that are zero)."""
    if len(got) != len(want):
        return False
    scale = max((abs(w) for w in want if w is not None and math.isfinite(w)), default=0.0)
    for g, w in zip(got, want):
        if w is None or g is None:
            if not (w is None and g is None):
                return False
        elif math.isnan(w) or math.isnan(g):
            if not (math.isnan(w) and math.isnan(g)):
                return False
        elif abs(g - w) > rel * abs(w) + 1e-12 * scale:
            return False
    return True
