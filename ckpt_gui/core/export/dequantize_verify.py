"""Proof that a dequantized export is right, computed apart from the writer.

Every tensor the export copies is compared with the source by ``iter_verify``. Every
dequantized weight is read back from the written file and compared, bit for bit, with its
parts dequantized again: from the source opened afresh (its parts read from disk again), in
row blocks of another size than the writer's, cast to the written dtype as planned. A block
written out of place, a weight written under another's name, a wrong cast or a part read from
the wrong place differs somewhere; the dequantization itself is tested against each scheme's
reference implementation (``tests/core/quant``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.export.casting import cast
from ckpt_gui.core.export.options import ExportError, ExportPlan
from ckpt_gui.core.export.run import Verifier
from ckpt_gui.core.export.verify import Verification, iter_verify
from ckpt_gui.core.export.writers import CancelCheck, check_cancel, same_bytes
from ckpt_gui.core.quant.logical import LogicalTensor
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node, dtype_from_name

# Row blocks of the check: not the writer's (``writers.CHUNK_ELEMENTS``), so that a block
# written out of place cannot line up with the one it is compared with.
CHECK_ELEMENTS = 3 << 20


@dataclass
class DequantizeVerification(Verification):
    dequantized: int = 0  # dequantized weights checked
    dtypes: list[str] = field(default_factory=list)  # what they were written as

    def describe(self) -> str:
        if not self.dequantized:
            return super().describe()
        rounded = [d for d in self.dtypes if d != "float32"]
        cast_to = f" rounded to {', '.join(rounded)}" if rounded else ""
        done = (
            f"{self.dequantized} dequantized weight{'s' * (self.dequantized != 1)} equal "
            f"their parts dequantized again from the source{cast_to}, bit for bit"
        )
        others = self.tensors - self.dequantized
        if not others:
            return f"verified: {done}"
        rest = Verification(**{**self.figures(), "tensors": others})
        return f"verified: {done}; the other {rest.describe().removeprefix('verified: all ')}"


def dequantize_verifier(reopen: Callable[[], Checkpoint]) -> Verifier:
    """The verifier ``iter_export`` runs for a dequantized export; ``reopen()`` opens the
    source again (the export's view is not trusted to read it)."""

    def verify(
        plan: ExportPlan, source: Checkpoint, result_path: Path, cancel: CancelCheck | None
    ) -> Generator[tuple[str, int], None, Verification]:
        streamed = {k.name: k for k in plan.kept if k.source_container == "quantized"}
        plain = yield from iter_verify(plan, source, result_path, cancel, skip=set(streamed))
        # The cast the other tensors had (iter_verify also counts the dequantized ones').
        cast_to = next(
            (k.dtype for k in plan.kept if k.name not in streamed and k.dtype != k.source_dtype),
            None,
        )
        out = DequantizeVerification(**{**plain.figures(), "cast": cast_to})
        if not streamed:
            return out
        try:
            again, result = reopen(), open_checkpoint(result_path)
        except Exception as exc:  # noqa: BLE001 - both were read a moment ago
            raise ExportError(f"verification failed: cannot read it back ({exc})") from None
        with again, result:
            logical = {lt.key: lt for lt in again.logical}
            for name, kept in streamed.items():
                lt = logical.get(kept.key)
                if lt is None:
                    raise ExportError(
                        f"verification failed: {kept.key!r} is no longer a quantized weight "
                        "of the source"
                    )
                node = result.find(name)
                assert node is not None  # iter_verify checked every name is there
                yield from _check(name, lt, node, kept.dtype, plan.options.on_overflow, cancel)
                out.dequantized += 1
                if kept.dtype not in out.dtypes:
                    out.dtypes.append(kept.dtype)
        return out

    return verify


def _check(
    name: str,
    lt: LogicalTensor,
    node: Node,
    dtype_name: str,
    policy: str,
    cancel: CancelCheck | None,
) -> Generator[tuple[str, int], None, None]:
    dtype = dtype_from_name(dtype_name)
    written = node.load().reshape(-1)  # memory-mapped: read block by block below
    if written.numel() != lt.numel():
        raise ExportError(f"verification failed: {name!r} has {written.numel():,} values")
    for start, stop in lt.row_blocks(CHECK_ELEMENTS):
        check_cancel(cancel)
        expected = cast(lt.block(start, stop).reshape(-1), dtype, policy)
        got = written[start * lt.cols : stop * lt.cols]
        if not same_bytes(expected, got):
            raise ExportError(
                f"verification failed: {name!r} differs from {lt.key!r} dequantized "
                f"(rows {start}-{stop - 1})"
            )
        yield name, got.numel() * got.element_size()
