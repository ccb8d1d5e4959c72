"""Merging a LoRA adapter into its base: which base tensors change and how, computed with the
same arithmetic as PEFT's ``merge_and_unload`` so that a float32 merge is bit for bit PEFT's.

``merge_targets`` decides (or refuses, in one line) what a merge does; ``merged_checkpoint``
is a view of the base whose merged tensors are computed when loaded, one module at a time,
which the export writes like any checkpoint.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ckpt_gui.core.adapters.base import BasePairing
from ckpt_gui.core.adapters.found import Adapter, AdapterError
from ckpt_gui.core.adapters.modules import LoraModule
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.chunks import submit
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.tree import Node, TensorInfo

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


_ROWS_ELEMENTS = 1 << 16  # scale and add a cache-sized block of rows at a time


def merged_weight(target: MergeTarget) -> torch.Tensor:
    """W + scale·ΔW in W's dtype: PEFT's ``weight += get_delta_weight()`` (computed in the
    wider of the two dtypes, stored in W's), bit for bit."""
    w = target.base.load()
    a, b = _factors(target)
    if target.module.kind != "linear" or target.fan_in_fan_out or w.dtype != a.dtype:
        merged = w + delta_weight(target)
        return merged.to(w.dtype).contiguous()  # a transposed ΔW is stored plainly
    # The common case, in one buffer: the product, then each block of rows scaled and added
    # while it is in cache. Element by element the same operations as PEFT's (product * scale,
    # then + W: addition commutes bit for bit), so the same bits.
    out = b @ a
    rows = max(1, _ROWS_ELEMENTS // max(1, out.shape[1]))
    scale = target.scale
    for start in range(0, out.shape[0], rows):
        block = out[start : start + rows]
        block.mul_(scale).add_(w[start : start + rows])
    return out


class MergedWeights:
    """The merged weights of ``targets``, loaded in their order: while one is used (written,
    compared), the next is computed on a chunk worker, so the arithmetic overlaps the I/O.
    At most two modules' merged weights exist at a time; ``close`` waits for the one ahead."""

    def __init__(self, targets: list[MergeTarget]) -> None:
        self.targets = targets
        self.index = {t.key: i for i, t in enumerate(targets)}
        self.ahead: tuple[str, Future[torch.Tensor]] | None = None
        self.lock = threading.Lock()

    def load(self, key: str) -> torch.Tensor:
        with self.lock:
            ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead[0] == key:
            merged = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            merged = merged_weight(self.targets[self.index[key]])
        following = self.index[key] + 1
        if following < len(self.targets):
            target = self.targets[following]
            with self.lock:
                if self.ahead is None:
                    self.ahead = (target.key, submit(merged_weight, target))
        return merged

    def loader(self, key: str) -> Callable[[], torch.Tensor]:
        return lambda: self.load(key)

    def close(self) -> None:
        with self.lock:
            ahead, self.ahead = self.ahead, None
        if ahead is not None and not ahead[1].cancel():
            wait([ahead[1]])


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
    view = Checkpoint(
        path=base.path,
        format=base.format,
        root=root,
        size_on_disk=base.size_on_disk,
        kind=base.kind,
        files=[*(base.files or [base.path]), *adapter.files],
        view=base.view,
    )
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
