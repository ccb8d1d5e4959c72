"""Pickle-based files (``torch.save`` zip and legacy files, TorchScript archives), opened by the
loading policy that never runs code from the file:

1. the pickles are scanned first (every global they name, and nesting that could crash any
   unpickler), which also checks the zip archive;
2. ``torch.load(weights_only=True)``, memory-mapped;
3. when torch refuses, the structural view: our own unpickler, where every global is an inert
   stand-in and tensors are rebuilt from the archive's raw records;
4. a real load only with ``trust=True``, which only an explicit decision of the user sets.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import BinaryIO

from ckpt_gui.core.build import build_tree, describe_loaded, no_data
from ckpt_gui.core.checkpoint import Checkpoint, size_on_disk
from ckpt_gui.core.errors import CorruptError, UnsafeError
from ckpt_gui.core.formats.torch_file import load_torch_file
from ckpt_gui.core.safety.filecheck import printable
from ckpt_gui.core.safety.scan import MAX_SAFE_TUPLE_DEPTH, ScanReport, scan_file
from ckpt_gui.core.safety.standins import check_nesting
from ckpt_gui.core.safety.structural import structural_load
from ckpt_gui.core.tree import Node
from ckpt_gui.core.units import human_bytes

# A tree larger than this (counting shared objects once per reference) is not something a
# person saved on purpose; refusing it keeps a few bytes of pickle memo from hanging the app.
MAX_TREE_NODES = 2_000_000
# Memory a pickle may ask for beyond the size of its file (bytearray(n), copies of byte strings,
# uninitialised tensors): a checkpoint has no reason to, so a little is shown and more refused.
MAX_ALLOCATED_BYTES = 64 * 2**20


def open_pickled(
    path: Path,
    fmt: str,
    *,
    structural: bool,
    trust: bool,
    opened: tuple[BinaryIO, int] | None = None,
) -> Checkpoint:
    """Open a pickle-based file by the policy above. ``opened``: the file as detection left it
    open (``detect_and_open``), for the scan to read instead of opening it again."""
    report = scan_file(path, opened=opened)
    if report.max_tuple_depth > MAX_SAFE_TUPLE_DEPTH:
        raise CorruptError(f"{path}: tuples nested {report.max_tuple_depth} deep; refused")
    check_allocations(path, fmt, report)
    if fmt != "torchscript":  # TorchScript is never handed to torch: it would compile code
        try:
            obj, locations = load_torch_file(path, mmap=fmt == "torch-zip")
            ckpt = _checkpoint(path, fmt, obj, describe_loaded(locations), report, "weights_only")
            if report.uninitialised:
                _mark_uninitialised(ckpt.root, locations)
            return ckpt
        except UnsafeError:
            if not (structural or trust):
                raise
    if trust and fmt != "torchscript":
        obj, locations = load_torch_file(path, mmap=fmt == "torch-zip", trust=True)
        ckpt = _checkpoint(path, fmt, obj, describe_loaded(locations), report, "trusted")
        ckpt.view_note = "loaded with code execution allowed, as you asked"
        return ckpt
    if not structural:
        raise UnsafeError(f"{path}: a TorchScript archive; loading it would run its code")
    return structural_checkpoint(path, fmt, report)


def structural_checkpoint(path: Path, fmt: str, report: ScanReport) -> Checkpoint:
    """The structural view of a scanned file: our own unpickler, every global an inert
    stand-in, tensors rebuilt from the archive's records (views of a private map of the file)."""
    result = structural_load(path)

    def storage_key(t: object) -> object:
        ref = result.storage_of(t)  # type: ignore[arg-type]
        return ref.key if ref is not None else None

    describe = describe_loaded(
        location_of=result.location, storage_key_of=storage_key, offset_of=result.storage_offset
    )
    ckpt = _checkpoint(path, fmt, result.obj, describe, report, "structural")
    ckpt._closers.append(result.close)
    if fmt == "torchscript":
        ckpt.kind = "TorchScript module"
    names = sorted({f"{g.module}.{g.name}" for g in report.globals if g.verdict != "safe"})
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    ckpt.view_note = (
        "structural view: torch's safe loader refused this file, so it was read without "
        f"running anything from it (it names {shown or 'globals torch does not allow'})"
    )
    return ckpt


def check_allocations(
    path: Path | str, fmt: str, report: ScanReport, on_disk: int | None = None
) -> None:
    """Refuse, before any loader runs, a file whose pickles would make it allocate memory the
    file does not hold: ``bytearray(10**9)`` or ``torch.FloatTensor(2**32)`` from a few hundred
    bytes, or a legacy file declaring storages larger than itself (torch allocates a legacy
    storage whole before reading it). ``on_disk``: the file's size (read from ``path`` when
    not given)."""
    if on_disk is None:
        on_disk = size_on_disk(Path(path))
    if report.allocated_bytes > on_disk + MAX_ALLOCATED_BYTES:
        what, nbytes, _ = max(report.allocations, key=lambda a: a[1])
        calls = len(report.allocations)
        more = f" (one of {calls:,} such calls)" if calls > 1 else ""
        raise CorruptError(
            f"{path}: its pickle asks for {printable(what, 80)}{more}: "
            f"{human_bytes(report.allocated_bytes)} in all from a file of "
            f"{human_bytes(on_disk)}; refused"
        )
    declared = sum(report.declared_storage.values())
    if fmt == "torch-legacy" and declared > on_disk:
        raise CorruptError(
            f"{path}: declares {human_bytes(declared)} of tensor data but holds "
            f"{human_bytes(on_disk)} (truncated, or a lie); refused"
        )


def _mark_uninitialised(root: Node, locations: dict[int, str]) -> None:
    """Tensors whose memory no storage of the file backs, in a file whose pickle called a
    legacy constructor with sizes: their bytes are whatever this process's heap held."""
    for node in root.tensors():
        info = node.tensor
        assert info is not None
        if info.numel and info.storage_id not in locations:
            info.no_data = "uninitialised (no data in the file)"
            info.loader = partial(no_data, node.key, info.no_data)


def _checkpoint(
    path: Path, fmt: str, obj: object, describe: object, report: ScanReport, view: str
) -> Checkpoint:
    check_nesting(obj, str(path), max_nodes=MAX_TREE_NODES)
    root = build_tree(obj, describe)  # type: ignore[arg-type]
    return Checkpoint(
        path=path,
        format=fmt,
        root=root,
        size_on_disk=size_on_disk(path),
        view=view,
        scan=report,
        obj=obj,
    )
