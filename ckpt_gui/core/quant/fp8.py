"""FP8 weights: ``weight`` in float8 with a per-tensor or per-channel ``weight_scale``
(compressed-tensors' float-quantized format, FBGEMM), or with ``weight_scale_inv`` per block
of 128x128 (DeepSeek-V3, Qwen3-FP8). The value is ``float32(weight) * scale``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ckpt_gui.core.quant.context import FLOAT8, Context, ceil_div
from ckpt_gui.core.quant.logical import LogicalTensor

if TYPE_CHECKING:
    import torch


def recognise(key: str, ctx: Context) -> LogicalTensor | None:
    info = ctx.info(key)
    if info is None or info.dtype not in FLOAT8 or not key.endswith("weight"):
        return None
    if ctx.info(key + "_scale_inv") is not None:
        return _block(key, ctx)
    if ctx.info(key + "_scale") is not None:
        return _per_tensor(key, ctx)
    return None


def _per_tensor(key: str, ctx: Context) -> LogicalTensor | None:
    info, scale = ctx.info(key), ctx.info(key + "_scale")
    assert info is not None and scale is not None
    shape = info.shape
    rows = shape[0] if len(shape) == 2 else 0
    per_row = len(shape) == 2 and scale.numel == rows and rows > 1
    if not shape or not (scale.numel == 1 or per_row):
        return None
    prefix = key[: -len("weight")]
    parts = [key, key + "_scale"] + [
        k for k in (prefix + "input_scale",) if ctx.info(k) is not None
    ]

    def read(start: int, stop: int) -> torch.Tensor:
        w = _rows(ctx.load(key), start, stop).float()
        s = ctx.load(key + "_scale").float()
        return w * (s.reshape(-1)[start:stop].reshape(-1, 1) if per_row else s.reshape(()))

    return LogicalTensor(
        key,
        "fp8",
        shape,
        ctx.out_dtype(scale.dtype),
        8,
        None,
        tuple(parts),
        read,
        "per channel" if per_row else "per tensor",
    )


def _block(key: str, ctx: Context) -> LogicalTensor | None:
    info, scale = ctx.info(key), ctx.info(key + "_scale_inv")
    assert info is not None and scale is not None
    if len(info.shape) != 2 or len(scale.shape) != 2:
        return None
    out, cols = info.shape
    size = ctx.setting("weight_block_size") or [128, 128]
    if not (isinstance(size, list) and len(size) == 2 and all(type(b) is int for b in size)):
        return None
    bo, bi = size
    if bo <= 0 or bi <= 0 or scale.shape != (ceil_div(out, bo), ceil_div(cols, bi)):
        return None

    def read(start: int, stop: int) -> torch.Tensor:
        w = ctx.load(key)[start:stop].float()
        s = ctx.load(key + "_scale_inv")[start // bo : ceil_div(stop, bo)].float()
        s = s.repeat_interleave(bo, dim=0)[start % bo : start % bo + (stop - start)]
        return w * s.repeat_interleave(bi, dim=1)[:, :cols]

    return LogicalTensor(
        key,
        "fp8-block",
        info.shape,
        ctx.out_dtype(),
        8,
        bo if bo == bi else None,
        (key, key + "_scale_inv"),
        read,
        f"block {bo}x{bi}" if bo != bi else "",
    )


def _rows(t: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Rows ``[start, stop)`` of ``t`` seen as (rows, last dimension)."""
    return t.reshape(-1, t.shape[-1])[start:stop]
