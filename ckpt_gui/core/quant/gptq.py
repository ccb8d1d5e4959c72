"""GPTQ and AWQ: 4-bit (or 2- and 8-bit, GPTQ) integers packed eight to an int32.

- GPTQ: ``qweight`` (in/8, out) packs along the input dimension, lowest bits first;
  ``qzeros`` (groups, out/8) along the output dimension; ``scales`` (groups, out); ``g_idx``
  (in) the group of each input column (act-order), else ``i // group_size``. Value =
  scale * (q - (zero + 1)): AutoGPTQ's original ("gptq", v1) format stores zeros minus one;
  ``checkpoint_format: gptq_v2`` does not.
- AWQ: ``qweight`` (in, out/8) and ``qzeros`` pack along the output dimension in the order
  [0, 2, 4, 6, 1, 3, 5, 7]; value = scale * (q - zero).

The logical weight is ``X.weight`` of shape (out, in), as ``nn.Linear`` holds it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.quant import nibble_stats
from ckpt_gui.core.quant.context import (
    LITTLE_ENDIAN,
    Context,
    affine_groups,
    ceil_div,
    unpack_bits,
)
from ckpt_gui.core.quant.logical import LogicalTensor, RowReader
from ckpt_gui.core.quant.nibble_stats import BlockMoments

if TYPE_CHECKING:
    import torch

# Nibble j of an AWQ word holds output 8c + AWQ_ORDER[j]; output k sits in nibble _REVERSE[k].
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)
_REVERSE = (0, 4, 1, 5, 2, 6, 3, 7)
# The scales and zero points of the weights being read (``_Expanded``), for two at a time:
# statistics read one weight's row blocks on two chunk workers, a histogram may read another.
_EXPANDED: dict[object, Any] = {}
_EXPANDED_LOCK = threading.Lock()
_EXPANDED_KEPT = 2


def _expanded(owner: object, make: Any) -> Any:
    """``make()`` for ``owner``, kept while it is one of the last two asked for."""
    with _EXPANDED_LOCK:
        found = _EXPANDED.get(owner)
        if found is not None:
            return found
    made = make()
    with _EXPANDED_LOCK:
        while len(_EXPANDED) >= _EXPANDED_KEPT:
            del _EXPANDED[next(iter(_EXPANDED))]
        _EXPANDED[owner] = made
    return made


def recognise(key: str, ctx: Context) -> LogicalTensor | None:
    if not key.endswith(".qweight"):
        return None
    prefix = key[: -len("qweight")]
    q, zeros, scales = (ctx.info(prefix + n) for n in ("qweight", "qzeros", "scales"))
    if q is None or zeros is None or scales is None or q.dtype != "int32":
        return None
    if len(q.shape) != 2 or len(scales.shape) != 2 or len(zeros.shape) != 2:
        return None
    groups, out = scales.shape
    awq = ctx.method() == "awq" or (q.shape[1] * 8 == out and q.shape[1] != out)
    if awq:
        return _awq(prefix, ctx, q.shape, groups, out)
    return _gptq(prefix, ctx, q.shape, groups, out)


def _group_size(ctx: Context, cols: int, groups: int) -> int | None:
    size = ctx.setting("group_size")
    if type(size) is int and size > 0 and ceil_div(cols, size) == groups:
        return size
    if type(size) is int and size == -1 and groups == 1:
        return cols
    return cols // groups if groups and cols % groups == 0 else None


def _gptq(
    prefix: str, ctx: Context, qshape: tuple[int, ...], groups: int, out: int
) -> LogicalTensor | None:
    bits = ctx.setting("bits", 4)
    if bits not in (2, 4, 8) or qshape[1] != out:
        return None
    per_word = 32 // bits
    cols = qshape[0] * per_word
    size = _group_size(ctx, cols, groups)
    zeros = ctx.info(prefix + "qzeros")
    assert zeros is not None
    if size is None or zeros.shape != (groups, ceil_div(out, per_word)):
        return None
    v1 = ctx.setting("checkpoint_format", "gptq") != "gptq_v2"
    g_idx = prefix + "g_idx"
    has_g_idx = ctx.info(g_idx) is not None
    plain: list[bool] = []  # whether g_idx is i // size, found on the first read

    def zero_codes(start: int, stop: int) -> torch.Tensor:
        """Zero points (plus one in v1) of outputs [start, stop): int32 (groups, n)."""
        import torch

        w0 = start // per_word
        z = unpack_bits(ctx.load(prefix + "qzeros")[:, w0 : ceil_div(stop, per_word)], bits)
        z = z[:, start - w0 * per_word :][:, : stop - start].to(torch.int32)
        return z + 1 if v1 else z

    def zeros_scales(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero points (plus one in v1) and scales of outputs [start, stop): (groups, n)."""
        return zero_codes(start, stop).float(), ctx.load(prefix + "scales")[:, start:stop].float()

    def grouped() -> bool:
        """Whether g_idx is ``i // size`` (checked once): groups of consecutive inputs."""
        import torch

        if not plain:
            idx = ctx.load(g_idx).long() if has_g_idx else None
            plain.append(idx is None or torch.equal(idx, torch.arange(cols) // size))
        return plain[0]

    def read(start: int, stop: int) -> torch.Tensor:
        import torch

        words = ctx.load(prefix + "qweight")[:, start:stop]  # (in/8, n)
        q = unpack_bits(words.transpose(0, 1).contiguous(), bits)  # (n, in) uint8
        z, s = (t.transpose(0, 1) for t in zeros_scales(start, stop))  # (n, groups)
        if grouped():
            return affine_groups(q, z, s, size)
        idx = ctx.load(g_idx).long()
        return torch.sub(q, z[:, idx]).mul_(s[:, idx])

    token = object()  # this weight, for the cache of its expanded scales

    def expanded() -> tuple[torch.Tensor, torch.Tensor] | None:
        """Every output's scales and -(zero + 1)·scale per group, each repeated 4 times (one
        per byte of a word): ``(groups, 4 out)`` float32, or None where q·s - z·s might not
        be (q - z)·s to the last bit. With 16-bit scales and 4-bit codes, q·s and z·s are
        exact in float32 (at most 16 significant bits) and so is their difference, which is
        exactly (q - z)·s; infinite scales would make it inf - inf."""
        import torch

        scales = ctx.load(prefix + "scales")
        if scales.dtype not in (torch.float16, torch.bfloat16):
            return None
        z, s = zeros_scales(0, out)
        if not bool(torch.isfinite(s).all()):
            return None
        s4 = s.repeat_interleave(4, dim=1)
        return s4, z.repeat_interleave(4, dim=1).mul_(s4).neg_()

    def any_order(start: int, stop: int) -> torch.Tensor:
        """The values of ``read`` in the packed layout's order, for statistics: no transpose
        and no interleaving of nibbles (4 bits, groups of consecutive inputs only)."""
        import torch

        if bits != 4 or size % 8 or not grouped():
            return read(start, stop)
        n, rows = stop - start, size // 8
        raw = ctx.load(prefix + "qweight")[:, start:stop].view(torch.uint8)  # (in/8, 4n)
        values = torch.empty(2, groups, rows, 4 * n)
        values[0].copy_((raw & 15).view(groups, rows, 4 * n))  # even inputs of each byte
        values[1].copy_((raw >> 4).view(groups, rows, 4 * n))  # odd inputs
        both = _expanded(token, expanded)
        if both is not None:  # q·s - z·s in one pass: the same bits as (q - z)·s, see above
            s4, neg_zs4 = (t[:, 4 * start : 4 * stop].unsqueeze(1) for t in both)
            return torch.addcmul(neg_zs4, values, s4, out=values)
        z, s = (t.repeat_interleave(4, dim=1).unsqueeze(1) for t in zeros_scales(start, stop))
        return values.sub_(z).mul_(s)

    fits: list[bool] = []  # whether the packed-word statistics apply, found on first use

    def moments(start: int, stop: int) -> BlockMoments | None:
        """The moments of outputs [start, stop) from the packed words (``nibble_stats``), or
        None where they would not be the dequantized values' exactly: other than 4 bits,
        act-order groups, scales other than finite 16-bit floats, or no kernel."""
        if not fits:
            fits.append(bits == 4 and size % 8 == 0 and _fits_kernel(ctx, prefix, grouped))
        if not fits[0]:
            return None
        words = ctx.load(prefix + "qweight")[:, start:stop]
        scales = ctx.load(prefix + "scales")[:, start:stop].float().contiguous()
        zeros = zero_codes(start, stop).contiguous()
        return nibble_stats.gptq_moments(words, zeros, scales, size // 8)

    detail = "act-order" if ctx.setting("desc_act", False) else ""
    extra = (g_idx,) if has_g_idx else ()
    lt = _logical(prefix, ctx, "gptq", (out, cols), bits, size, read, extra, detail)
    lt.any_order = any_order if LITTLE_ENDIAN else None
    lt.moments = moments
    return lt


def _logical(
    prefix: str,
    ctx: Context,
    scheme: str,
    shape: tuple[int, int],
    bits: int,
    size: int,
    read: RowReader,
    extra: tuple[str, ...] = (),
    detail: str = "",
) -> LogicalTensor:
    """The logical ``prefix + "weight"`` of qweight, qzeros and scales (and ``extra`` parts),
    in the scales' dtype unless the config says otherwise."""
    scales = ctx.info(prefix + "scales")
    assert scales is not None
    parts = tuple(prefix + n for n in ("qweight", "qzeros", "scales")) + extra
    dtype = ctx.out_dtype(scales.dtype)
    return LogicalTensor(prefix + "weight", scheme, shape, dtype, bits, size, parts, read, detail)


def _awq(
    prefix: str, ctx: Context, qshape: tuple[int, ...], groups: int, out: int
) -> LogicalTensor | None:
    cols = qshape[0]
    size = _group_size(ctx, cols, groups)
    zeros = ctx.info(prefix + "qzeros")
    assert zeros is not None
    if size is None or qshape[1] * 8 != out or zeros.shape != (groups, out // 8):
        return None

    def unpack(words: torch.Tensor, start: int, n: int) -> torch.Tensor:
        values = unpack_bits(words, 4)
        values = values.reshape(*values.shape[:-1], -1, 8)[..., list(_REVERSE)].flatten(-2)
        return values[..., start % 8 :][..., :n]

    def read(start: int, stop: int) -> torch.Tensor:
        n, w0, w1 = stop - start, start // 8, ceil_div(stop, 8)
        q = unpack(ctx.load(prefix + "qweight")[:, w0:w1], start, n).transpose(0, 1)
        z = unpack(ctx.load(prefix + "qzeros")[:, w0:w1], start, n).transpose(0, 1).float()
        s = ctx.load(prefix + "scales")[:, start:stop].transpose(0, 1).float()
        return affine_groups(q.contiguous(), z, s, size)

    fits: list[bool] = []

    def moments(start: int, stop: int) -> BlockMoments | None:
        """The moments of outputs [start, stop) from the packed words (``nibble_stats``), or
        None where they would not be the dequantized values' exactly (see GPTQ's)."""
        import torch

        if not fits:
            fits.append(_fits_kernel(ctx, prefix, lambda: True))
        if not fits[0]:
            return None
        w0, w1 = start // 8, ceil_div(stop, 8)
        words = ctx.load(prefix + "qweight")[:, w0:w1]
        zeros = unpack(ctx.load(prefix + "qzeros")[:, w0:w1], 0, 8 * (w1 - w0))
        scales = ctx.load(prefix + "scales")[:, 8 * w0 : 8 * w1].float().contiguous()
        codes = zeros.to(torch.int32).contiguous()
        first = start - 8 * w0
        return nibble_stats.awq_moments(words, codes, scales, size, first, first + stop - start)

    lt = _logical(prefix, ctx, "awq", (out, cols), 4, size, read)
    lt.moments = moments
    return lt


def _fits_kernel(ctx: Context, prefix: str, grouped: Callable[[], bool]) -> bool:
    """Whether a 4-bit weight's statistics may come from its packed words (``nibble_stats``):
    the kernel is built, the scales are finite 16-bit floats (so every (q - z)·s is exact in
    float32) and groups are consecutive inputs (``grouped``)."""
    import torch

    info = ctx.info(prefix + "scales")
    return (
        nibble_stats.available()
        and LITTLE_ENDIAN
        and info is not None
        and info.dtype in ("float16", "bfloat16")
        and grouped()
        and bool(torch.isfinite(ctx.load(prefix + "scales")).all())
    )
