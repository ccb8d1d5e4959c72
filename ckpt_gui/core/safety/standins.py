"""Inert stand-ins for what a pickle names, and helpers that read pickled ``nn.Module`` trees.

Split from ``structural.py`` to keep files small; ``structural`` re-exports everything here.
Nothing in this module calls anything the file provides: walking is iterative (deep nesting
cannot overflow the stack) and tracks identities (shared references and cycles cannot hang it).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from ckpt_gui.core.errors import CorruptError

MAX_DEPTH = 256  # nesting a reader may walk recursively
MAX_NODES = 20_000_000  # nodes a naive tree walk would visit, counting shared objects each time
MAX_KEY_NODES = 256  # tuples/frozensets inside one dict key or set element


class StandIn:
    """What a global in the file names (``os.system``, ``__main__.Net``): never imported.
    Calling it only records the call and returns a ``StandInObject``."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __call__(self, *args: Any, **kwargs: Any) -> StandInObject:
        return StandInObject(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<stand-in for {_short(self.qualname)}>"


class StandInObject:
    """What calling a stand-in would have built (an instance of a class the file names, or the
    result of a call such as ``os.system(...)``): the callee, its arguments, and what the pickle
    then set on it: ``state`` (BUILD / ``__setstate__``), ``dictitems`` (SETITEMS, for dict
    subclasses) and ``listitems`` (APPENDS, for list subclasses)."""

    __slots__ = ("callee", "args", "kwargs", "state", "dictitems", "listitems")

    def __init__(
        self,
        callee: StandIn | StandInObject,
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.callee = callee
        self.args = args
        self.kwargs = kwargs or {}
        self.state: Any = None
        self.dictitems: dict[Any, Any] = {}
        self.listitems: list[Any] = []

    def _origin(self) -> tuple[StandIn, int]:
        """The global at the bottom of a chain of calls (``f()()``), and the chain's length."""
        callee, calls = self.callee, 0
        while isinstance(callee, StandInObject):  # iterative: a chain may be long
            callee, calls = callee.callee, calls + 1
        return callee, calls

    @property
    def module(self) -> str:
        return self._origin()[0].module

    @property
    def name(self) -> str:
        origin, calls = self._origin()
        return origin.name + ("()" * calls if calls <= 3 else "()...()")

    @property
    def qualname(self) -> str:
        """``module.Name`` of the class or function the pickle would have called."""
        return f"{self.module}.{self.name}"

    def setitem(self, key: Any, value: Any) -> None:
        try:
            self.dictitems[key] = value
        except TypeError:  # a key a real __setitem__ might accept; keep it visible anyway
            self.dictitems[f"<unhashable key #{len(self.dictitems)}>"] = (key, value)

    def __call__(self, *args: Any, **kwargs: Any) -> StandInObject:
        return StandInObject(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<stand-in for {_short(self.qualname)}(...)>"


def _short(text: str, limit: int = 120) -> str:
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _children(obj: Any) -> list[Any]:
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, StandInObject):
        return [
            obj.callee,
            *obj.args,
            *obj.kwargs.values(),
            obj.state,
            *obj.dictitems.keys(),
            *obj.dictitems.values(),
            *obj.listitems,
        ]
    return []


def check_nesting(
    obj: Any, label: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> tuple[int, int]:
    """Depth and expanded size of a loaded object graph; ``CorruptError`` when either is over
    the limit. The expanded size counts a shared object once per reference, which is what a
    naive tree walk would visit: a few kilobytes of pickle memo can otherwise describe a tree
    of 2**100 nodes. Works on any loaded object (a ``torch.load`` result too)."""
    done: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, list[Any] | None]] = [(obj, None)]
    while stack:
        node, kids = stack.pop()
        key = id(node)
        if kids is not None:  # all children done: combine
            on_path.discard(key)
            depth, size = 0, 1
            for kid in kids:
                kid_depth, kid_size = done.get(id(kid), (1, 1))  # missing: a cycle back-edge
                depth, size = max(depth, kid_depth), min(size + kid_size, max_nodes + 1)
            done[key] = (depth + 1, size)
            if depth + 1 > max_depth:
                raise CorruptError(f"{label}: objects nested more than {max_depth} levels deep")
            if size > max_nodes:
                raise CorruptError(
                    f"{label}: shared references expand to more than {max_nodes:,} entries"
                )
            continue
        if key in done or key in on_path:
            continue
        children = _children(node)
        if not children:
            done[key] = (1, 1)
            continue
        on_path.add(key)
        stack.append((node, children))
        stack.extend((c, None) for c in children if id(c) not in done and id(c) not in on_path)
    return done[id(obj)]


def check_key(key: Any, label: str, verified: dict[int, Any]) -> None:
    """Refuse a dict key or set element whose hashing could crash or stall Python: hashing a
    tuple recurses in C without a depth check, so a tuple nested 10**5 deep kills the process."""
    if not isinstance(key, (tuple, frozenset)) or id(key) in verified:
        return
    seen = 0
    stack = [(key, 1)]
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_KEY_NODES or depth > 64:
            raise CorruptError(f"{label}: a dictionary key or set element is nested too deeply")
        stack.extend((c, depth + 1) for c in node if isinstance(c, (tuple, frozenset)))
    verified[id(key)] = key  # keeps it alive so the id stays valid


def _module_state(obj: Any) -> dict[Any, Any] | None:
    state = obj.state if isinstance(obj, StandInObject) else None
    if isinstance(state, dict) and isinstance(state.get("_modules"), dict):
        return state
    return None


def is_module(obj: Any) -> bool:
    """A stand-in of a pickled ``nn.Module`` (its state has ``_parameters`` and ``_modules``)."""
    return _module_state(obj) is not None


def _named_children(state: dict[Any, Any]) -> list[tuple[str, Any]]:
    return [(k, m) for k, m in state["_modules"].items() if isinstance(k, str) and m is not None]


def module_items(obj: Any) -> tuple[list[tuple[str, Any]], set[str]]:
    """One level of a pickled ``nn.Module`` stand-in, in ``state_dict`` order: its parameters,
    its persistent buffers, then its child modules (stand-ins themselves); and the names of the
    buffers among them. Walking these level by level gives the module tree, and the dotted
    paths of its tensors are exactly the ``state_dict`` keys."""
    state = _module_state(obj)
    if state is None:
        return [], set()
    skip = state.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, (set, frozenset)) else set()
    items: list[tuple[str, Any]] = []
    buffers: set[str] = set()
    for table, is_buffer in ((state.get("_parameters"), False), (state.get("_buffers"), True)):
        if not isinstance(table, dict):
            continue
        for name, value in table.items():
            if isinstance(name, str) and isinstance(value, torch.Tensor):
                if is_buffer and name in skip:
                    continue
                items.append((name, value))
                if is_buffer:
                    buffers.add(name)
    items.extend(_named_children(state))
    return items, buffers


def module_state_dict(obj: Any) -> OrderedDict[str, torch.Tensor]:
    """The ``state_dict()`` a pickled ``nn.Module`` stand-in would return: parameters, then
    persistent buffers, then each child's under ``child.``, in registration order."""
    return OrderedDict((key, t) for key, t, _ in module_entries(obj))


def module_entries(obj: Any) -> list[tuple[str, torch.Tensor, bool]]:
    """``(state_dict key, tensor, is_buffer)`` for a pickled ``nn.Module`` stand-in."""
    out: list[tuple[str, torch.Tensor, bool]] = []
    path: list[int] = []  # ids of the modules above the one being visited, to break cycles
    stack: list[tuple[str, Any, int]] = [("", obj, 0)]
    while stack:
        prefix, module, depth = stack.pop()
        del path[depth:]
        state = _module_state(module)
        if state is None or id(module) in path or depth > MAX_DEPTH:
            continue
        path.append(id(module))
        params = state.get("_parameters")
        buffers = state.get("_buffers")
        skip = state.get("_non_persistent_buffers_set")
        skip = skip if isinstance(skip, (set, frozenset)) else set()
        for table, is_buffer in ((params, False), (buffers, True)):
            if not isinstance(table, dict):
                continue
            for name, value in table.items():
                if isinstance(name, str) and isinstance(value, torch.Tensor):
                    if not (is_buffer and name in skip):
                        out.append((prefix + name, value, is_buffer))
        children = _named_children(state)
        stack.extend((f"{prefix}{n}.", m, depth + 1) for n, m in reversed(children))
    return out


@dataclass
class ModuleNode:
    """One module of a pickled model: attribute name, class ("torch.nn.modules.linear.Linear")."""

    name: str
    type_name: str
    children: list[ModuleNode] = field(default_factory=list)


def module_tree(obj: Any) -> ModuleNode | None:
    """The module hierarchy of a pickled ``nn.Module`` stand-in (None if it is not one)."""
    if not is_module(obj):
        return None
    root = ModuleNode("", obj.qualname)
    stack: list[tuple[ModuleNode, Any, list[int]]] = [(root, obj, [id(obj)])]
    while stack:
        node, module, path = stack.pop()
        if len(path) > MAX_DEPTH:
            continue
        for name, child in _named_children(_module_state(module) or {"_modules": {}}):
            type_name = child.qualname if isinstance(child, StandInObject) else type(child).__name__
            child_node = ModuleNode(name, type_name)
            node.children.append(child_node)
            if is_module(child) and id(child) not in path:
                stack.append((child_node, child, [*path, id(child)]))
    return root
