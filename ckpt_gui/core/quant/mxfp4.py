"""MXFP4 (OCP microscaling, gpt-oss): ``X_blocks`` holds 32 FP4 (E2M1) values per block in 16
bytes, the low nibble first, and ``X_scales`` one E8M0 exponent per block: value =
fp4 * 2**(scale - 127), as transformers' ``convert_moe_packed_tensors`` computes it. The
blocks' layout is (experts, out, blocks, 16); the logical tensor is transformers' (experts, in,
out), so that it pairs with the original weights. Blocks of another rank keep their layout:
``(..., blocks * 32)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckpt_gui.core.quant.context import Context, ceil_div
from ckpt_gui.core.quant.logical import LogicalTensor, RowReader

if TYPE_CHECKING:
    import torch

_BYTES = ("uint8", "float4_e2m1fn_x2")
_SCALES = ("uint8", "float8_e8m0fnu")


def recognise(key: str, ctx: Context) -> LogicalTensor | None:
    if not key.endswith("_blocks"):
        return None
    base = key[: -len("_blocks")]
    blocks, scales = ctx.info(key), ctx.info(base + "_scales")
    if blocks is None or scales is None:
        return None
    if blocks.dtype not in _BYTES or scales.dtype not in _SCALES:
        return None
    if len(blocks.shape) < 2 or blocks.shape[-1] != 16 or scales.shape != blocks.shape[:-1]:
        return None
    groups = blocks.shape[-2]
    packed = (*blocks.shape[:-2], groups * 32)  # the blocks' own layout

    def decode(r0: int, r1: int, g0: int, g1: int) -> torch.Tensor:
        """Packed rows [r0, r1), blocks [g0, g1): float32 (rows, blocks * 32)."""
        import torch

        from ckpt_gui.core.chunks import FP4_VALUES

        raw = ctx.load(key).view(torch.uint8).reshape(-1, groups, 16)[r0:r1, g0:g1]
        exp = ctx.load(base + "_scales").view(torch.uint8).reshape(-1, groups)[r0:r1, g0:g1]
        nibbles = torch.stack((raw & 15, raw >> 4), dim=-1).reshape(r1 - r0, g1 - g0, 32)
        values = FP4_VALUES[nibbles.long()]
        scaled = torch.ldexp(values, exp.to(torch.int32).sub_(127).unsqueeze(-1))
        return scaled.reshape(r1 - r0, -1)

    if len(packed) != 3:
        return _logical(base, key, ctx, packed, lambda r0, r1: decode(r0, r1, 0, groups))
    experts, out, cols = packed

    def read(start: int, stop: int) -> torch.Tensor:
        """Rows of transformers' (experts, in, out) layout: for each expert, the blocks
        holding the inputs asked for, decoded over every output and transposed."""
        import torch

        pieces, row = [], start
        while row < stop:
            e, i0 = divmod(row, cols)
            i1 = min(cols, i0 + stop - row)
            g0 = i0 // 32
            values = decode(e * out, (e + 1) * out, g0, ceil_div(i1, 32))
            pieces.append(values[:, i0 - g0 * 32 : i1 - g0 * 32].transpose(0, 1))
            row += i1 - i0
        return torch.cat(pieces) if len(pieces) > 1 else pieces[0].contiguous()

    lt = _logical(base, key, ctx, (experts, cols, out), read)
    lt.detail = "experts' (in, out) layout, as transformers dequantizes it"
    return lt


def _logical(
    base: str, key: str, ctx: Context, shape: tuple[int, ...], read: RowReader
) -> LogicalTensor:
    return LogicalTensor(
        base, "mxfp4", shape, ctx.out_dtype(), 4, 32, (key, base + "_scales"), read
    )
