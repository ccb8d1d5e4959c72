"""Which tensors of an adapter file are which: the A and B factors of each target module (and a
DoRA magnitude vector), the full tensors of ``modules_to_save``, and anything else.

PEFT names a factor ``base_model.model.<module>.lora_A.<adapter>.weight`` in the model and
usually drops the adapter name when it saves (``...q_proj.lora_A.weight``); embeddings have
``lora_embedding_A`` without ``.weight``; DoRA adds ``lora_magnitude_vector``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ckpt_gui.core.tree import Node

PEFT_PREFIX = "base_model.model."
_FACTORS = {
    "lora_A": "A",
    "lora_B": "B",
    "lora_embedding_A": "A",
    "lora_embedding_B": "B",
    "lora_magnitude_vector": "magnitude",
}


@dataclass
class LoraModule:
    """One target module: its factors as tree nodes of the adapter's checkpoint."""

    module: str  # the adapter's module path: base_model.model.layers.0.self_attn.q_proj
    name: str  # its path in the model, as PEFT matches configs: layers.0.self_attn.q_proj
    adapter_name: str | None = None  # the adapter name in the keys, when the file keeps it
    a: Node | None = None
    b: Node | None = None
    magnitude: Node | None = None  # DoRA
    bias: Node | None = None  # lora_B.bias (lora_bias)
    embedding: bool = False

    @property
    def kind(self) -> str:
        """ "linear", "embedding", "conv", or "unknown" when the factors' shapes say neither."""
        a, b = self.a_shape, self.b_shape
        if a is None or b is None:
            return "unknown"
        if self.embedding:
            return "embedding" if len(a) == 2 and len(b) == 2 else "unknown"
        if len(a) == 2 and len(b) == 2:
            return "linear"
        if len(a) >= 3 and len(b) == len(a) and all(s == 1 for s in b[2:]):
            return "conv"
        return "unknown"

    @property
    def a_shape(self) -> tuple[int, ...] | None:
        return self.a.tensor.shape if self.a is not None and self.a.tensor else None

    @property
    def b_shape(self) -> tuple[int, ...] | None:
        return self.b.tensor.shape if self.b is not None and self.b.tensor else None

    @property
    def r(self) -> int | None:
        """The rank the factors have (A's rows)."""
        shape = self.a_shape
        return shape[0] if shape else None

    @property
    def delta_shape(self) -> tuple[int, ...] | None:
        """The shape of ΔW as the base weight has it (before ``fan_in_fan_out``)."""
        a, b = self.a_shape, self.b_shape
        kind = self.kind
        if a is None or b is None or kind == "unknown":
            return None
        if kind == "embedding":
            return (a[1], b[0])
        if kind == "linear":
            return (b[0], a[1])
        return (b[0], *a[1:])

    def problem(self) -> str | None:
        """Why ΔW cannot be formed from the factors, or None."""
        if self.a is None or self.b is None:
            return f"lora_{'A' if self.a is None else 'B'} is missing"
        a, b = self.a_shape, self.b_shape
        if self.kind == "unknown":
            return f"factors of shapes {list(a or ())} and {list(b or ())} form no known layer"
        assert a is not None and b is not None
        if a[0] != b[1]:
            return f"lora_A has rank {a[0]} but lora_B has rank {b[1]}"
        for node in (self.a, self.b):
            info = node.tensor
            assert info is not None
            if info.no_data or info.layout != "strided" or not _floating(info.dtype):
                return f"{node.key} is not a dense floating tensor"
        return None

    def nodes(self) -> list[Node]:
        return [n for n in (self.a, self.b, self.magnitude, self.bias) if n is not None]


@dataclass
class SavedTensor:
    """A full tensor of a module in ``modules_to_save``: it replaces the base's when merged."""

    node: Node
    name: str  # the base key it stands for, in the model's naming: lm_head.weight


@dataclass
class AdapterTensors:
    modules: list[LoraModule] = field(default_factory=list)
    saved: list[SavedTensor] = field(default_factory=list)
    other: list[Node] = field(default_factory=list)  # neither a factor nor a saved module


def split_tensors(nodes: list[Node], prefix: str, modules_to_save: list[str]) -> AdapterTensors:
    """Sort an adapter's tensor nodes (keys starting with ``prefix``, a folder component's
    name and a dot, or "") into modules, saved tensors and the rest, in file order."""
    out = AdapterTensors()
    by_module: dict[tuple[str, str | None], LoraModule] = {}
    for node in nodes:
        key = node.key[len(prefix) :]
        parsed = _parse_factor(key)
        if parsed is None:
            name = _saved_name(model_name(key))
            if any(f".{m}." in f".{name}." for m in modules_to_save):
                out.saved.append(SavedTensor(node, name))
            else:
                out.other.append(node)
            continue
        module, part, adapter, param = parsed
        entry = by_module.get((module, adapter))
        if entry is None:
            entry = LoraModule(module, model_name(module), adapter)
            by_module[module, adapter] = entry
            out.modules.append(entry)
        role = _FACTORS[part]
        if part.startswith("lora_embedding"):
            entry.embedding = True
        if role == "magnitude":
            entry.magnitude = node
        elif param == "bias":
            if role == "B":
                entry.bias = node
            else:
                out.other.append(node)
        elif role == "A":
            entry.a = node
        else:
            entry.b = node
    return out


def _parse_factor(key: str) -> tuple[str, str, str | None, str | None] | None:
    """``(module, factor, adapter name, "weight"|"bias"|None)`` of a factor's key, or None."""
    parts = key.split(".")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in _FACTORS:
            rest = parts[i + 1 :]
            break
    else:
        return None
    module = ".".join(parts[:i])
    if not rest:
        return module, parts[i], None, None
    if len(rest) == 1:
        if rest[0] in ("weight", "bias"):
            return module, parts[i], None, rest[0]
        return module, parts[i], rest[0], None
    if len(rest) == 2 and rest[1] in ("weight", "bias"):
        return module, parts[i], rest[0], rest[1]
    return None


def model_name(key: str) -> str:
    """A key or module path in the model's own naming (PEFT's wrapper prefix removed)."""
    return key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key


def _saved_name(name: str) -> str:
    """``lm_head.modules_to_save.default.weight`` (older PEFT) -> ``lm_head.weight``."""
    parts = name.split(".")
    if "modules_to_save" in parts:
        i = parts.index("modules_to_save")
        # The adapter name follows, unless the file dropped it.
        skip = 2 if len(parts) > i + 2 else 1
        parts = parts[:i] + parts[i + skip :]
    return ".".join(parts)


def _floating(dtype: str) -> bool:
    return dtype in ("float32", "float16", "bfloat16", "float64")
