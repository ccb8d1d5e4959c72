"""Proof that an export is right: re-open the written file as any reader would and compare every
tensor with the source, byte for byte (or with the source cast to the chosen dtype), chunk by
chunk so that memory stays flat however large the tensors are.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Generator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.chunks import (
    TINY_ELEMS,
    broadcast_dims,
    compact,
    paired_chunks,
    plain_tiny,
)
from ckpt_gui.core.export.byte_ranges import CheckedRange
from ckpt_gui.core.export.casting import BLOCK, cast
from ckpt_gui.core.export.file_compare import iter_compare_in_files
from ckpt_gui.core.export.options import ExportError, ExportPlan, KeptTensor
from ckpt_gui.core.export.spans import FileMaps, Files, advise_sequential
from ckpt_gui.core.export.writers import (
    CHUNK_ELEMENTS,
    CancelCheck,
    check_cancel,
    raw_bytes,
    same_bytes,
)
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node, dtype_from_name


@dataclass
class Verification:
    tensors: int  # tensors compared
    values: int  # non-tensor values compared
    cast: str | None  # the dtype floating tensors were compared after casting to, if any
    # Over every finite source value that stayed finite: max |result - source| / |source|.
    max_rel_error: float = 0.0
    became_inf: int = 0  # finite source values that are ±inf in the result
    clamped: int = 0  # finite source values beyond the target's range, saturated
    flushed: int = 0  # non-zero source values that are zero in the result

    def describe(self) -> str:
        what = f"all {self.tensors} tensors"
        if self.values:
            what += f" and {self.values} values"
        if not self.cast:
            return f"verified: {what} equal the source exactly"
        effects = [f"max relative error {self.max_rel_error:.3g}"]
        for count, text in (
            (self.became_inf, "became ±inf"),
            (self.clamped, "clamped to the largest finite value"),
            (self.flushed, "flushed to zero"),
        ):
            if count:
                effects.append(f"{count:,} value{'s' * (count != 1)} {text}")
        return f"verified: {what} equal the source cast to {self.cast} (" + "; ".join(effects) + ")"

    def figures(self) -> dict[str, Any]:
        """The figures every verification has, as keyword arguments: a merge's or a
        dequantization's verification made from ``iter_verify``'s, or the plain one that
        describes the tensors they left alone."""
        return {f.name: getattr(self, f.name) for f in fields(Verification)}


def iter_verify(
    plan: ExportPlan,
    source: Checkpoint,
    result_path: Path,
    cancel: CancelCheck | None = None,
    *,
    skip: Collection[str] = (),
    checked: Sequence[CheckedRange] = (),
) -> Generator[tuple[str, int], None, Verification]:
    """Compare the result at ``result_path`` with ``source`` as ``plan`` says it should be.
    Yields ``(key, bytes compared)``; raises ``ExportError`` at the first difference.
    ``skip``: result names whose values the caller checks itself (a merge's merged weights);
    they are still checked to be there with the planned dtype and shape. ``checked``: ranges
    of the result compared with the source once written and not written since (a head
    start's records): a tensor lying in one is not read again."""
    try:
        # A trusted source (the user's explicit --trust) wrote the same objects back: read the
        # result the same way, or its values could not be compared with the source's.
        result = open_checkpoint(result_path, trust=source.view == "trusted")
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to re-open is a failed verification
        raise ExportError(f"verification failed: the result cannot be read back ({exc})") from None
    with result, Files() as files:
        maps = FileMaps()
        source_nodes = {n.key: n for n in source.root.walk()}
        result_nodes = {n.key: n for n in result.root.walk()}
        expected = {k.name for k in plan.kept}
        found = {n.key for n in result.root.tensors()}
        if expected != found:
            missing, extra = sorted(expected - found), sorted(found - expected)
            what = f"{missing[0]!r} is missing" if missing else f"{extra[0]!r} is unexpected"
            raise ExportError(f"verification failed: {what} in the result")
        verification = Verification(len(plan.kept), len(plan.kept_values), None)
        policy = plan.options.on_overflow
        batch = _Batch(policy, verification)
        for kept in plan.kept:
            src, out = source_nodes[kept.key], result_nodes[kept.name]
            try:
                _check_description(kept, out)
            except ExportError:
                yield from batch.flush(cancel)  # the tensors before this one fail first
                raise
            if kept.dtype != kept.source_dtype:
                verification.cast = kept.dtype
            if kept.name in skip:
                continue
            dtype = dtype_from_name(kept.dtype)
            if batch.add(kept.name, src, out, dtype):
                if batch.full():
                    yield from batch.flush(cancel)
                continue
            yield from batch.flush(cancel)
            yield from _compare(
                kept.name, src, out, dtype, policy, verification, cancel, (maps, files, checked)
            )
        yield from batch.flush(cancel)
        _check_sharing(plan, result_nodes)
        _check_types(plan, source_nodes, result_nodes)
        for src_key, out_key in plan.kept_values:
            _check_value(out_key, source_nodes[src_key], result_nodes.get(out_key))
    return verification


def _check_description(kept: KeptTensor, out: Node) -> None:
    info, name = out.tensor, kept.name
    assert info is not None
    if info.dtype != kept.dtype or info.shape != kept.shape:
        raise ExportError(
            f"verification failed: {name!r} is {info.dtype} {list(info.shape)}, "
            f"expected {kept.dtype} {list(kept.shape)}"
        )
    if info.device != "cpu":
        raise ExportError(f"verification failed: {name!r} would load on {info.device}")
    if info.container != kept.container:
        what = {"numpy": "a NumPy array", "tensor": "a tensor"}
        raise ExportError(
            f"verification failed: {name!r} is {what[info.container]}, "
            f"expected {what[kept.container]}"
        )


def _check_types(plan: ExportPlan, source: dict[str, Node], result: dict[str, Node]) -> None:
    """Every kept container and value has the type it had (a tuple stays a tuple, an
    OrderedDict an OrderedDict) under a key of the type it had (an int key stays an int),
    wherever the source format records Python types."""
    if plan.flat:
        return  # one flat name -> tensor mapping by definition
    for src_key, name in plan.structure.items():
        src = source[src_key]
        out = result.get(_result_key(plan, src))
        if out is None or src.kind == "tensor" or src.type_name is None:
            continue
        if out.type_name != src.type_name:
            raise ExportError(
                f"verification failed: {out.key!r} is a {out.type_name}, expected {src.type_name}"
            )
        renamed = name != src.name
        if not renamed and out.key_type != src.key_type:
            was, now = src.key_type or "str", out.key_type or "str"
            raise ExportError(
                f"verification failed: the key of {out.key!r} is a {now}, expected a {was}"
            )


def _result_key(plan: ExportPlan, node: Node) -> str:
    """The key a kept source node has in the result (the structure holds one name a level)."""
    parts: list[str] = []
    current: Node | None = node
    while current is not None and current.key != plan.root_key:
        parts.append(plan.structure[current.key])
        current = current.parent
    return ".".join(reversed(parts))


def _compare(
    name: str,
    src: Node,
    out: Node,
    dtype: torch.dtype,
    policy: str,
    verification: Verification,
    cancel: CancelCheck | None,
    in_files: tuple[FileMaps, Files, Sequence[CheckedRange]] | None = None,
) -> Generator[tuple[str, int], None, None]:
    a, b = src.load(), out.load()
    if a.is_quantized or b.is_quantized:  # never cast: the integers and the scales must match
        if not _same_quantized(a, b):
            raise ExportError(f"verification failed: {name!r} differs from the source")
        yield name, b.numel() * b.element_size()
        return
    reading = None
    if in_files and a.dtype == dtype:
        maps, files, checked = in_files
        reading = iter_compare_in_files(maps, files, a, b, checked)
    if reading is not None:  # both lie whole in files: read them, with no map in between
        while True:
            check_cancel(cancel)
            try:
                n = next(reading)
            except StopIteration as stop:
                same = stop.value
                break
            yield name, n
        if not same:
            raise ExportError(f"verification failed: {name!r} differs from the source")
        return
    if broadcast_dims(a) and broadcast_dims(a) == broadcast_dims(b):
        (a, _), (b, _) = compact(a), compact(b)  # the same repetition: compare what repeats
    advise_sequential(a)
    advise_sequential(b)
    for chunk_a, chunk_b in paired_chunks(a, b, CHUNK_ELEMENTS):
        check_cancel(cancel)
        expected = cast(chunk_a, dtype, policy)
        # Bytes, not values: NaN == NaN here, and -0.0 must stay -0.0.
        if not same_bytes(expected, chunk_b):
            raise ExportError(f"verification failed: {name!r} differs from the source")
        if chunk_a.dtype != dtype and chunk_a.is_floating_point():
            _measure_cast(chunk_a, chunk_b, verification)
        yield name, chunk_b.numel() * chunk_b.element_size()


# Tiny tensors (``chunks.TINY_ELEMS``) are compared many at once, end to end: the per-tensor
# path's dozen torch calls would make a file of 100,000 tiny tensors take seconds to verify.
_BATCH_ELEMS = 1 << 16
_BATCH_TENSORS = 4096


class _Batch:
    """Tiny tensors waiting to be compared together: their source values (cast as planned)
    and their result values, end to end per dtype, compared as bytes in one call. Casting and
    comparing are element by element, so the verdict is each tensor's; on a difference, the
    batch is compared again one tensor at a time to name the first that differs."""

    def __init__(self, policy: str, verification: Verification) -> None:
        self.policy, self.verification = policy, verification
        self.items: list[tuple[str, Node, Node, torch.dtype, torch.Tensor, torch.Tensor]] = []
        self.elems = 0

    def add(self, name: str, src: Node, out: Node, dtype: torch.dtype) -> bool:
        """Take the pair when both are tiny plain tensors; False leaves it to ``_compare``."""
        s, o = src.tensor, out.tensor
        if s is None or o is None or s.layout != "strided" or o.layout != "strided":
            return False
        if s.numel > TINY_ELEMS:
            return False
        a, b = src.load(), out.load()
        if not (plain_tiny(a) and plain_tiny(b) and a.shape == b.shape and b.dtype == dtype):
            return False
        self.items.append((name, src, out, dtype, a.reshape(-1), b.reshape(-1)))
        self.elems += a.numel()
        return True

    def full(self) -> bool:
        return len(self.items) >= _BATCH_TENSORS or self.elems >= _BATCH_ELEMS

    def flush(self, cancel: CancelCheck | None) -> Generator[tuple[str, int], None, None]:
        items, self.items, self.elems = self.items, [], 0
        if not items:
            return
        check_cancel(cancel)
        groups: dict[tuple[torch.dtype, torch.dtype], list[int]] = {}
        for i, (_, _, _, dtype, a, _) in enumerate(items):
            groups.setdefault((a.dtype, dtype), []).append(i)
        for (source_dtype, dtype), members in groups.items():
            if source_dtype == dtype:  # bytes end to end (any dtype, float4 and bits too)
                a = torch.cat([raw_bytes(items[i][4]) for i in members])
                b = torch.cat([raw_bytes(items[i][5]) for i in members])
                same = torch.equal(a, b)
            else:  # a floating cast, element by element, as _compare does it
                a = torch.cat([items[i][4] for i in members])
                b = torch.cat([items[i][5] for i in members])
                same = same_bytes(cast(a, dtype, self.policy), b)
            if not same:  # name the first that differs, as comparing one by one would
                quiet = Verification(0, 0, None)
                for name, src, out, target, _, _ in items:
                    for _ in _compare(name, src, out, target, self.policy, quiet, None):
                        pass
                raise ExportError("verification failed: the result differs from the source")
            if source_dtype != dtype and a.is_floating_point():
                _measure_cast(a, b, self.verification)
        yield items[-1][0], sum(item[5].numel() * item[5].element_size() for item in items)


def _measure_cast(source: torch.Tensor, result: torch.Tensor, verification: Verification) -> None:
    """What the cast really did to this chunk, measured on the written values, block by
    block (``casting.BLOCK``: the passes stay in the cache)."""
    # Sources of 32 bits or fewer are measured in float32, where a value's difference from its
    # rounding to a narrower format is exact; the largest ratio is then taken in float64 among
    # the few that come near it, so the figure is exactly the float64 one.
    work = torch.float32 if source.element_size() <= 4 else torch.float64
    source, result = source.reshape(-1), result.reshape(-1)
    limit, biggest = torch.finfo(result.dtype).max, torch.finfo(work).max
    largest = 0.0
    for start in range(0, source.numel(), BLOCK):
        a = source[start : start + BLOCK].to(work)
        b = result[start : start + BLOCK].to(work)
        size = a.abs()
        finite = size <= biggest  # NaN compares false (isfinite costs several passes)
        inf = b.abs() == math.inf
        nonzero = size != 0
        verification.became_inf += int((finite & inf).count_nonzero())
        kept = finite & ~inf  # b is finite where a is finite and b is not ±inf
        verification.clamped += int((kept & (size > limit)).count_nonzero())
        verification.flushed += int((nonzero & (b == 0)).count_nonzero())
        kept &= nonzero
        ratio = (b - a).abs_().div_(size).masked_fill_(~kept, 0.0)
        top = float(ratio.max()) if ratio.numel() else 0.0
        if top <= 0.0 or top < largest * (1 - 1e-6):
            continue
        near = kept & (ratio >= top * (1 - 1e-6))  # float32's rounding cannot hide the max
        a64, b64 = a[near].double(), b[near].double()
        largest = max(largest, float(((b64 - a64).abs() / a64.abs()).max()))
    verification.max_rel_error = max(verification.max_rel_error, largest)


def _same_quantized(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not (a.is_quantized and b.is_quantized) or a.qscheme() != b.qscheme():
        return False
    if a.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        params = a.q_scale() == b.q_scale() and a.q_zero_point() == b.q_zero_point()
    else:
        params = (
            a.q_per_channel_axis() == b.q_per_channel_axis()
            and torch.equal(a.q_per_channel_scales(), b.q_per_channel_scales())
            and torch.equal(a.q_per_channel_zero_points(), b.q_per_channel_zero_points())
        )
    return params and torch.equal(a.int_repr(), b.int_repr())


def _check_sharing(plan: ExportPlan, nodes: dict[str, Node]) -> None:
    for kept in plan.kept:
        if kept.shares_with is None:
            continue
        a, b = nodes[kept.name].tensor, nodes[kept.shares_with].tensor
        assert a is not None and b is not None
        if a.storage_id is None or a.storage_id != b.storage_id:
            raise ExportError(
                f"verification failed: {kept.name!r} no longer shares storage with "
                f"{kept.shares_with!r}"
            )


def _check_value(key: str, src: Node, out: Node | None) -> None:
    if out is None or src.kind != out.kind or not _same(src.value, out.value):
        shown = "missing" if out is None else repr(out.value)
        raise ExportError(f"verification failed: value {key!r} is {shown}, expected {src.value!r}")


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):  # 1 == 1.0 == True, but a copy must keep which it was
        return False
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # NaN: the value was kept, it just never equals itself
    return a == b
