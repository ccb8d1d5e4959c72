"""The rows the tree view shows, built from the core tree without touching it.

A model state_dict is flat (``layers.0.attn.weight``); users think in modules, so dotted names
are grouped into module rows here. Building the rows is plain Python and runs on the loading
worker, so the GUI thread only wraps a ready tree in a model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ckpt_gui.core.memory import gc_paused
from ckpt_gui.core.tree import Node, join_key


class Item:
    """One row: a core ``Node``, or a module row grouping tensors that share a dotted prefix."""

    __slots__ = (
        "name",
        "key",
        "node",
        "parent",
        "children",
        "row",
        "numel",
        "nbytes",
        "tensors",
        "dtype",
    )

    def __init__(self, name: str, key: str, node: Node | None, parent: Item | None) -> None:
        self.name = name
        self.key = key
        self.node = node
        self.parent = parent
        self.children: list[Item] = []
        self.row = 0
        self.numel = 0
        self.nbytes = 0
        self.tensors = 0
        self.dtype = ""  # the tensors' dtype below this row, "mixed" when they differ

    @property
    def kind(self) -> str:
        return self.node.kind if self.node is not None else "module"

    @property
    def is_tensor(self) -> bool:
        return self.node is not None and self.node.kind == "tensor"

    def walk(self) -> Iterator[Item]:
        stack = [self]
        pop, extend = stack.pop, stack.extend
        while stack:
            item = pop()
            yield item
            if item.children:
                extend(reversed(item.children))

    def ancestors(self) -> Iterator[Item]:
        item = self.parent
        while item is not None:
            yield item
            item = item.parent


def rows_with_depth(root: Item, limit: int) -> list[tuple[Item, int]]:
    """The rows below ``root`` in order with their depth (0 for top-level rows), at most
    ``limit`` of them."""
    out: list[tuple[Item, int]] = []
    stack = [(child, 0) for child in reversed(root.children)]
    while stack and len(out) < limit:
        item, depth = stack.pop()
        out.append((item, depth))
        stack.extend((child, depth + 1) for child in reversed(item.children))
    return out


def build_items(root: Node, group_modules: bool = True) -> Item:
    """The row tree for ``root``; an invisible root item holds the top-level rows."""
    with gc_paused():  # a row per node: half a million objects for a file of tiny tensors
        top = Item("", root.key, root, None)
        _fill(top, root.children, group_modules)
        _count(top)
    return top


def _fill(parent: Item, children: list[Node], group_modules: bool) -> None:
    if group_modules and any("." in c.name for c in children):
        _fill_grouped(parent, children, group_modules)
        return
    for node in children:
        item = _add(parent, Item(node.name, node.key, node, parent))
        if node.children:
            _fill(item, node.children, group_modules)


def _fill_grouped(parent: Item, children: list[Node], group_modules: bool) -> None:
    """Nest ``a.b.c`` under module rows ``a`` and ``b``, keeping the saved order."""
    modules: dict[str, Item] = {}  # a name's dotted head ("a.b") -> its module row
    for node in children:
        head, dot, last = node.name.rpartition(".")
        holder = parent
        if dot:
            found = modules.get(head)
            holder = found if found is not None else _module_rows(parent, head, modules)
        item = _add(holder, Item(last, node.key, node, holder))
        if node.children:
            _fill(item, node.children, group_modules)


def _module_rows(parent: Item, head: str, modules: dict[str, Item]) -> Item:
    """The module row for the dotted ``head`` below ``parent``, made with the rows above it
    where they are missing; each is kept in ``modules`` under its own dotted head."""
    holder, prefix, end = parent, parent.key, -1
    for part in head.split("."):
        end += len(part) + 1
        prefix = join_key(prefix, part)
        found = modules.get(head[:end])
        if found is None:
            found = modules[head[:end]] = _add(holder, Item(part, prefix, None, holder))
        holder = found
    return holder


def _add(parent: Item, item: Item) -> Item:
    item.row = len(parent.children)
    parent.children.append(item)
    return item


def _count(item: Item) -> None:
    """Elements, bytes and tensor counts of every row, summed over the rows below it. A
    quantized weight's logical row counts its logical elements once, as one tensor, and the
    bytes of its raw parts (what the file holds), never its dequantized size on top."""
    for it in reversed(list(item.walk())):
        node = it.node
        if node is not None and node.kind == "tensor":
            info = node.tensor
            assert info is not None
            it.numel, it.nbytes, it.tensors, it.dtype = info.numel, info.nbytes, 1, info.dtype
            if info.quant is not None:
                it.nbytes = sum(c.nbytes for c in it.children)
                continue
        for c in it.children:
            it.numel += c.numel
            it.nbytes += c.nbytes
            it.tensors += c.tensors
            if c.dtype:
                it.dtype = c.dtype if it.dtype in ("", c.dtype) else "mixed"


_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple:
    """Sort ``layers.2`` before ``layers.10``."""
    return tuple(
        (0, int(p), "") if p.isdigit() else (1, 0, p.lower()) for p in _DIGITS.split(text) if p
    )
