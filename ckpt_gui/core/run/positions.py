"""A chunk position of a trajectory in one call to C (``_positions.c``, built with the package
where a C compiler is at hand) when every copy is float32: each copy's moments, each pair's sum
of squared differences and whether the two are the same bytes, each triple's dot product of
consecutive updates, all summed in float64 over chunks that stay in cache. torch's path
(``kernel._Chunk``) serves every other dtype, and every dtype where the kernel is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import torch

_positions: ModuleType | None
try:
    import ckpt_gui.core.run._positions as _positions
except ImportError:  # built without a C compiler
    _positions = None

PointTuple = tuple[int, float, float, float, float, int, int]


def native_fits(pieces: Sequence[torch.Tensor]) -> bool:
    """Whether the kernel can take these chunks: it is built, and they are contiguous 1-D
    float32 chunks of one length on the CPU."""
    if _positions is None or not pieces:
        return False
    n = pieces[0].numel()
    return all(
        p.dtype == torch.float32
        and p.dim() == 1
        and p.numel() == n
        and p.device.type == "cpu"
        and p.is_contiguous()
        for p in pieces
    )


def native_position(
    pieces: Sequence[torch.Tensor],
    points: Sequence[int],
    pairs: Sequence[tuple[int, int]],
    triples: Sequence[tuple[int, int, int]],
) -> tuple[list[PointTuple], list[tuple[float, bool]], list[float]]:
    """The figures of one position, by index into ``pieces`` (which ``native_fits``): per
    point (count, mean, M2, min, max, NaN count, ±Inf count) of its finite values; per pair
    (a, b) (‖b − a‖², same bytes); per triple (a, b, c) ⟨c − b, b − a⟩."""
    if not native_fits(pieces):  # the kernel reads memory by address: nothing else reaches it
        raise ValueError("native_position: chunks the kernel cannot read")
    assert _positions is not None
    n = pieces[0].numel()
    points_out, pairs_out, dots = _positions.position(
        [p.data_ptr() for p in pieces], n, list(points), list(pairs), list(triples)
    )
    return points_out, pairs_out, dots
