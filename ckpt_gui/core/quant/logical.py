"""``LogicalTensor``: the weight a quantized checkpoint stands for, read back through its raw
parts, a block of rows at a time, so memory stays bounded by a chunk whatever the weight's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from ckpt_gui.core.errors import CorruptError

if TYPE_CHECKING:
    import torch

    from ckpt_gui.core.quant.nibble_stats import BlockMoments

# Reads logical rows [start, stop) of the weight viewed as (rows, last dimension): float32.
RowReader = Callable[[int, int], "torch.Tensor"]
SCHEMES = (
    "fp8",
    "fp8-block",
    "mxfp4",
    "gptq",
    "awq",
    "compressed-tensors",
    "bnb-nf4",
    "bnb-fp4",
    "bnb-int8",
)  # and "gguf:<TYPE>"
# A whole weight is dequantized in one piece only up to this many elements (64 MiB of float32).
WHOLE_ELEMS = 1 << 24


@dataclass
class LogicalTensor:
    """One quantized weight: its key, scheme, logical shape and dtype (what dequantizing gives;
    chunks are float32), bits, group or block size, and the keys of the raw tensors it is made
    of. ``read(start, stop)`` gives logical rows, the weight seen as (rows, last dimension)."""

    key: str
    scheme: str
    shape: tuple[int, ...]
    dtype: str
    bits: int
    group_size: int | None
    parts: tuple[str, ...]
    read: RowReader = field(repr=False, compare=False)
    # Something shown next to the scheme: "block 128x128", "act-order".
    detail: str = ""
    # Reads the logical rows at the given indices, where a format can gather them cheaply
    # before dequantizing (GGUF's packed rows); None: one row at a time through ``read``.
    take: Callable[[Any], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    # ``read``'s values in any order (statistics and histograms need none), where a scheme can
    # skip the reordering that costs it most; None: ``read``.
    any_order: RowReader | None = field(default=None, repr=False, compare=False)
    # The moments of logical rows [start, stop) read from the packed parts, no value made
    # (``nibble_stats``), where a scheme can; it returns None for a weight it does not fit.
    moments: Callable[[int, int], BlockMoments | None] | None = field(
        default=None, repr=False, compare=False
    )

    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def cols(self) -> int:
        return self.shape[-1] if self.shape else 1

    @property
    def rows(self) -> int:
        return self.numel() // self.cols if self.cols else 0

    def label(self) -> str:
        """``dequantized (gptq, 4-bit, group 128)``: what the figures of this weight are of."""
        what = [self.scheme, f"{self.bits}-bit"]
        if self.group_size:
            what.append(
                f"{'block' if self.scheme.startswith('fp8') else 'group'} {self.group_size}"
            )
        if self.detail:
            what.append(self.detail)
        return f"dequantized ({', '.join(what)})"

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Logical rows ``[start, stop)``, float32 ``(rows, cols)``; parts that disagree with
        what their scheme says (a damaged or hostile file) raise ``CorruptError``."""
        return self._guarded(self.read, start, stop)

    def _guarded(self, read: RowReader, start: int, stop: int) -> torch.Tensor:
        try:
            return read(start, stop)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise CorruptError(
                f"{self.key}: its {self.scheme} parts cannot be read together ({exc})"
            ) from None

    def row_blocks(self, chunk_elems: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` row ranges of at most ``chunk_elems`` elements (at least a row)."""
        step = max(1, chunk_elems // max(self.cols, 1))
        for start in range(0, self.rows, step):
            yield start, min(start + step, self.rows)

    def lazy_chunks(self, chunk_elems: int) -> Iterator[Callable[[], torch.Tensor]]:
        """One call per row block, each giving that block's values as 1-D float32, in no
        particular order (for statistics): the chunk pool runs the calls, so dequantizing is
        spread over its threads like the reductions."""
        for start, stop in self.row_blocks(chunk_elems):
            yield partial(self._flat, start, stop, True)

    def moment_blocks(self) -> MomentBlocks | None:
        """This weight's row blocks as moments (``map_chunks`` takes it like a tensor), where
        its scheme reads them from the packed parts; else None: dequantize the values."""
        if self.moments is None or self._moments(0, 0) is None:
            return None
        return MomentBlocks(self)

    def _moments(self, start: int, stop: int) -> BlockMoments | None:
        assert self.moments is not None
        try:
            return self.moments(start, stop)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:
            raise CorruptError(
                f"{self.key}: its {self.scheme} parts cannot be read together ({exc})"
            ) from None

    def _flat(self, start: int, stop: int, any_order: bool = False) -> torch.Tensor:
        if any_order and self.any_order is not None:
            return self._guarded(self.any_order, start, stop).reshape(-1)
        return self.block(start, stop).reshape(-1)

    def chunks(self, chunk_elems: int) -> Iterator[torch.Tensor]:
        """The dequantized values, 1-D float32 row blocks in order."""
        for start, stop in self.row_blocks(chunk_elems):
            yield self._flat(start, stop)

    def dequantize(self) -> torch.Tensor:
        """The whole weight in float32, in its logical shape (only for a small one: large
        weights are read through ``chunks``)."""
        import torch

        if self.numel() > WHOLE_ELEMS:
            raise MemoryError(
                f"{self.key}: {self.numel():,} values are read chunk by chunk, not whole"
            )
        if self.numel() == 0:
            return torch.empty(self.shape, dtype=torch.float32)
        return self.block(0, self.rows).reshape(self.shape)

    def sample(self, max_elems: int) -> torch.Tensor:
        """Up to ``max_elems`` values from row blocks spread over the weight (1-D float32): a
        histogram's preview of a weight too large to read whole."""
        import torch

        if self.numel() <= max_elems:
            return self.block(0, self.rows).reshape(-1) if self.rows else torch.empty(0)
        blocks = max(1, min(16, max_elems // max(self.cols, 1)))
        per_block = max(1, max_elems // (blocks * max(self.cols, 1)))
        starts = torch.linspace(0, self.rows - per_block, blocks).long().unique().tolist()
        return torch.cat([self.block(s, s + per_block).reshape(-1) for s in starts])

    def rows_at(self, indices: Any) -> torch.Tensor:
        """Logical rows ``indices`` (a sequence of row numbers), float32 ``(n, cols)``."""
        import torch

        if self.take is not None:
            return self.take(indices)
        return torch.cat([self.block(int(i), int(i) + 1) for i in indices])

    def reordered(self, order: Any) -> LogicalTensor:
        """This weight with its rows in ``order`` (row r is row ``order[r]`` of this one): a
        GGUF q/k weight in Hugging Face's row order."""
        return replace(self, read=lambda start, stop: self.rows_at(order[start:stop]), take=None)

    def to_json(self) -> dict[str, Any]:
        """The ``quantized`` entry of ``inspect --json`` (docs/cli.md)."""
        return {
            "key": self.key,
            "scheme": self.scheme,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "bits": self.bits,
            "group_size": self.group_size,
            "parts": list(self.parts),
        }


@dataclass
class MomentBlocks:
    """A weight whose row blocks come as ``BlockMoments`` rather than values: what the chunk
    pool (``map_chunks``) needs of a tensor, with each chunk the moments of a row block."""

    weight: LogicalTensor

    def numel(self) -> int:
        return self.weight.numel()

    @property
    def cols(self) -> int:
        return self.weight.cols

    def _block(self, start: int, stop: int) -> BlockMoments:
        moments = self.weight._moments(start, stop)
        assert moments is not None  # the weight fits, as moment_blocks found
        return moments

    def lazy_chunks(self, chunk_elems: int) -> Iterator[Callable[[], BlockMoments]]:
        for start, stop in self.weight.row_blocks(chunk_elems):
            yield partial(self._block, start, stop)

    def chunks(self, chunk_elems: int) -> Iterator[BlockMoments]:
        for start, stop in self.weight.row_blocks(chunk_elems):
            yield self._block(start, stop)


def iter_dequantized(
    logical: list[LogicalTensor], chunk_elems: int = WHOLE_ELEMS
) -> Iterator[tuple[str, Iterator[torch.Tensor]]]:
    """``(logical key, float32 chunks)`` for every logical tensor: what an export of the
    dequantized weights writes. A weight of at most ``chunk_elems`` values comes as one chunk
    in its logical shape; a larger one as 1-D row blocks, in order, of about that many."""
    for lt in logical:
        if lt.numel() <= chunk_elems:
            yield lt.key, iter((lt.dequantize(),))
        else:
            yield lt.key, lt.chunks(chunk_elems)
