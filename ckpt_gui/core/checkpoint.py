"""An opened checkpoint: its tree, its format, and totals by role and dtype."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckpt_gui.core.tree import Node


@dataclass
class Totals:
    tensors: int = 0
    numel: int = 0
    nbytes: int = 0

    def add(self, numel: int, nbytes: int) -> None:
        self.tensors += 1
        self.numel += numel
        self.nbytes += nbytes


@dataclass
class Checkpoint:
    """What ``open_checkpoint`` returns. Tensor data stays in the file until a node is loaded."""

    path: Path
    format: str  # "torch-zip" | "torch-legacy" | "safetensors" | ... (see docs/cli.md)
    root: Node
    size_on_disk: int
    kind: str = "object"  # what the top object is: "state_dict", "training checkpoint", ...
    notes: list[str] = field(default_factory=list)  # things worth telling the user
    # Every file the checkpoint reads (index and shards, .metadata and DCP storage files), so an
    # export can refuse to replace any of them; empty means just ``path``.
    files: list[Path] = field(default_factory=list)
    # How the file was read: "weights_only" (torch's safe loader), "structural" (our code-free
    # unpickler, for files torch refuses), "trusted" (a real load the user asked for), or
    # "header" (formats with no pickle: safetensors, DCP).
    view: str = "header"
    # That, in a sentence for the user, where it matters ("structural" and "trusted"): kept
    # apart from ``notes`` so that whoever shows it (the window's banner) need not find it there.
    view_note: str | None = None
    scan: Any = None  # the ScanReport of the file's pickles, where it has any
    # The loaded object itself (tensors memory-mapped) for the "weights_only" and "trusted"
    # views, so that an export writes exactly what was opened without loading the file again.
    obj: Any = field(default=None, repr=False)
    # The quantized weights (``core/quant`` ``LogicalTensor``s), found when it was opened.
    logical: list[Any] = field(default_factory=list)
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _view: Node | None = field(default=None, repr=False)
    _by_key: dict[str, Node] | None = field(default=None, repr=False)
    _counts: dict[str, dict[str, list[int]]] | None = field(default=None, repr=False)

    def tensors(self) -> list[Node]:
        """The tensors as the window shows and measures them: the file's tensors, each
        quantized weight's logical tensor (dequantized) in place of its raw parts, which follow
        it with role "quantization". The same as ``root.tensors()`` without quantized weights."""
        return list(self.view_root().tensors())

    def view_root(self) -> Node:
        """``root`` with the quantized weights folded into logical tensors (``quant.view``)."""
        if not self.logical:
            return self.root
        if self._view is None:
            from ckpt_gui.core.quant.view import folded_tree

            self._view = folded_tree(self.root, self.logical)[0]
        return self._view

    def with_root(self, root: Node, files: list[Path] | None = None) -> Checkpoint:
        """A view of this checkpoint with another tree (a merge's, a dequantized export's):
        the same path, format, size, kind and way of reading, reading ``files`` (these
        files by default). Closing it closes only what is added to its own closers."""
        return Checkpoint(
            path=self.path,
            format=self.format,
            root=root,
            size_on_disk=self.size_on_disk,
            kind=self.kind,
            files=list(self.files) if files is None else files,
            view=self.view,
        )

    def find(self, key: str) -> Node | None:
        """The node at ``key`` (the tree does not change once opened, so the index is kept)."""
        if self._by_key is None:
            self._by_key = {}
            for node in self.root.walk():
                self._by_key.setdefault(node.key, node)
        return self._by_key.get(key)

    def totals(self) -> Totals:
        return self._grouped()[""].get("", Totals())

    def totals_by(self, attribute: str) -> dict[str, Totals]:
        """Totals grouped by ``"role"`` or ``"dtype"``, in first-seen order."""
        return self._grouped()["role" if attribute == "role" else "dtype"]

    def _grouped(self) -> dict[str, dict[str, Totals]]:
        """All three groupings from one pass over the tensors, counted once (the tree does not
        change once opened): the window's summary asks for them on the GUI thread, over as
        many as a million tensors. Fresh ``Totals`` each call, so callers may change them."""
        if self._counts is None:
            counts: dict[str, dict[str, list[int]]] = {"": {}, "role": {}, "dtype": {}}
            every, by_role, by_dtype = counts[""], counts["role"], counts["dtype"]
            for node in self.root.tensors():
                info = node.tensor
                assert info is not None
                numel, nbytes = info.numel, info.nbytes
                for table, name in ((every, ""), (by_role, node.role), (by_dtype, info.dtype)):
                    row = table.get(name)
                    if row is None:
                        row = table[name] = [0, 0, 0]
                    row[0] += 1
                    row[1] += numel
                    row[2] += nbytes
            self._counts = counts
        return {
            how: {name: Totals(*row) for name, row in table.items()}
            for how, table in self._counts.items()
        }

    def close(self) -> None:
        """Release the file. Tensors memory-mapped from it live as long as anything refers to
        them, so the tree and the loaded object are dropped too: a closed Checkpoint that is
        still referenced holds no tensor, and its tree is empty."""
        for close in self._closers:
            close()
        self._closers.clear()
        self.root = Node(name="", key="", kind="dict")
        self.logical, self._view = [], None
        self.obj = None
        self._by_key = None
        self._counts = None

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file in a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
