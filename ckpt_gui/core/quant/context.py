"""What a scheme's recogniser looks at: the checkpoint's tensors by key (names, dtypes and
shapes, never data, except bitsandbytes' small JSON quant state) and its quantization config."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.tree import Node, TensorInfo

if TYPE_CHECKING:
    import torch

FLOAT8 = ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
# Nibbles are read from the bytes of int32 words, which holds on little-endian machines only.
LITTLE_ENDIAN = sys.byteorder == "little"


@dataclass
class Context:
    """The tensors of one checkpoint by key, and its ``quantization_config`` (``{}`` if none)
    with the model's ``torch_dtype``."""

    nodes: dict[str, Node]
    config: dict[str, Any] = field(default_factory=dict)
    torch_dtype: str | None = None

    @classmethod
    def of(cls, nodes: Iterable[Node], config: dict[str, Any] | None = None) -> Context:
        config = config or {}
        quant = config.get("quantization_config")
        dtype = config.get("torch_dtype", config.get("dtype"))
        return cls(
            {n.key: n for n in nodes if n.tensor is not None and not n.tensor.no_data},
            quant if isinstance(quant, dict) else {},
            dtype if isinstance(dtype, str) else None,
        )

    def info(self, key: str) -> TensorInfo | None:
        node = self.nodes.get(key)
        return node.tensor if node is not None else None

    def load(self, key: str) -> torch.Tensor:
        return self.nodes[key].load()

    def method(self) -> str:
        value = self.config.get("quant_method", "")
        return value.lower() if isinstance(value, str) else ""

    def setting(self, name: str, default: Any = None) -> Any:
        return self.config.get(name, default)

    def out_dtype(self, scale_dtype: str | None = None) -> str:
        """The dtype the weight had before quantization: the model's ``torch_dtype``, else the
        scales' floating dtype, else float32."""
        if self.torch_dtype in ("float32", "float16", "bfloat16"):
            return self.torch_dtype
        if scale_dtype in ("float16", "bfloat16"):
            return scale_dtype
        return "float32"


def unpack_nibbles(words: torch.Tensor) -> torch.Tensor:
    """The 4-bit values packed in int32 ``words`` along the last dimension, lowest bits first
    (GPTQ, AWQ before reordering, compressed-tensors): shape ``(..., 8 * n)``, uint8."""
    import torch

    if not LITTLE_ENDIAN:  # pragma: no cover - no big-endian machine at hand
        shifts = torch.arange(0, 32, 4, dtype=torch.int32)
        return ((words.unsqueeze(-1) >> shifts) & 15).to(torch.uint8).flatten(-2)
    raw = words.view(torch.uint8)  # each word's bytes, lowest first
    return torch.stack((raw & 15, raw >> 4), dim=-1).flatten(-2)


def unpack_bits(words: torch.Tensor, bits: int) -> torch.Tensor:
    """``bits``-wide values (2, 4 or 8) packed in int32 ``words`` along the last dimension,
    lowest bits first: shape ``(..., 32 // bits * n)``, uint8."""
    import torch

    if bits == 4:
        return unpack_nibbles(words)
    shifts = torch.arange(0, 32, bits, dtype=torch.int32)
    values = (words.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)
    return values.to(torch.uint8).flatten(-2)


def affine_groups(
    q: torch.Tensor, zero: torch.Tensor | None, scale: torch.Tensor, size: int
) -> torch.Tensor:
    """``(q - zero) * scale`` in float32 for integer codes ``q`` ``(n, cols)`` and per-group
    ``zero`` and ``scale`` ``(n, groups)``, a group being ``size`` consecutive columns. The
    difference is exact (small integers), so the one rounding is the product's, as in every
    reference; written in two passes, the groups broadcast rather than repeated."""
    import torch

    n, cols = q.shape
    groups = scale.shape[-1]
    if groups * size == cols:
        # Converted first: torch's mixed uint8 - float32 broadcast is ten times slower.
        out = q.view(n, groups, size).to(torch.float32)
        if zero is not None:
            out.sub_(zero.unsqueeze(-1))
        return out.mul_(scale.unsqueeze(-1)).view(n, cols)
    out = q.to(torch.float32)
    if zero is not None:
        out -= expand_groups(zero, size, cols)
    return out.mul_(expand_groups(scale, size, cols))


def expand_groups(values: torch.Tensor, size: int, length: int) -> torch.Tensor:
    """Per-group ``values`` (``(n, groups)``) repeated ``size`` times along the last dimension
    and cut to ``length``: one value per column."""
    if values.shape[-1] * size == length:
        return values.repeat_interleave(size, dim=-1)
    return values.repeat_interleave(size, dim=-1)[..., :length]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
