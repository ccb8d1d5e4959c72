"""``iter_export``: plan, write to a temporary name, verify, rename into place, report.

A generator, so the window runs it on a worker and every ``yield`` is a progress and cancel
point; the command line simply drains it. Closing the generator (cancel) or any error removes
the temporary file: the destination is either the verified result or what it was before.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ckpt_gui.core.build import numpy_tensor
from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.export.atomic import AtomicFile, AtomicFolder, check_destination, write_error
from ckpt_gui.core.export.byte_ranges import CheckedRange, Ledger
from ckpt_gui.core.export.casting import CastEffect
from ckpt_gui.core.export.check import (
    cast_check_bytes,
    describe_effects,
    iter_cast_check,
    refuse_overflow,
)
from ckpt_gui.core.export.head_start import HeadStart, fingerprint
from ckpt_gui.core.export.layout import index_json, safetensors_header
from ckpt_gui.core.export.options import ExportError, ExportOptions, ExportPlan, KeptTensor
from ckpt_gui.core.export.plan import plan_export
from ckpt_gui.core.export.verify import Verification, iter_verify
from ckpt_gui.core.export.writers import (
    CHUNK_ELEMENTS,
    CancelCheck,
    Streamed,
    convert_tensors,
    iter_write_pt,
    iter_write_safetensors,
    kept_tensors,
    rebuild,
)
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.tree import Node, dtype_from_name
from ckpt_gui.core.units import human_bytes

# Checks a written result: (plan, source, result path, cancel) -> yields (key, bytes checked).
Verifier = Callable[
    [ExportPlan, Checkpoint, Path, "CancelCheck | None"],
    Generator[tuple[str, int], None, Verification],
]


@dataclass(frozen=True)
class ExportProgress:
    """Where an export is: ``done`` of ``total`` bytes over writing and verifying together."""

    phase: str  # "writing" | "verifying"
    key: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0


@dataclass
class ExportResult:
    destination: Path
    files: list[Path]
    plan: ExportPlan
    size_after: int
    verification: Verification
    # What the cast did beyond rounding, by source key (check.iter_cast_check).
    cast_effects: dict[str, CastEffect] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what else the user should know (a merge's)

    def describe(self) -> list[str]:
        """The summary a user reads: what was kept and dropped, sizes, the verification."""
        plan = self.plan
        kept = f"kept {count(len(plan.kept), 'tensor')} ({human_bytes(plan.tensor_bytes)})"
        if plan.kept_values:
            kept += f" and {count(len(plan.kept_values), 'value')}"
        lines = [f"exported to {self.destination}", *self.notes, kept, dropped_summary(plan)]
        if len(self.files) > 1:
            shards = len(self.files) - 1
            lines.append(f"{shards} shard{'s' * (shards != 1)} and {self.files[-1].name}")
        lines.append(
            f"size: {human_bytes(plan.size_before)} before, {human_bytes(self.size_after)} after"
        )
        if plan.shared:
            tied, views = plan.shared
            parts = [count(tied, "tied tensor") + " still tied"] if tied else []
            parts += [count(views, "view") + " of shared storages kept as views"] if views else []
            lines.append("; ".join(parts))
        lines.extend("cast: " + line for line in describe_effects(plan, self.cast_effects))
        lines.append(self.verification.describe())
        return lines


def count(n: int, noun: str) -> str:
    """``count(1, "tensor")`` -> ``"1 tensor"``, ``count(3, "tensor")`` -> ``"3 tensors"``."""
    return f"{n} {noun}{'s' * (n != 1)}"


def dropped_summary(plan: ExportPlan) -> str:
    """``dropped 12 tensors (optimizer state 12) and 3 values`` or ``dropped nothing``."""
    tensors = plan.dropped_tensors
    values = len(plan.dropped) - len(tensors)
    if not plan.dropped:
        return "dropped nothing"
    parts = []
    if tensors:
        reasons = Counter(d.reason for d in tensors)
        why = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common())
        size = human_bytes(sum(d.nbytes for d in tensors))
        parts.append(f"{count(len(tensors), 'tensor')} ({size}: {why})")
    if values:
        parts.append(count(values, "value"))
    return "dropped " + " and ".join(parts)


def iter_export(
    source: Checkpoint | str | os.PathLike[str],
    destination: str | os.PathLike[str],
    options: ExportOptions,
    cancel: CancelCheck | None = None,
    *,
    overwrite: bool = False,
    verifier: Verifier | None = None,
    head_start: HeadStart | None = None,
) -> Generator[ExportProgress, None, ExportResult]:
    """Export ``source`` to ``destination``; returns the verified ``ExportResult``.

    ``cancel()`` is polled inside long writes too (the worker's abort flag). An existing
    destination is replaced only with ``overwrite=True`` (``--force``, or the user said so).
    ``verifier``: what checks the written result (``iter_verify`` unless given: a merge checks
    its merged tensors its own way). ``head_start``: storage records already copied to a
    temporary file for this export (``head_start.py``), used where they fit the plan.
    Raises ``ExportError`` (a ``CheckpointError``) with one line when it refuses or fails.
    """
    own = not isinstance(source, Checkpoint)
    ckpt = source if isinstance(source, Checkpoint) else open_checkpoint(source)
    try:
        plan = plan_export(ckpt, options)
        if not plan.ok:
            raise ExportError(plan.problems[0])
        dest = Path(destination)
        check_destination(
            ckpt.path,
            dest,
            bool(plan.files),
            plan.files,
            overwrite=overwrite,
            source_files=ckpt.files,
        )
        checked = cast_check_bytes(plan)
        total = 2 * plan.tensor_bytes + checked
        done = 0
        effects: dict[str, CastEffect] = {}
        if checked:
            checking = iter_cast_check(plan, ckpt, cancel)
            while True:
                try:
                    key, n = next(checking)
                except StopIteration as stop:
                    effects = stop.value
                    break
                done += n
                yield ExportProgress("checking", key, done, total)
            refuse_overflow(plan, effects)
        before = _fingerprint(ckpt)
        adopted = None
        if head_start is not None and not plan.files:
            adopted = head_start.adopt(dest, before[0])
        ledger = Ledger(head_start.placed if adopted and head_start else [])
        target: AtomicFile | AtomicFolder = adopted or (
            AtomicFolder(dest) if plan.files else AtomicFile(dest)
        )
        streamed: dict[str, CastEffect] = {}
        with target:
            yield ExportProgress("writing", "", done, total)
            try:
                written = 0
                for key, n in _write(plan, ckpt, target, cancel, streamed, ledger):
                    written = min(written + n, plan.tensor_bytes)
                    yield ExportProgress("writing", key, checked + written, total)
                # Streamed tensors (dequantized weights) were measured as they were cast.
                effects.update((k, e) for k, e in streamed.items() if e.overflow or e.underflow)
                refuse_overflow(plan, effects)
                assert target.path is not None
                result_path = target.path / plan.files[-1] if plan.files else target.path
                size_after = _size(target.path)
                if verifier is not None:
                    verifying = verifier(plan, ckpt, result_path, cancel)
                else:
                    ranges = _checked(ledger, result_path)
                    verifying = iter_verify(plan, ckpt, result_path, cancel, checked=ranges)
                done = checked + plan.tensor_bytes
                while True:
                    try:
                        key, n = next(verifying)
                    except StopIteration as stop:
                        verification: Verification = stop.value
                        break
                    done += n
                    yield ExportProgress("verifying", key, done, total)
                if _fingerprint(ckpt) != before:  # what was verified may not be what was copied
                    raise ExportError(f"{ckpt.path}: the file changed while it was being exported")
                if isinstance(target, AtomicFolder):
                    target.commit(plan.files)
                else:
                    target.commit()
            except OSError as exc:
                raise write_error(dest, exc) from None
        files = [dest / f for f in plan.files] if plan.files else [dest]
        return ExportResult(dest, files, plan, size_after, verification, effects)
    finally:
        if own:
            ckpt.close()


def _write(
    plan: ExportPlan,
    ckpt: Checkpoint,
    target: AtomicFile | AtomicFolder,
    cancel: CancelCheck | None,
    streamed: dict[str, CastEffect],
    ledger: Ledger,
) -> Iterator[tuple[str, int]]:
    """Writes the planned files; ``streamed`` receives what the cast did to each streamed
    tensor, by source key. ``ledger``: records a head start left in a single .pt file."""
    policy = plan.options.on_overflow
    if isinstance(target, AtomicFile):
        assert target.file is not None
        if plan.options.format == "safetensors":
            yield from _write_safetensors(
                target.file, plan.kept, ckpt, cancel, policy, streamed, ledger
            )
        else:
            places = _Placeholders(plan.kept, policy, streamed)
            if plan.flat:
                obj = _flat_pt_object(plan.kept, ckpt, policy, places)
            else:
                obj = _pt_object(plan, ckpt, places)
            yield from iter_write_pt(target.file, obj, cancel, places.deferred, ledger)
        target.finish()
        return
    for shard, name in enumerate(plan.files[:-1]):
        kept = [k for k in plan.kept if k.shard == shard]
        file = target.open(name)  # the folder closes it: finish() hands it to its fsync
        if plan.options.format == "safetensors":
            yield from _write_safetensors(file, kept, ckpt, cancel, policy, streamed)
        else:
            places = _Placeholders(kept, policy, streamed)
            flat = _flat_pt_object(kept, ckpt, policy, places)
            yield from iter_write_pt(file, flat, cancel, places.deferred)
        target.finish(file)
    file = target.open(plan.files[-1])
    file.write(index_json(plan))
    target.finish(file)


def _write_safetensors(
    file: Any,
    kept: list[KeptTensor],
    ckpt: Checkpoint,
    cancel: CancelCheck | None,
    on_overflow: str,
    streamed: dict[str, CastEffect],
    ledger: Ledger | None = None,
) -> Iterator[tuple[str, int]]:
    nodes = _tensor_nodes(ckpt)
    header = safetensors_header([(k.name, k.dtype, k.shape) for k in kept])
    items = [
        (k.name, _loader(nodes[k.key], k.key, streamed), dtype_from_name(k.dtype)) for k in kept
    ]
    yield from iter_write_safetensors(file, header, items, cancel, on_overflow, ledger)


def _loader(
    node: Node, key: str, streamed: dict[str, CastEffect]
) -> Callable[[], torch.Tensor | Streamed]:
    """What the writer loads a tensor with: the node's loader, or for a quantized weight's
    logical tensor (a ``--dequantize`` export) its dequantized row blocks, in order."""
    logical = node.tensor.quant if node.tensor is not None else None
    if logical is None:
        return node.load
    effect = streamed.setdefault(key, CastEffect())
    return lambda: Streamed(logical.chunks(CHUNK_ELEMENTS), effect)


class _Placeholders:
    """Streamed tensors in a pt object: each an allocated tensor of its planned dtype and
    shape that is never written to (untouched pages hold no memory), whose record torch's
    pickler describes while ``deferred`` gives its bytes, from its stream, as it is written."""

    def __init__(self, kept: list[KeptTensor], policy: str, streamed: dict[str, CastEffect]):
        self.dtypes = {k.key: dtype_from_name(k.dtype) for k in kept}
        self.policy, self.streamed = policy, streamed
        self.deferred: dict[int, Callable[[], Iterator[torch.Tensor]]] = {}

    def load(self, node: Node) -> torch.Tensor:
        info = node.tensor
        if info is None or info.quant is None:
            return node.load()
        dtype = self.dtypes.get(node.key)
        if dtype is None:  # not kept: never written
            return torch.empty(info.shape)
        tensor = torch.empty(info.shape, dtype=dtype)
        if tensor.numel():
            stream = _loader(node, node.key, self.streamed)
            self.deferred[tensor.untyped_storage().data_ptr()] = lambda: _cast(
                stream(), dtype, self.policy
            )
        return tensor


def _cast(stream: torch.Tensor | Streamed, dtype: torch.dtype, policy: str) -> Iterator[Any]:
    assert isinstance(stream, Streamed)
    return stream.cast_chunks(dtype, policy)


def _flat_pt_object(
    kept: list[KeptTensor], ckpt: Checkpoint, on_overflow: str, places: _Placeholders
) -> dict[str, torch.Tensor]:
    nodes = _tensor_nodes(ckpt)
    found = {k.key: places.load(nodes[k.key]) for k in kept}
    dtypes = {k.key: dtype_from_name(k.dtype) for k in kept}
    tensors = convert_tensors(found, dtypes, on_overflow)
    return {k.name: tensors[k.key] for k in kept}


def _pt_object(plan: ExportPlan, ckpt: Checkpoint, places: _Placeholders) -> Any:
    """The object to save: the source object (loaded again, memory-mapped, so that tuples,
    OrderedDicts, bytes and sets come back exactly) cut down and converted as planned."""
    obj = _source_object(ckpt, places)
    top = ckpt.find(plan.root_key) if plan.root_key else ckpt.root
    assert top is not None
    for name in _path(top):
        obj = _child(obj, name)
    found = kept_tensors(obj, plan.root_key, plan.structure)
    if len(found) != len(plan.kept):
        raise ExportError(f"{ckpt.path}: the file changed while it was being exported")
    # NumPy arrays kept as arrays go back as they were; the rest become tensors, then cast.
    arrays = {k.key: found.pop(k.key) for k in plan.kept if k.container == "numpy"}
    found = {key: _as_tensor(value) for key, value in found.items()}
    dtypes = {k.key: dtype_from_name(k.dtype) for k in plan.kept if k.container != "numpy"}
    tensors: dict[str, Any] = convert_tensors(found, dtypes, plan.options.on_overflow)
    tensors.update(arrays)
    return rebuild(obj, plan.root_key, plan.structure, tensors)


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    tensor = numpy_tensor(value)
    assert tensor is not None  # kept_tensors found it as an array the tree shows as a tensor
    return tensor


def _source_object(ckpt: Checkpoint, places: _Placeholders) -> Any:
    """The object the checkpoint was loaded from (memory-mapped, so that int keys, tuples,
    OrderedDicts, bytes and sets come back exactly; in the structural view the plan has refused
    every stand-in already), or one built from the tree for formats without a pickle."""
    if ckpt.obj is not None:
        return ckpt.obj
    return _object_from_tree(ckpt.root, places)


def _object_from_tree(node: Node, places: _Placeholders) -> Any:
    """The tree of a format without a pickle (DCP: nested dicts of tensors and values)."""
    if node.kind in ("dict", "object"):
        return {c.name: _object_from_tree(c, places) for c in node.children}
    if node.kind == "list":
        return [_object_from_tree(c, places) for c in node.children]
    if node.kind == "tensor":
        return places.load(node)
    return node.value


def _path(node: Node) -> list[str]:
    names = []
    while node.parent is not None:
        names.append(node.name)
        node = node.parent
    return names[::-1]


def _child(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if str(k) == name:
                return v
    elif isinstance(obj, (list, tuple)):
        return obj[int(name)]
    raise ExportError(f"{name!r} is no longer in the file; it changed while being exported")


def _tensor_nodes(ckpt: Checkpoint) -> dict[str, Node]:
    return {n.key: n for n in ckpt.root.tensors()}


def _fingerprint(ckpt: Checkpoint) -> list[tuple[int, ...] | None]:
    """What changes when one of the source's files is written to or replaced."""
    return [fingerprint(path) for path in dict.fromkeys([ckpt.path, *ckpt.files])]


def _checked(ledger: Ledger, result: Path) -> list[CheckedRange]:
    """The pieces a head start copied and compared with the source, which the writer then
    passed over: no byte of them was written since they were found equal."""
    if not ledger.passed:
        return []
    st = os.stat(result)
    ranges = [p.checked_range((st.st_dev, st.st_ino)) for p in ledger.passed]
    return [r for r in ranges if r is not None]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return path.stat().st_size
