"""Merging a LoRA adapter into its base: which base tensors change and how, computed with the
same arithmetic as PEFT's ``merge_and_unload`` so that a float32 merge is bit for bit PEFT's.

``merge_targets`` decides (or refuses, in one line) what a merge does; ``merged_checkpoint``
is a view of the base whose merged tensors are computed when loaded, one module at a time,
which the export writes like any checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable, Generator
from concurrent.futures import Future, wait
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ckpt_gui.core.adapters.base import BasePairing
from ckpt_gui.core.adapters.found import Adapter, AdapterError
from ckpt_gui.core.adapters.modules import LoraModule
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.chunks import drain, serial_torch, submit
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.tree import Node, TensorInfo, dtype_from_name

_CONV = {3: F.conv1d, 4: F.conv2d}


@dataclass(frozen=True)
class MergeTarget:
    """A base weight that becomes W + scale·ΔW."""

    key: str  # the base key
    base: Node  # the base weight
    module: LoraModule
    scale: float
    fan_in_fan_out: bool


@dataclass
class MergeSpec:
    targets: list[MergeTarget]
    replaced: dict[str, Node]  # base key -> the adapter's full tensor (modules_to_save)


def merge_targets(adapter: Adapter, pairing: BasePairing) -> MergeSpec:
    """What merging ``adapter`` into the paired base changes; ``AdapterError`` (one line) when
    the merge would be wrong or incomplete."""
    config = adapter.config
    if config.unsupported:
        raise AdapterError(
            f"{_name(adapter)}: merging an adapter with {config.unsupported[0]} set is not "
            "supported"
        )
    if config.use_dora or any(m.magnitude is not None for m in adapter.tensors.modules):
        raise AdapterError(f"{_name(adapter)}: merging a DoRA adapter is not supported yet")
    if adapter.tensors.other:
        key = printable(adapter.tensors.other[0].key, 120)
        raise AdapterError(
            f"{key} is neither a LoRA factor nor in modules_to_save; a merge would drop it"
        )
    if pairing.missing:
        more = f" (and {len(pairing.missing) - 1} more)" if len(pairing.missing) > 1 else ""
        raise AdapterError(
            f"{printable(pairing.missing[0], 120)}{more} has no weight in "
            f"{printable(str(pairing.base.path), 200)}; is it the adapter's base model?"
        )
    targets = []
    for module in adapter.tensors.modules:
        where = printable(module.module, 120)
        problem = module.problem()
        if problem is None and module.r != config.rank_for(module.name):
            problem = f"the config gives rank {config.rank_for(module.name)}"
        if problem is None and module.kind == "conv" and len(module.a_shape or ()) not in _CONV:
            problem = "a convolution of more than two dimensions"
        if problem is not None:
            raise AdapterError(f"{where}: {problem}; cannot merge")
        if module.module in pairing.mismatch:
            raise AdapterError(f"{where}: {pairing.mismatch[module.module]}; cannot merge")
        node = pairing.weights[module.module]
        fan = config.fan_in_fan_out and module.kind == "linear"
        targets.append(MergeTarget(node.key, node, module, config.scale_for(module.name), fan))
    seen: set[str] = set()
    for target in targets:
        if target.key in seen:
            raise AdapterError(f"{printable(target.key, 120)} is changed by two modules")
        seen.add(target.key)
    replaced = {}
    for saved in adapter.tensors.saved:
        counterpart = pairing.saved.get(saved.node.key)
        if counterpart is None:
            raise AdapterError(
                f"{printable(saved.node.key, 120)} (modules_to_save) has no counterpart in the base"
            )
        if counterpart.key in seen:
            raise AdapterError(f"{printable(counterpart.key, 120)} is both merged and replaced")
        replaced[counterpart.key] = saved.node
    return MergeSpec(targets, replaced)


def _name(adapter: Adapter) -> str:
    return printable(str(adapter.config.path), 200)


def _factors(target: MergeTarget) -> tuple[torch.Tensor, torch.Tensor]:
    module = target.module
    assert module.a is not None and module.b is not None
    a, b = module.a.load(), module.b.load()
    if a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    return a, b.to(a.dtype)


def delta_weight(target: MergeTarget) -> torch.Tensor:
    """scale·ΔW in the base weight's layout, as PEFT's ``get_delta_weight`` computes it on the
    CPU (half-precision factors in float32, the product then scaled)."""
    module = target.module
    a, b = _factors(target)
    scale = target.scale
    if module.kind == "embedding":
        return (b @ a).T * scale
    if module.kind == "linear":
        product = b @ a
        return (product.T if target.fan_in_fan_out else product) * scale
    base_shape = tuple(target.base.tensor.shape) if target.base.tensor else ()
    if base_shape[2:4] == (1, 1):
        return (b.squeeze(3).squeeze(2) @ a.squeeze(3).squeeze(2)).unsqueeze(2).unsqueeze(3) * scale
    return _CONV[a.dim()](a.transpose(0, 1), b).transpose(0, 1) * scale


_ROWS_ELEMENTS = 1 << 18  # a block of rows (1 MB of float32): its product, scaled and added, in L2
_ROWS_UNIT = 16  # blocks are a multiple of this many rows (see ``row_blocks``)


def row_blocks(rows: int, columns: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the blocks of rows a merge computes one at a time: about
    ``_ROWS_ELEMENTS`` elements, a multiple of 16 rows, the last one taking the remainder (at
    least as long as the others). The product of a block of B's rows with A is then bit for bit
    the same rows of the whole product B·A (checked by ``tests/core/test_merge_blocks.py`` on
    this machine's BLAS): a block of one or a few rows would take another kernel (a matrix-
    vector product) that sums in another order."""
    step = max(_ROWS_UNIT, _ROWS_ELEMENTS // max(1, columns) // _ROWS_UNIT * _ROWS_UNIT)
    starts = list(range(0, rows, step))
    if not starts:
        return []
    if len(starts) > 1 and rows - starts[-1] < step:
        starts.pop()  # the remainder joins the block before it
    return list(zip(starts, [*starts[1:], rows], strict=True))


def merged_weight(target: MergeTarget, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """W + scale·ΔW in W's dtype: PEFT's ``weight += get_delta_weight()`` (computed in the
    wider of the two dtypes, stored in W's), bit for bit. ``buffer``: memory to compute it in
    (a contiguous tensor of W's shape and dtype), when the caller has some to spare."""
    merged = drain(merged_blocks(target, buffer))
    assert merged is not None
    return merged


def merged_blocks(
    target: MergeTarget, buffer: torch.Tensor | None = None, *, keep: bool = True
) -> Generator[torch.Tensor, None, torch.Tensor | None]:
    """``merged_weight``, one block of its leading rows at a time: each yielded once complete,
    in order, while it is still in cache. ``keep``: the blocks are parts of one tensor (in
    ``buffer`` when it fits), returned at the end; else each block is computed in the memory
    of the block before (use it before asking for the next) and nothing is returned."""
    w = target.base.load()
    a, b = _factors(target)
    if target.module.kind != "linear" or target.fan_in_fan_out or w.dtype != a.dtype:
        merged = (w + delta_weight(target)).to(w.dtype).contiguous()  # a transposed ΔW: plainly
        yield merged
        return merged
    # The common case, block by block: the product, scaled, then + W while it is in cache.
    # Element by element the same operations as PEFT's (product * scale, then + W: addition
    # commutes bit for bit), so the same bits.
    shape = (w.shape[0], a.shape[1])
    blocks = row_blocks(*shape)
    if not keep:
        longest = max((stop - start for start, stop in blocks), default=0)
        out = torch.empty((longest, shape[1]), dtype=w.dtype)
    elif buffer is not None and buffer.shape == shape and buffer.dtype == w.dtype:
        out = buffer
    else:
        out = torch.empty(shape, dtype=w.dtype)
    scale = target.scale
    for start, stop in blocks:
        block = out[start:stop] if keep else out[: stop - start]
        torch.mm(b[start:stop], a, out=block)
        yield block.mul_(scale).add_(w[start:stop])
    return out if keep else None


class MergedWeights:
    """The merged weights of ``targets``, loaded in their order: while one is used (written,
    compared), the next ``AHEAD`` are computed on the chunk workers, so the arithmetic overlaps
    the I/O. At most ``AHEAD`` + 1 modules' merged weights exist at a time; ``close`` waits for
    those ahead.

    The memory of a merged weight nobody holds any more is used again for the next one:
    freshly allocated memory costs a page fault per 4 KiB on first touch, which takes longer
    than the merge's arithmetic. What is handed out is a view of that memory, so the memory is
    known to be free once no view of it is left (the storage's use count)."""

    def __init__(self, targets: list[MergeTarget]) -> None:
        self.targets = targets
        self.index = {t.key: i for i, t in enumerate(targets)}
        self.ahead: dict[str, Future[torch.Tensor]] = {}  # in the targets' order
        self.lock = threading.Lock()
        self.spare: list[torch.Tensor] = []  # at most SPARE buffers, handed out as views

    def _compute(self, target: MergeTarget) -> torch.Tensor:
        info = target.base.tensor
        assert info is not None
        shape, dtype = tuple(info.shape), dtype_from_name(info.dtype)
        numel = math.prod(shape)
        with self.lock:  # taken (a view made) under the lock: no other thread takes it too
            free = [b for b in self.spare if _unused(b)]
            fits = [b for b in free if b.dtype == dtype and b.numel() >= numel]
            buffer = min(fits, key=lambda b: b.numel()) if fits else None
            if buffer is None and free and len(self.spare) >= SPARE:
                # Room for a bigger one (by identity: == on tensors compares their values).
                dropped = max(free, key=lambda b: b.numel())
                self.spare = [b for b in self.spare if b is not dropped]
            view = _part(buffer, shape) if buffer is not None else None
        merged = merged_weight(target, view)
        if view is None or merged.data_ptr() != view.data_ptr():
            del view
            if not merged.is_contiguous() or merged.storage_offset():
                return merged
            with self.lock:
                if len(self.spare) >= SPARE:
                    return merged
                buffer = merged  # kept itself: a view would keep it alive (``_base``)
                self.spare.append(buffer)
        assert buffer is not None
        return _part(buffer, shape)  # a view: the buffer is busy while it lives

    def load(self, key: str) -> torch.Tensor:
        with self.lock:
            mine = self.ahead.pop(key, None)
            others = [] if mine is not None else list(self.ahead.values())
            if mine is None:
                self.ahead.clear()  # asked out of order: what was ahead is not wanted
        for future in others:
            future.cancel()
        if mine is not None:
            merged = mine.result()
        else:
            with serial_torch():  # like those ahead: no OpenMP team to wait for per block
                merged = self._compute(self.targets[self.index[key]])
        position = self.index[key]
        with self.lock:
            if position + 1 == len(self.targets):
                self.spare.clear()  # the last one: its memory goes when its user lets go
            for target in self.targets[position + 1 : position + 1 + AHEAD]:
                if target.key not in self.ahead:
                    self.ahead[target.key] = submit(self._compute, target)
        return merged

    def loader(self, key: str) -> Callable[[], torch.Tensor]:
        return lambda: self.load(key)

    def close(self) -> None:
        with self.lock:
            ahead, self.ahead = list(self.ahead.values()), {}
        wait([f for f in ahead if not f.cancel()])
        self.spare.clear()


AHEAD = 2  # merged weights computed ahead of the one in use (one per chunk worker)
SPARE = AHEAD + 1  # buffers kept for reuse: the weight being used and those computed ahead


def _part(buffer: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The start of contiguous ``buffer`` viewed as ``shape``."""
    return buffer.view(-1)[: math.prod(shape)].view(shape)


def _unused(buffer: torch.Tensor) -> bool:
    """Whether no tensor but ``buffer`` itself refers to its memory (its storage's use count:
    ``buffer``'s own reference and the one ``untyped_storage()`` holds while asked). Without
    the count (a torch that lacks it), a buffer is never taken for free."""
    count = getattr(torch._C, "_storage_Use_Count", None)
    if count is None:
        return False
    storage = buffer.untyped_storage()
    return bool(count(storage._cdata) == 2)


def merged_checkpoint(base: Checkpoint, adapter: Adapter, spec: MergeSpec) -> Checkpoint:
    """A view of ``base`` where each merge target loads as its merged weight and each replaced
    tensor as the adapter's; the files it reads are the base's and the adapter's. Close it
    when done (its ``MergedWeights`` may be computing ahead)."""
    order = {n.key: i for i, n in enumerate(base.root.tensors())}
    # In the base's order: the order an export writes (and so loads) them.
    weights = MergedWeights(sorted(spec.targets, key=lambda t: order[t.key]))
    loaders: dict[str, TensorInfo] = {}
    for target in spec.targets:
        info = target.base.tensor
        assert info is not None
        loaders[target.key] = TensorInfo(
            dtype=info.dtype,
            shape=tuple(info.shape),
            stride=None,
            device="cpu",
            loader=weights.loader(target.key),
        )
    for key, node in spec.replaced.items():
        assert node.tensor is not None
        loaders[key] = dataclasses.replace(node.tensor, storage_id=None, bytes_at=None)
    root = _copy_tree(base.root, loaders)
    view = base.with_root(root, [*(base.files or [base.path]), *adapter.files])
    view._closers.append(weights.close)
    return view


def _copy_tree(root: Node, infos: dict[str, TensorInfo]) -> Node:
    """A copy of the tree (labels and roles kept, Python types dropped: the export writes plain
    containers from it) with the tensors of ``infos`` replaced."""
    top = _copy_node(root, infos)
    stack = [(root, top)]
    while stack:
        old, new = stack.pop()
        for child in old.children:
            copy = new.add(_copy_node(child, infos))
            if child.children:
                stack.append((child, copy))
    return top


def _copy_node(node: Node, infos: dict[str, TensorInfo]) -> Node:
    return dataclasses.replace(
        node,
        parent=None,
        children=[],
        tensor=infos.get(node.key, node.tensor),
        type_name=None,
        key_type=None,
        shares_storage_with=None if node.key in infos else node.shares_storage_with,
        tied=False if node.key in infos else node.tied,
    )
