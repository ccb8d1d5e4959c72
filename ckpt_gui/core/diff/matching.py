"""Key alignment between two checkpoints: exact keys, or wrapper prefixes stripped.

Wrappers rename every key of a model: DataParallel/DDP add ``module.``, ``torch.compile`` adds
``_orig_mod.``, a training checkpoint nests the model under ``model_state_dict.``, a Lightning file
under ``state_dict.`` (and usually ``model.``). ``auto`` tries each pair of such prefixes found in
the two files and keeps the one that lines up the most tensors; ties go to the shorter prefixes,
so two files whose keys already agree are matched exactly.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field, replace

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.tree import Node

MATCH_MODES = ("auto", "exact")
# Key components that wrap a whole model rather than name a part of it.
WRAPPER_NAMES = frozenset(
    {
        "module",
        "_orig_mod",
        "model",
        "model_state_dict",
        "state_dict",
        "_fsdp_wrapped_module",
        "_checkpoint_wrapped_module",
    }
)
MAX_CANDIDATES = 24  # prefixes tried per side: a handful in any real file


@dataclass(frozen=True)
class KeyMatch:
    """How keys were aligned: A keys starting with ``strip_a`` are compared without it with B
    keys stripped of ``strip_b``. ``mode`` is ``"exact"``, ``"auto"`` or ``"map"`` (user-given);
    ``matched`` is the number of leaves (tensors and values) that found a partner."""

    mode: str = "exact"
    strip_a: str = ""
    strip_b: str = ""
    matched: int = 0

    def canonical_a(self, key: str) -> str:
        return _strip(key, self.strip_a)

    def canonical_b(self, key: str) -> str:
        return _strip(key, self.strip_b)

    def describe(self) -> str:
        """One line for reports: what was stripped, or that keys were matched as they are."""
        parts = [
            f"{prefix!r} stripped from {side}"
            for prefix, side in ((self.strip_a, "A"), (self.strip_b, "B"))
            if prefix
        ]
        how = ", ".join(parts) if parts else "keys compared as they are"
        return f"{how} ({self.mode}, {self.matched} paired)"

    def to_json(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "strip_a": self.strip_a,
            "strip_b": self.strip_b,
            "matched": self.matched,
        }


@dataclass
class Matching:
    """Leaves of A paired with leaves of B (in A's order), and those left over on each side."""

    match: KeyMatch
    pairs: list[tuple[Node, Node]] = field(default_factory=list)
    only_a: list[Node] = field(default_factory=list)
    only_b: list[Node] = field(default_factory=list)


def parse_map(text: str) -> KeyMatch:
    """``"A_PREFIX=B_PREFIX"`` (either side may be empty) as a user-given ``KeyMatch``."""
    if "=" not in text:
        raise ValueError(f"--map needs A_PREFIX=B_PREFIX, got {text!r}")
    strip_a, strip_b = text.split("=", 1)
    return KeyMatch(mode="map", strip_a=strip_a, strip_b=strip_b)


def leaves(root: Node) -> list[Node]:
    """The tensors and plain values of a tree, in saved order: what a diff compares."""
    return [n for n in root.walk() if n.kind in ("tensor", "value") and n is not root]


def model_prefixes(root: Node) -> set[str]:
    """``key.`` of every dict recognised as a model state_dict (or an EMA copy of one)."""
    return {n.key + "." for n in root.walk() if n.label in ("model", "EMA") and n.key}


def candidate_prefixes(keys: Iterable[str], models: Collection[str] = ()) -> list[str]:
    """Leading runs of wrapper components (or model state_dict keys) seen in ``keys``, most
    common first, always starting with ``""``."""
    seen: dict[str, int] = {}
    for key in keys:
        prefix = ""
        for part in key.split(".")[:-1]:
            longer = prefix + part + "."
            if part not in WRAPPER_NAMES and longer not in models:
                break
            seen[longer] = seen.get(longer, 0) + 1
            prefix = longer
    ranked = sorted(seen, key=lambda p: (-seen[p], len(p)))
    return [""] + ranked[: MAX_CANDIDATES - 1]


def match_leaves(
    a: list[Node],
    b: list[Node],
    match: str | KeyMatch = "auto",
    models_a: Collection[str] = (),
    models_b: Collection[str] = (),
) -> Matching:
    """Pair the leaves of A with those of B by key under ``match``: ``"exact"``, ``"auto"``
    (the best pair of wrapper prefixes) or a given ``KeyMatch``."""
    if isinstance(match, KeyMatch):
        chosen = match
    elif match == "exact":
        chosen = KeyMatch("exact")
    elif match == "auto":
        chosen = _best_match(a, b, models_a, models_b)
    else:
        raise ValueError(f"unknown match mode {match!r}; use one of {', '.join(MATCH_MODES)}")
    return _pair(a, b, chosen)


def match_checkpoints(a: Checkpoint, b: Checkpoint, match: str | KeyMatch = "auto") -> Matching:
    """``match_leaves`` over two opened checkpoints."""
    leaves_a, leaves_b = checkpoint_leaves(a), checkpoint_leaves(b)
    if (a.format == "gguf") != (b.format == "gguf"):  # a GGUF conversion and its original
        from ckpt_gui.core.quant.gguf_names import hf_leaves

        if a.format == "gguf":
            renamed = hf_leaves(a, leaves_a, (n.key for n in leaves_b))
            leaves_a = renamed if renamed is not None else leaves_a
        else:
            renamed = hf_leaves(b, leaves_b, (n.key for n in leaves_a))
            leaves_b = renamed if renamed is not None else leaves_b
        if renamed is not None:
            found = match_leaves(leaves_a, leaves_b, match)
            found.match = replace(found.match, mode=f"gguf names, {found.match.mode}")
            return found
    return match_leaves(
        leaves_a,
        leaves_b,
        match,
        model_prefixes(a.root),
        model_prefixes(b.root),
    )


def checkpoint_leaves(ckpt: Checkpoint) -> list[Node]:
    """``leaves`` of a checkpoint, each quantized weight as its logical tensor (compared
    dequantized) in place of its raw parts."""
    if not ckpt.logical:
        return leaves(ckpt.root)
    root = ckpt.view_root()
    out: list[Node] = []
    stack = list(reversed(root.children))
    while stack:
        node = stack.pop()
        if node.kind in ("tensor", "value"):
            out.append(node)
        if node.tensor is None or node.tensor.quant is None:  # not a logical tensor's parts
            stack.extend(reversed(node.children))
    return out


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix) :] if prefix and key.startswith(prefix) else key


def _canonical(nodes: list[Node], prefix: str) -> dict[str, Node] | None:
    """canonical key -> node; ``None`` when stripping makes two keys collide."""
    out: dict[str, Node] = {}
    for node in nodes:
        name = _strip(node.key, prefix)
        if name in out:
            return None
        out[name] = node
    return out


def _best_match(
    a: list[Node], b: list[Node], models_a: Collection[str], models_b: Collection[str]
) -> KeyMatch:
    tensors_a = [n for n in a if n.kind == "tensor"]
    tensors_b = [n for n in b if n.kind == "tensor"]
    maps_a = {p: _canonical(tensors_a, p) for p in candidate_prefixes(_keys(tensors_a), models_a)}
    maps_b = {p: _canonical(tensors_b, p) for p in candidate_prefixes(_keys(tensors_b), models_b)}
    best: tuple[tuple[int, int, int], str, str] | None = None
    for pa, ca in maps_a.items():
        for pb, cb in maps_b.items():
            if ca is None or cb is None:
                continue
            common = ca.keys() & cb.keys()
            same_shape = sum(1 for k in common if _shape(ca[k]) == _shape(cb[k]))
            # More same-shaped pairs, then more pairs, then shorter prefixes win.
            score = (same_shape, len(common), -(len(pa) + len(pb)))
            if best is None or score > best[0]:
                best = (score, pa, pb)
    if best is None:
        return KeyMatch("auto")
    return KeyMatch("auto", best[1], best[2])


def _pair(a: list[Node], b: list[Node], match: KeyMatch) -> Matching:
    by_name: dict[str, Node] = {}
    for node in b:
        by_name.setdefault(match.canonical_b(node.key), node)
    result = Matching(match)
    used: set[int] = set()
    for node in a:
        partner = by_name.get(match.canonical_a(node.key))
        if partner is None or id(partner) in used:
            result.only_a.append(node)
        else:
            used.add(id(partner))
            result.pairs.append((node, partner))
    result.only_b = [n for n in b if id(n) not in used]
    result.match = KeyMatch(match.mode, match.strip_a, match.strip_b, len(result.pairs))
    return result


def _keys(nodes: list[Node]) -> list[str]:
    return [n.key for n in nodes]


def _shape(node: Node) -> tuple[int, ...] | None:
    return node.tensor.shape if node.tensor is not None else None
