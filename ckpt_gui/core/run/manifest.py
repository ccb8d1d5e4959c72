"""What a run needs to know about one checkpoint without reading its tensors: the tensors to
follow, the optimizer state to measure, the numeric values (loss, lr, epoch, ...) and the
progress counters that order the run. Small and plain, so the cache can keep it: a cached run
reopens without opening a single file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.diff.matching import model_prefixes
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.formats.detect import MiB, read_small_file
from ckpt_gui.core.run.members import EPOCH_KEYS, STEP_KEYS
from ckpt_gui.core.stats import has_statistics
from ckpt_gui.core.tree import Node, TensorInfo

# Hugging Face Trainer's own record beside the weights of a ``checkpoint-N/`` folder.
TRAINER_STATE = "trainer_state.json"
MAX_TRAINER_STATE = 64 * MiB
_CONTAINERS = ("model", "EMA", "optimizer")
# Numeric values followed per checkpoint, in saved order: a Lightning file holds a few dozen
# (epoch, global_step, loop counters, best score); a list of thousands of logged losses is not
# a thousand series.
MAX_VALUES = 256


@dataclass(frozen=True)
class TensorEntry:
    """A tensor whose trajectory is followed (parameters, buffers, other non-scalar tensors)."""

    key: str
    dtype: str
    shape: tuple[int, ...]
    role: str


@dataclass(frozen=True)
class OptimizerEntry:
    """An optimizer-state tensor (``exp_avg_sq`` of a parameter), measured by its norm.
    ``series`` names it across the run: ``linear1.weight.exp_avg_sq`` where the optimizer's ids
    map to parameter names, else its key inside the optimizer (``state.0.exp_avg_sq``)."""

    key: str
    series: str
    dtype: str
    shape: tuple[int, ...]


@dataclass
class Manifest:
    kind: str
    tensors: list[TensorEntry] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # model state_dict prefixes (``model.``)
    optimizer: list[OptimizerEntry] = field(default_factory=list)
    values: dict[str, int | float] = field(default_factory=dict)
    counters: dict[str, int | float] = field(default_factory=dict)

    def tensor_nodes(self) -> list[Node]:
        """Stand-in nodes (no data) for key matching with ``diff.matching.match_leaves``."""
        return [
            Node(
                name=t.key,
                key=t.key,
                kind="tensor",
                role=t.role,
                tensor=TensorInfo(dtype=t.dtype, shape=t.shape, stride=None, device="cpu"),
            )
            for t in self.tensors
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "tensors": [[t.key, t.dtype, list(t.shape), t.role] for t in self.tensors],
            "models": self.models,
            "optimizer": [[o.key, o.series, o.dtype, list(o.shape)] for o in self.optimizer],
            "values": self.values,
            "counters": self.counters,
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest ``to_json`` wrote; raises ``ValueError`` (or ``TypeError``) for anything
        else, which the cache treats as a miss."""
        tensors = [
            TensorEntry(_str(k), _str(d), _shape(s), _str(r)) for k, d, s, r in data["tensors"]
        ]
        optimizer = [
            OptimizerEntry(_str(k), _str(n), _str(d), _shape(s)) for k, n, d, s in data["optimizer"]
        ]
        return cls(
            kind=_str(data["kind"]),
            tensors=tensors,
            models=[_str(m) for m in data["models"]],
            optimizer=optimizer,
            values={_str(k): _number(v) for k, v in data["values"].items()},
            counters={_str(k): _number(v) for k, v in data["counters"].items()},
        )


def manifest_of(ckpt: Checkpoint) -> Manifest:
    """Read what a run needs from an opened checkpoint: one walk of its tree, plus the one-element
    tensors outside the model and the optimizer (a ``global_step`` saved as a tensor), which
    are read for their value."""
    out = Manifest(kind=ckpt.kind, models=sorted(model_prefixes(ckpt.root)))
    optimizers = [n for n in ckpt.root.walk() if n.label == "optimizer"]
    for node in _outside_containers(ckpt.root):
        if node.kind == "value":
            if _is_number(node.value) and len(out.values) < MAX_VALUES:
                out.values[node.key] = node.value
        elif node.kind == "tensor" and node.tensor is not None:
            info = node.tensor
            if info.numel == 1 and node.role == "other":
                value = _scalar(node) if len(out.values) < MAX_VALUES else None
                if value is not None:
                    out.values[node.key] = value
            elif node.role != "optimizer_state" and _measurable(info):
                out.tensors.append(TensorEntry(node.key, info.dtype, info.shape, node.role))
    _add_learning_rates(out, optimizers)
    for opt in optimizers:
        for node in opt.tensors():
            opt_info = node.tensor
            if opt_info is None or not opt_info.shape or not _measurable(opt_info):
                continue  # counters such as Adam's ``step``
            out.optimizer.append(
                OptimizerEntry(
                    node.key,
                    _series_name(node, opt, len(optimizers)),
                    opt_info.dtype,
                    opt_info.shape,
                )
            )
    for child in ckpt.root.children:
        if child.key in out.values and child.key in STEP_KEYS + EPOCH_KEYS:
            out.counters[child.key] = out.values[child.key]
    if ckpt.path.is_dir():
        _add_trainer_state(out, ckpt.path / TRAINER_STATE)
    return out


def _outside_containers(root: Node) -> list[Node]:
    """Every node except those inside a model state_dict or an optimizer (which are visited
    on their own: their tensors are the trajectories, their values are not run values)."""
    out: list[Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node is not root and node.label in _CONTAINERS:
            if node.label != "optimizer":
                out.extend(n for n in node.tensors())
            continue
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def _add_learning_rates(out: Manifest, optimizers: list[Node]) -> None:
    """``lr`` of every optimizer param group: as ``lr`` when there is one, else by its key."""
    found: list[tuple[str, int | float]] = []
    for opt in optimizers:
        groups = opt.child("param_groups")
        for group in groups.children if groups is not None else ():
            lr = group.child("lr")
            if lr is not None and lr.kind == "value" and _is_number(lr.value):
                found.append((lr.key, lr.value))
    if len(found) == 1 and "lr" not in out.values:
        out.values["lr"] = found[0][1]
    else:
        out.values.update(found)


def _series_name(node: Node, opt: Node, optimizers: int) -> str:
    if node.param is not None:
        name = f"{node.param}.{node.name}"
    else:
        name = node.key[len(opt.key) + 1 :] if opt.key else node.key
    return f"{opt.key}:{name}" if optimizers > 1 else name


def _add_trainer_state(out: Manifest, path: Path) -> None:
    """A Hugging Face ``trainer_state.json``: ``global_step``, ``epoch``, ``best_metric`` and
    the latest logged figures (``loss``, ``learning_rate``, ``grad_norm``, ``eval_loss``, ...)
    as values; ``global_step`` and ``epoch`` as counters. A bad file is ignored: it is a log,
    not the weights."""
    if not path.is_file():
        return
    try:
        state = json.loads(read_small_file(path, MAX_TRAINER_STATE, "a trainer state"))
    except (CheckpointError, ValueError, RecursionError):
        return
    if not isinstance(state, dict):
        return
    found: dict[str, int | float] = {}
    history = state.get("log_history")
    for entry in history if isinstance(history, list) else ():
        if isinstance(entry, dict):
            found.update((str(k), v) for k, v in entry.items() if _is_number(v))
    found.update(
        (k, state[k]) for k in ("global_step", "epoch", "best_metric") if _is_number(state.get(k))
    )
    for key, value in found.items():
        out.values.setdefault(key, value)
    for key in ("global_step", "epoch"):
        if key in found:
            out.counters[f"{TRAINER_STATE}:{key}"] = found[key]


def _measurable(info: TensorInfo) -> bool:
    """Whether a tensor holds numbers to measure (not uninitialised memory, a meta tensor or
    raw bits)."""
    return not info.no_data and has_statistics(info.dtype)


def _scalar(node: Node) -> int | float | None:
    """The value of a one-element tensor (a few bytes read), when it is a real number."""
    try:
        t = node.load()
    except (CheckpointError, ValueError, RuntimeError):
        return None
    if t.is_complex():
        return None
    try:
        value = t.reshape(-1)[0].item()
    except (RuntimeError, ValueError):
        return None
    return value if _is_number(value) else None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: object) -> int | float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"not a string: {value!r}")
    return value


def _shape(value: object) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"not a shape: {value!r}")
    return tuple(value)
