"""bitsandbytes, as transformers saves it.

- 4-bit (nf4, fp4): ``weight`` uint8 holds two 4-bit codes a byte, the first in the high
  nibble, over the flattened weight; ``weight.absmax`` one float32 per block of ``blocksize``
  values (or, nested, uint8 codes of ``weight.nested_quant_map`` times ``weight.nested_absmax``
  per block of 256, plus ``nested_offset``); ``weight.quant_map`` the 16 values of the codes;
  ``weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``) a JSON dict (shape, blocksize,
  dtype). Value = quant_map[code] * absmax[block].
- int8 (LLM.int8): ``weight`` int8 (out, in) and ``SCB`` one float32 per row: value =
  weight * SCB / 127, as bitsandbytes' ``int8_vectorwise_dequant`` computes it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.quant.context import Context, ceil_div
from ckpt_gui.core.quant.logical import LogicalTensor

if TYPE_CHECKING:
    import torch

_INV_127 = 7.874015718698502e-3  # bitsandbytes' 1/127
MAX_STATE_BYTES = 1 << 16


def recognise(key: str, ctx: Context) -> LogicalTensor | None:
    info = ctx.info(key)
    if info is None or not key.endswith("weight"):
        return None
    if info.dtype == "int8" and key.endswith(".weight"):
        return _int8(key, ctx)
    if info.dtype == "uint8" and ctx.info(key + ".absmax") is not None:
        return _four_bit(key, ctx)
    return None


def _int8(key: str, ctx: Context) -> LogicalTensor | None:
    scb = key[: -len("weight")] + "SCB"
    info, rows = ctx.info(key), ctx.info(scb)
    if info is None or rows is None or len(info.shape) != 2 or rows.shape != info.shape[:1]:
        return None

    def read(start: int, stop: int) -> torch.Tensor:
        w = ctx.load(key)[start:stop]
        return w * ctx.load(scb)[start:stop].float().view(-1, 1) * _INV_127

    parts = [key, scb] + [k for k in (key + "_format",) if ctx.info(k) is not None]
    return LogicalTensor(key, "bnb-int8", info.shape, ctx.out_dtype(), 8, None, tuple(parts), read)


def _four_bit(key: str, ctx: Context) -> LogicalTensor | None:
    found = [(k, t) for t in ("nf4", "fp4") for k in (f"{key}.quant_state.bitsandbytes__{t}",)]
    found = [(k, t) for k, t in found if ctx.info(k) is not None]
    qmap = key + ".quant_map"
    if len(found) != 1 or ctx.info(qmap) is None:
        return None
    state_key, kind = found[0]
    state = _state(ctx, state_key)
    if state is None:
        return None
    shape, size = state["shape"], state["blocksize"]
    numel = 1
    for s in shape:
        numel *= s
    info = ctx.info(key)
    assert info is not None
    nested = "nested_blocksize" in state
    absmax_key = key + ".absmax"
    if info.numel * 2 < numel or ctx.info(absmax_key).numel < ceil_div(numel, size):  # type: ignore[union-attr]
        return None
    cols = shape[-1] if shape else 1

    def read(start: int, stop: int) -> torch.Tensor:
        import torch

        k0, k1 = start * cols, stop * cols
        raw = ctx.load(key).reshape(-1)[k0 // 2 : ceil_div(k1, 2)]
        codes = torch.stack((raw >> 4, raw & 15), dim=-1).reshape(-1)[k0 % 2 :][: k1 - k0]
        values = ctx.load(qmap).float()[codes.long()]
        b0, b1 = k0 // size, ceil_div(k1, size)
        scale = _absmax(ctx, key, state, b0, b1) if nested else ctx.load(absmax_key)[b0:b1]
        scale = scale.float().repeat_interleave(size)[k0 - b0 * size :][: k1 - k0]
        return (values * scale).reshape(stop - start, cols)

    parts = [key, absmax_key, qmap, state_key]
    if nested:
        parts += [key + ".nested_absmax", key + ".nested_quant_map"]
    return LogicalTensor(
        key,
        f"bnb-{kind}",
        tuple(shape),
        _dtype(state.get("dtype"), ctx),
        4,
        size,
        tuple(parts),
        read,
    )


def _absmax(ctx: Context, key: str, state: dict[str, Any], b0: int, b1: int) -> torch.Tensor:
    """Blocks ``[b0, b1)`` of a nested (double-quantized) absmax."""
    size = state["nested_blocksize"]
    codes = ctx.load(key + ".absmax")[b0:b1].long()
    nested = ctx.load(key + ".nested_absmax").float()[b0 // size : ceil_div(b1, size)]
    nested = nested.repeat_interleave(size)[b0 - (b0 // size) * size :][: b1 - b0]
    table = ctx.load(key + ".nested_quant_map").float()
    return table[codes] * nested + float(state.get("nested_offset", 0.0))


def _state(ctx: Context, key: str) -> dict[str, Any] | None:
    """The JSON quant state bitsandbytes packs into a uint8 tensor, checked."""
    info = ctx.info(key)
    if info is None or info.dtype != "uint8" or info.numel > MAX_STATE_BYTES:
        return None
    try:
        state = json.loads(bytes(ctx.load(key).reshape(-1).tolist()).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(state, dict):
        return None
    shape, size = state.get("shape"), state.get("blocksize")
    if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
        return None
    if type(size) is not int or size <= 0:
        return None
    nested = state.get("nested_blocksize")
    if nested is not None and (type(nested) is not int or nested <= 0):
        return None
    return state


def _dtype(name: Any, ctx: Context) -> str:
    name = name.removeprefix("torch.") if isinstance(name, str) else ""
    return name if name in ("float32", "float16", "bfloat16") else ctx.out_dtype()
