"""Proof that a merged export is right, computed apart from the writer.

Every tensor the merge leaves alone is compared with the base by ``iter_verify``. Every merged
weight is read back from the written file and checked twice against the sources, which are
loaded again for it:
- bit for bit against W + scale·B·A in PEFT's float32 arithmetic (cast as planned), so the file
  holds exactly what ``merge_and_unload`` gives;
- on 32 rows spread over it, against the exact merge computed in float64 from the factor
  matrices (another code path than the writer's): each element's error must stay within
  float32's rounding bound for an r-term product, |error| ≤ (r+3)·2⁻²⁴·(|W| + |scale|·‖Bᵢ‖·‖Aⱼ‖),
  plus half a unit in the last place of the written dtype when that is narrower (2⁻⁸ relative
  for bfloat16, 2⁻¹¹ for float16). A wrong scale, a missing transpose or a module merged into
  the wrong weight is wrong on every row; the bit-for-bit check covers every element.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path

import torch

from ckpt_gui.core.adapters.lowrank import factor_matrices
from ckpt_gui.core.adapters.merge import MergeSpec, MergeTarget, merged_blocks
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.chunks import submit
from ckpt_gui.core.export.casting import cast
from ckpt_gui.core.export.options import ExportError, ExportPlan
from ckpt_gui.core.export.run import Verifier
from ckpt_gui.core.export.verify import Verification, iter_verify
from ckpt_gui.core.export.writers import CancelCheck, check_cancel, same_bytes
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node, dtype_from_name

SAMPLE_ROWS = 32  # rows of each merged weight checked against the float64 merge
_U32 = 2.0**-24
# Unit roundoff of the dtypes narrower than float32 arithmetic.
_NARROW = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


@dataclass
class MergeVerification(Verification):
    merged: int = 0  # merged weights checked
    merged_dtype: str | None = None  # what they were written as, when a cast applied
    max_error: float = 0.0  # largest |written - exact| as a fraction of its rounding bound
    bound: float = 0.0  # the largest float32 bound factor used, (r+3)·2⁻²⁴
    sampled: int = 0  # rows checked against the float64 merge
    narrow: float = 0.0  # the written dtype's unit roundoff, when narrower than float32
    replaced: int = 0  # tensors taken from the adapter's modules_to_save (compared with them)

    def describe(self) -> str:
        if not self.merged:
            return super().describe()
        cast_to = f" and cast to {self.merged_dtype}" if self.merged_dtype else ""
        narrow = f" + {self.narrow:.3g}·|value|" if self.narrow else ""
        merged = (
            f"{self.merged} merged weight{'s' * (self.merged != 1)} equal W + scale·B·A "
            f"recomputed from the sources{cast_to}, bit for bit, and {self.sampled} sampled rows "
            "lie within rounding of the exact (float64) merge (largest error "
            f"{self.max_error:.0%} of the bound {self.bound:.2g}·(|W|+|scale|·‖Bᵢ‖‖Aⱼ‖){narrow})"
        )
        others = self.tensors - self.merged
        if not others:
            return f"verified: {merged}"
        rest = Verification(**{**self.figures(), "tensors": others})
        source = "the base"
        if self.replaced:
            source = (
                f"their source (the base, or for {self.replaced} the adapter's modules_to_save)"
            )
        tail = rest.describe().removeprefix("verified: all ").replace("the source", source)
        return f"verified: {merged}; the other {tail}"


def merge_verifier(spec: MergeSpec) -> Verifier:
    """The verifier ``iter_export`` runs for a merge described by ``spec``."""
    by_key = {t.key: t for t in spec.targets}

    def verify(
        plan: ExportPlan, source: Checkpoint, result_path: Path, cancel: CancelCheck | None
    ) -> Generator[tuple[str, int], None, Verification]:
        merged = {k.name: k for k in plan.kept if k.key in by_key}
        plain = yield from iter_verify(plan, source, result_path, cancel, skip=set(merged))
        out = MergeVerification(**plain.figures())
        out.replaced = sum(1 for k in plan.kept if k.key in spec.replaced)
        try:
            result = open_checkpoint(result_path)
        except Exception as exc:  # noqa: BLE001 - iter_verify read it a moment ago
            raise ExportError(
                f"verification failed: the result cannot be read back ({exc})"
            ) from None
        with result:
            checks = [
                (name, by_key[kept.key], result.find(name), dtype_from_name(kept.dtype))
                for name, kept in merged.items()
            ]
            cast_to = [k.dtype for k in merged.values() if k.dtype != k.source_dtype]
            out.merged_dtype = cast_to[-1] if cast_to else None
            yield from _check_all(checks, plan.options.on_overflow, out, cancel)
        return out

    return verify


_AHEAD = 2  # merged weights checked at a time, each on a worker thread


def _check_all(
    checks: list[tuple[str, MergeTarget, Node | None, torch.dtype]],
    policy: str,
    out: MergeVerification,
    cancel: CancelCheck | None,
) -> Generator[tuple[str, int], None, None]:
    """Each ``(name, target, written node, dtype)`` checked on the worker threads, two at a
    time (each recomputes its weight from the sources: the arithmetic, not the reading, is
    what takes the time); yields each one's name and bytes in order as it passes."""
    pending: deque[tuple[str, Future[_Checked]]] = deque()
    try:
        for name, target, node, dtype in checks:
            check_cancel(cancel)
            assert node is not None  # iter_verify checked every name is there
            pending.append((name, submit(_check_merged, name, target, node, dtype, policy)))
            if len(pending) >= _AHEAD:
                yield _passed(*pending.popleft(), out)
        while pending:
            check_cancel(cancel)
            yield _passed(*pending.popleft(), out)
    finally:
        for _, future in pending:
            future.cancel()
        wait([future for _, future in pending])  # the result file closes after they end


@dataclass
class _Checked:
    nbytes: int
    max_error: float  # of the sampled rows, as a fraction of the bound
    bound: float
    narrow: float
    sampled: int


def _passed(name: str, future: Future[_Checked], out: MergeVerification) -> tuple[str, int]:
    checked = future.result()  # raises what the check raised
    out.merged += 1
    out.max_error = max(out.max_error, checked.max_error)
    out.bound, out.narrow = max(out.bound, checked.bound), max(out.narrow, checked.narrow)
    out.sampled += checked.sampled
    return name, checked.nbytes


def _check_merged(
    name: str,
    target: MergeTarget,
    node: Node,
    dtype: torch.dtype,
    policy: str,
) -> _Checked:
    written = node.load()
    base_shape = target.base.tensor.shape if target.base.tensor is not None else None
    if base_shape is None or tuple(written.shape) != tuple(base_shape):
        raise ExportError(f"verification failed: {name!r} is not W + scale·B·A")
    # Computed again from the sources, not the writer's, a block of rows at a time, each
    # compared while in cache: the recomputed weight never goes to memory.
    rows, start = written.reshape(written.shape[0], -1), 0
    for block in merged_blocks(target, keep=False):
        expected = cast(block, dtype, policy)
        if not same_bytes(expected, rows[start : start + expected.shape[0]]):
            raise ExportError(f"verification failed: {name!r} is not W + scale·B·A")
        start += expected.shape[0]
    if start != rows.shape[0]:
        raise ExportError(f"verification failed: {name!r} is not W + scale·B·A")
    return _check_rows(name, target, written)


def _check_rows(name: str, target: MergeTarget, written: torch.Tensor) -> _Checked:
    """Sampled rows of the written weight against the exact merge in float64: each element
    within float32's rounding bound (plus the written dtype's, when narrower)."""
    module = target.module
    assert module.a is not None and module.b is not None
    a2, b2 = factor_matrices(module.a.load(), module.b.load(), module.kind)
    transposed = module.kind == "embedding" or target.fan_in_fan_out
    # The weight's rows are left @ right: B·A, or (B·A)ᵀ = Aᵀ·Bᵀ.
    left, right = (a2.T, b2.T) if transposed else (b2, a2)
    w = target.base.load()
    rows = w.shape[0]
    w2, got = w.reshape(rows, -1), written.reshape(rows, -1)
    picked = torch.linspace(0, rows - 1, min(rows, SAMPLE_ROWS)).round().long().unique()
    base = w2.index_select(0, picked).double()
    value = got.index_select(0, picked).double()
    lefts = left.index_select(0, picked)
    scale = target.scale
    exact = base + scale * (lefts @ right)
    # |W| + |scale|·‖Bᵢ‖·‖Aⱼ‖ bounds |W| + |scale|·(|B|·|A|)ᵢⱼ (Cauchy-Schwarz).
    size = base.abs() + abs(scale) * torch.outer(
        torch.linalg.vector_norm(lefts, dim=1), torch.linalg.vector_norm(right, dim=0)
    )
    factor = (a2.shape[0] + 3) * _U32
    narrow = max(_NARROW.get(written.dtype, 0.0), _NARROW.get(w.dtype, 0.0))
    allowed = size.mul_(factor).add_(torch.finfo(written.dtype).tiny)
    if narrow:
        allowed.add_(exact.abs(), alpha=narrow)
    error = (value - exact).abs_()
    if not bool((error <= allowed).all()):  # NaN compares False: looked at below
        same = (value == exact) | (value.isnan() & exact.isnan())
        if not bool(((error <= allowed) | (~exact.isfinite() & same)).all()):
            raise ExportError(
                f"verification failed: {name!r} is further from W + scale·B·A than rounding allows"
            )
        error = torch.where(exact.isfinite(), error, 0.0)
    nbytes = written.numel() * written.element_size()
    max_error = float(error.div_(allowed).max())
    return _Checked(nbytes, max_error, factor, narrow, int(picked.numel()))
