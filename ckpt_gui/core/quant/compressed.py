"""compressed-tensors' pack-quantized format (llm-compressor): ``weight_packed`` (out, in/8)
int32 with 4-bit values packed along the input dimension, lowest bits first, stored as
``q + 8`` (2- and 8-bit likewise, offset 2**(bits-1)); ``weight_scale`` per tensor, channel or
group; ``weight_zero_point`` (asymmetric schemes: int32 packed along the output dimension, or
unpacked); ``weight_shape`` the logical (out, in). Value = (q - zero_point) * scale, as
compressed-tensors' ``dequantize`` computes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ckpt_gui.core.quant.context import Context, affine_groups, ceil_div, unpack_bits
from ckpt_gui.core.quant.logical import LogicalTensor

if TYPE_CHECKING:
    import torch


def recognise(key: str, ctx: Context) -> LogicalTensor | None:
    if not key.endswith(".weight_packed"):
        return None
    prefix = key[: -len("weight_packed")]
    packed, scale = ctx.info(key), ctx.info(prefix + "weight_scale")
    shape_key, zp_key = prefix + "weight_shape", prefix + "weight_zero_point"
    if packed is None or scale is None or ctx.info(shape_key) is None:
        return None
    if packed.dtype != "int32" or len(packed.shape) != 2:
        return None
    out = packed.shape[0]
    bits = _bits(ctx.config, out, packed.shape[1])
    if bits is None:
        return None
    shape = tuple(int(v) for v in ctx.load(shape_key).tolist())
    if len(shape) != 2 or shape[0] != out or ceil_div(shape[1] * bits, 32) != packed.shape[1]:
        return None
    cols = shape[1]
    groups = scale.shape[-1] if len(scale.shape) == 2 and scale.shape[0] == out else 0
    if not groups and scale.numel != 1:
        return None
    size = ceil_div(cols, groups) if groups else cols
    zp = ctx.info(zp_key)
    offset = 1 << (bits - 1)

    def read(start: int, stop: int) -> torch.Tensor:
        import torch

        # Codes are stored plus ``offset``: q - zero_point = code - (zero_point + offset).
        q = unpack_bits(ctx.load(key)[start:stop], bits)[:, :cols]
        s = ctx.load(prefix + "weight_scale").float()
        s = s[start:stop] if groups else s.reshape(1, 1).expand(stop - start, 1)
        if zp is None:
            z = torch.full_like(s, float(offset))
        else:
            z = _zero_points(ctx.load(zp_key), bits, out, start, stop, groups) + offset
        return affine_groups(q.contiguous(), z.expand_as(s), s, size)

    parts = [key, prefix + "weight_scale"] + ([zp_key] if zp is not None else []) + [shape_key]
    return LogicalTensor(
        prefix + "weight",
        "compressed-tensors",
        shape,
        ctx.out_dtype(scale.dtype),
        bits,
        size if groups > 1 else None,
        tuple(parts),
        read,
        "per channel" if groups == 1 else "per tensor" if not groups else "",
    )


def _bits(config: dict[str, Any], out: int, words: int) -> int | None:
    """``num_bits`` of the config's weight scheme; 4 when there is no config."""
    for group in (config.get("config_groups") or {}).values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if isinstance(weights, dict) and weights.get("num_bits") in (2, 4, 8):
            return int(weights["num_bits"])
    return 4 if not config else None


def _zero_points(
    zp: torch.Tensor, bits: int, out: int, start: int, stop: int, groups: int
) -> torch.Tensor:
    """Zero points of rows ``[start, stop)`` as float, ``(rows, groups)`` (``(1, 1)`` for a
    per-tensor one), from the packed (along the output dimension) or the plain form."""
    if not groups:
        return zp.float().reshape(-1)[:1].reshape(1, 1)
    if zp.dtype.is_floating_point or zp.numel() == out * groups:
        return zp.reshape(out, groups)[start:stop].float()
    # Packed along dim 0: the transposed tensor, packed along its rows.
    z = unpack_bits(zp.reshape(-1, groups).transpose(0, 1).contiguous(), bits)
    return z[:, :out].transpose(0, 1)[start:stop].float().sub_(1 << (bits - 1))
