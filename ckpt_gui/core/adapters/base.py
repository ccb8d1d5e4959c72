"""Pairing an adapter with its base model: each target module with the base weight it changes,
each saved module with the base tensor it replaces, and the config's targets that match no base
weight at all (an adapter that silently does nothing).

PEFT's module path ``base_model.model.X`` changes the base key ``X.weight``. A base saved
another way (a training checkpoint's ``model_state_dict.``, the inner model without ``model.``)
is paired by the prefix change that lines up the most modules, as ``diff --match auto`` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ckpt_gui.core.adapters.config import AdapterConfig
from ckpt_gui.core.adapters.modules import AdapterTensors, LoraModule
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.diff.matching import WRAPPER_NAMES
from ckpt_gui.core.tree import Node

_WRAPPERS = WRAPPER_NAMES | {"base_model"}
MAX_MATCHED_NAME = 1024  # longer base names are not matched against config patterns


@dataclass(frozen=True)
class BaseMatch:
    """Module ``name`` (model naming) pairs with base key ``add + name[len(strip):] + .weight``."""

    strip: str = ""
    add: str = ""
    matched: int = 0

    def base_key(self, name: str) -> str | None:
        if not name.startswith(self.strip):
            return None
        return self.add + name[len(self.strip) :]

    def describe(self) -> str:
        parts = [f"{p!r} {how}" for p, how in ((self.strip, "removed"), (self.add, "added")) if p]
        return ", ".join(parts) if parts else "names as they are"

    def to_json(self) -> dict[str, object]:
        return {"strip": self.strip, "add": self.add, "matched": self.matched}


@dataclass
class BasePairing:
    """What the base holds for each part of the adapter."""

    base: Checkpoint
    match: BaseMatch
    weights: dict[str, Node] = field(default_factory=dict)  # module path -> base weight
    mismatch: dict[str, str] = field(default_factory=dict)  # module path -> why it can't pair
    saved: dict[str, Node] = field(default_factory=dict)  # saved tensor key -> base tensor
    missing: list[str] = field(default_factory=list)  # module paths with no base weight
    unmatched: list[str] = field(default_factory=list)  # config targets matching no base weight


def pair_with_base(tensors: AdapterTensors, config: AdapterConfig, base: Checkpoint) -> BasePairing:
    """Pair ``tensors`` (one adapter) with ``base``'s tensors; nothing is read."""
    keys = {n.key: n for n in base.root.tensors() if n.tensor is not None}
    names = [m.name + ".weight" for m in tensors.modules] + [s.name for s in tensors.saved]
    match = _best_match(names, keys)
    pairing = BasePairing(base, match)
    for module in tensors.modules:
        key = match.base_key(module.name + ".weight")
        node = keys.get(key) if key is not None else None
        if node is None:
            pairing.missing.append(module.module)
            continue
        why = _shape_problem(module, node, config.fan_in_fan_out)
        if why:
            pairing.mismatch[module.module] = why
        else:
            pairing.weights[module.module] = node
    for saved in tensors.saved:
        key = match.base_key(saved.name)
        node = keys.get(key) if key is not None else None
        if node is not None:
            pairing.saved[saved.node.key] = node
    pairing.unmatched = _unmatched_targets(config, keys, match)
    return pairing


def _best_match(names: list[str], keys: dict[str, Node]) -> BaseMatch:
    """The prefix change under which the most ``names`` are base keys; ties go to the
    shortest change, so names that already agree are paired as they are."""
    strips = {""} | {n.split(".", 1)[0] + "." for n in names if n.split(".", 1)[0] in _WRAPPERS}
    adds = {""}
    for key in keys:
        parts = key.split(".")
        for depth in (1, 2):
            head = parts[:depth]
            if len(parts) > depth and all(p in _WRAPPERS for p in head):
                adds.add(".".join(head) + ".")
        if len(adds) > 24:
            break
    best = BaseMatch()
    best_rank: tuple[int, int] = (-1, 0)
    for strip in sorted(strips):
        for add in sorted(adds):
            candidate = BaseMatch(strip, add)
            count = 0
            for name in names:
                mapped = candidate.base_key(name)
                if mapped is not None and mapped in keys:
                    count += 1
            rank = (count, -(len(strip) + len(add)))
            if rank > best_rank:
                best, best_rank = BaseMatch(strip, add, count), rank
    return best


def _shape_problem(module: LoraModule, node: Node, fan_in_fan_out: bool) -> str | None:
    info = node.tensor
    assert info is not None
    expected = module.delta_shape
    if expected is None:
        return None  # the module has a problem of its own, reported with it
    if fan_in_fan_out and module.kind == "linear":
        expected = expected[::-1]
    if tuple(info.shape) != tuple(expected):
        return f"the base weight is {list(info.shape)}, ΔW would be {list(expected)}"
    if info.no_data or info.layout != "strided" or not info.dtype.startswith(("float", "bfloat")):
        return "the base weight is not a dense floating tensor"
    return None


def _unmatched_targets(config: AdapterConfig, keys: dict[str, Node], match: BaseMatch) -> list[str]:
    """The config's ``target_modules`` entries that select none of the base's weights."""
    entries = config.target_entries()
    if not entries:
        return []
    modules = []
    for key in keys:
        if not key.startswith(match.add) or not key.endswith(".weight"):
            continue
        name = match.strip + key[len(match.add) : -len(".weight")]
        if len(name) <= MAX_MATCHED_NAME:
            modules.append(name)
    return [e for e in entries if not any(config.entry_matches(e, name) for name in modules)]
