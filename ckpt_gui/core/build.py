"""Turn a loaded Python object into the checkpoint tree (``Node``s).

Containers become inner nodes, tensors become leaves described by a ``TensorInfo`` whose data
stays where the loader put it (usually a memory map), everything else becomes a value leaf.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch

from ckpt_gui.core.errors import NoDataError
from ckpt_gui.core.safety.numpy_values import Pending
from ckpt_gui.core.safety.standins import StandIn, StandInObject, is_module, module_items
from ckpt_gui.core.tree import Node, TensorInfo, dtype_name, join_key

MAX_DEPTH = 200  # deeper nesting than this is not a checkpoint anyone wrote by hand
PLAIN = (int, float, bool, str, complex, type(None), torch.dtype, torch.device, torch.Size)

TensorDescriber = Callable[[torch.Tensor], TensorInfo]


def describe_loaded(
    locations: Mapping[int, str] | None = None,
    location_of: Callable[[torch.Tensor], str | None] | None = None,
    storage_key_of: Callable[[torch.Tensor], Any] | None = None,
    offset_of: Callable[[torch.Tensor], int | None] | None = None,
) -> TensorDescriber:
    """A describer for tensors already in memory (or memory-mapped) on the CPU.

    ``locations`` maps a storage's data pointer to the device it was saved on, as recorded by
    ``torch.load``'s ``map_location`` callback.
    """
    locations = locations or {}

    def describe(source: torch.Tensor) -> TensorInfo:
        # The callbacks know the object the loader made, so they are asked about ``source``;
        # everything else reads the plain copy, which no attribute from the file can fool.
        t = plain_tensor(source)
        if t.is_nested or t.layout != torch.strided:
            return _describe_stored(t, location_of(source) if location_of else None)
        if t.device.type == "meta":
            return TensorInfo(
                dtype=dtype_name(t.dtype),
                shape=tuple(t.shape),
                stride=tuple(t.stride()),
                device="meta",
                no_data="a meta tensor (a shape and dtype, no data)",
                loader=partial(no_data, "", "a meta tensor (a shape and dtype, no data)"),
            )
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        storage_id = ptr if storage.nbytes() > 0 else None
        saved = location_of(source) if location_of else None
        device = locations.get(ptr) or saved or str(t.device)
        if storage_key_of is not None:
            storage_id = storage_key_of(source)
        offset = offset_of(source) if offset_of is not None else None
        if offset is None:
            offset = int(t.storage_offset()) if t.layout == torch.strided else 0
        return TensorInfo(
            dtype=dtype_name(t.dtype),
            shape=tuple(t.shape),
            stride=tuple(t.stride()) if t.layout == torch.strided else None,
            device=device,
            storage_id=storage_id,
            storage_offset=offset,
            loader=partial(_identity, t),
        )

    return describe


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def no_data(key: str, why: str) -> torch.Tensor:
    """The loader of a tensor with nothing to read."""
    raise NoDataError(f"{key}: {why}" if key else why)


def stored_values(t: torch.Tensor) -> torch.Tensor:
    """What a tensor of any layout stores, end to end, as one 1-D tensor: the values of a
    sparse tensor, the components of a nested one. Statistics and comparisons read these."""
    if t.is_nested:
        if t.layout == torch.jagged:
            return t.values().reshape(-1)
        parts = [c.reshape(-1) for c in t.unbind()]
        return torch.cat(parts) if parts else torch.empty(0, dtype=t.dtype)
    if t.layout == torch.sparse_coo:
        return t.coalesce().values().reshape(-1)
    return t.values().reshape(-1)  # compressed sparse layouts (csr, csc, bsr, bsc)


def _describe_stored(t: torch.Tensor, saved: str | None) -> TensorInfo:
    """A sparse or nested tensor: its dense shape where it has one, its stored values loaded."""
    values = stored_values(t)
    layout = "nested" if t.is_nested else str(t.layout).removeprefix("torch.")
    shape = (values.numel(),) if t.is_nested else tuple(int(n) for n in t.shape)
    return TensorInfo(
        dtype=dtype_name(t.dtype),
        shape=shape,
        stride=None,
        device=saved or str(t.device),
        layout=layout,
        stored=values.numel(),
        loader=partial(_identity, values),
    )


def plain_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a plain tensor over the same data. A Parameter becomes its data (all a viewer
    needs); a tensor carrying attributes from the file (a pickle's state can set
    ``untyped_storage`` or ``stride`` on the object, hiding the methods) becomes a fresh
    object without them. Called through the class, so no attribute can answer instead."""
    if t.requires_grad or vars(t):  # requires_grad is a property: no attribute can hide it
        return torch.Tensor.detach(t)
    return t


def overrides(value: Any, kind: type) -> tuple[str, ...]:
    """Names the file set on ``value`` (through a pickle's BUILD state) that hide methods or
    attributes of ``kind``: ``items`` on an OrderedDict, ``untyped_storage`` on a tensor."""
    try:
        names = vars(value)
    except TypeError:  # no instance dict: nothing can be hidden
        return ()
    return tuple(str(n) for n in names if isinstance(n, str) and hasattr(kind, n))


def mapping_items(value: Mapping[Any, Any]) -> Iterable[tuple[Any, Any]]:
    """The entries of a mapping as its type defines them: ``dict.items`` for every dict
    (OrderedDict, defaultdict, ...), so an ``items`` attribute from the file cannot replace
    them."""
    return dict.items(value) if isinstance(value, dict) else value.items()


def build_tree(obj: Any, describe: TensorDescriber, name: str = "", key: str = "") -> Node:
    """The tree of ``obj``; cycles and absurd nesting become value leaves, never a hang."""
    on_path: set[int] = set()

    def visit(value: Any, name: str, key: str, depth: int) -> Node:
        node = _visit(value, name, key, depth)
        if node.standin is None:
            node.type_name = type_name(value)
        return node

    def _visit(value: Any, name: str, key: str, depth: int) -> Node:
        if isinstance(value, torch.Tensor):
            node = Node(name=name, key=key, kind="tensor", tensor=describe(value))
            node.overrides = overrides(value, torch.Tensor)
            return node
        array = numpy_tensor(value)
        if array is not None:  # a NumPy array: browsed, measured and exported like a tensor
            info = describe(array)
            info.container = "numpy"
            return Node(name=name, key=key, kind="tensor", tensor=info)
        if isinstance(value, PLAIN) or _is_scalar_like(value):
            return Node(name=name, key=key, kind="value", value=_plain(value))
        if isinstance(value, (bytes, bytearray)):
            return Node(name=name, key=key, kind="value", value=_short_bytes(bytes(value)))
        if isinstance(value, (set, frozenset)):
            return Node(name=name, key=key, kind="value", value=_short_repr(value))
        if isinstance(value, StandIn):
            return Node(name=name, key=key, kind="value", value=repr(value), standin=value.qualname)
        if isinstance(value, Pending):  # a NumPy call whose state never came: as inert as any
            qualname = value.callee.qualname
            return Node(name=name, key=key, kind="value", value=repr(value), standin=qualname)
        if id(value) in on_path:
            return Node(name=name, key=key, kind="value", value="<reference cycle>")
        if depth > MAX_DEPTH:
            return Node(name=name, key=key, kind="value", value="<nested too deeply>")
        items: Iterable[tuple[Any, Any]]
        buffers: set[str] | None = None
        if isinstance(value, StandInObject):
            node, items, buffers = _standin_node(value, name, key)
        elif isinstance(value, Mapping):
            node = Node(name=name, key=key, kind="dict")
            node.overrides = overrides(value, dict)
            items = mapping_items(value)
        elif isinstance(value, (list, tuple)):
            node = Node(name=name, key=key, kind="list")
            items = enumerate(value)
        else:
            return Node(name=name, key=key, kind="value", value=_short_repr(value))
        on_path.add(id(value))
        try:
            for k, v in items:
                child_name = str(k)
                child = node.add(visit(v, child_name, join_key(key, child_name), depth + 1))
                if node.kind != "list" and type(k) is not str:
                    child.key_type = type_name(k)
        finally:
            on_path.discard(id(value))
        if buffers is not None:  # a pickled module: roles are known exactly
            for child in node.children:
                if child.kind == "tensor":
                    child.role = "buffer" if child.name in buffers else "parameter"
        if node.kind == "list" and all(c.kind == "value" for c in node.children):
            node.value = _short_repr([c.value for c in node.children])
        return node

    root = visit(obj, name, key, 0)
    mark_shared_storage(root)
    return root


def type_name(value: Any) -> str:
    """``dict``, ``tuple``, ``collections.OrderedDict``, ``numpy.ndarray``: the type a real
    load gives ``value`` (verification compares them, so a copy cannot change a tuple to a list
    or an int key to a string)."""
    kind = type(value)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def is_numeric_array(value: Any) -> bool:
    """A plain NumPy array of bool, integers, floats or complex numbers."""
    return type(value) is np.ndarray and value.dtype.kind in "biufc"


def numpy_tensor(value: Any) -> torch.Tensor | None:
    """A NumPy array of a dtype torch has (bool, integers, floats, complex), as a CPU tensor
    over the same memory; ``None`` for anything else (object arrays, records, subclasses)."""
    if not is_numeric_array(value):
        return None
    array = value if value.dtype.isnative else value.astype(value.dtype.newbyteorder("="))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays: nobody writes to them
        try:
            return torch.from_numpy(array)
        except (TypeError, ValueError):  # negative strides, a dtype torch lacks
            try:
                return torch.from_numpy(np.ascontiguousarray(array))
            except (TypeError, ValueError):
                return None


def _standin_node(
    obj: StandInObject, name: str, key: str
) -> tuple[Node, list[tuple[Any, Any]], set[str] | None]:
    """An object the pickle would have built by calling ``obj.qualname``: a pickled module
    shows its state_dict (and which entries are buffers); anything else shows its arguments
    and state."""
    node = Node(name=name, key=key, kind="object", standin=obj.qualname)
    if is_module(obj):
        members, buffers = module_items(obj)
        node.value = f"<module {obj.qualname}>"
        node.label = "module"  # recognise() names the outermost one of a tree "model"
        return node, list(members), buffers
    node.value = readable(obj)
    items: list[tuple[Any, Any]] = []
    if obj.args:
        items.append(("args", list(obj.args)))
    items.extend(obj.kwargs.items())
    if isinstance(obj.state, Mapping):
        items.extend(obj.state.items())
    elif obj.state is not None:
        items.append(("state", obj.state))
    items.extend(obj.dictitems.items())
    items.extend((i, v) for i, v in enumerate(obj.listitems))
    return node, items, None


# Plain-data classes whose pickled arguments are rebuilt for display by their own C constructors
# (never imported from the file: these are the standard library's, checked by exact name).
_DATETIMES = {
    "datetime.datetime": (datetime.datetime, 10),
    "datetime.date": (datetime.date, 4),
    "datetime.time": (datetime.time, 6),
}


def readable(obj: StandInObject, depth: int = 0) -> str:
    """What an object a file names looks like, without building it: ``Namespace(lr=0.5)``,
    ``PosixPath('runs/a')``, ``datetime.datetime(2024, 1, 2, 3, 4, 5)``, ``Mode(3)``,
    ``defaultdict(<list>, {'a': [1]})``: the class named, its arguments and state shown."""
    qualname, name = obj.qualname, obj.name
    args = obj.args
    known = _DATETIMES.get(qualname)
    if known is not None and args and type(args[0]) is bytes and len(args[0]) == known[1]:
        try:
            return repr(known[0](args[0]))  # type: ignore[call-arg]
        except (TypeError, ValueError):
            pass
    if obj.module == "pathlib" and args and all(type(a) is str for a in args):
        return _cut(f"{name}({'/'.join(args)!r})")
    shown = [_shown(a, depth) for a in args]
    if isinstance(obj.state, Mapping):
        shown += [f"{k}={_shown(v, depth)}" for k, v in obj.state.items() if isinstance(k, str)]
    elif obj.state is not None:
        shown.append(_shown(obj.state, depth))
    if obj.dictitems:
        shown.append(_short_repr({k: _plain_view(v) for k, v in obj.dictitems.items()}, 80))
    if obj.listitems:
        shown.append(_short_repr([_plain_view(v) for v in obj.listitems], 80))
    return _cut(f"{name}({', '.join(shown)})")


def _shown(value: Any, depth: int) -> str:
    if isinstance(value, StandInObject):
        return readable(value, depth + 1) if depth < 2 else f"{value.name}(…)"
    if isinstance(value, StandIn):
        return f"<{value.name}>"
    if isinstance(value, torch.Tensor):
        return f"<tensor {list(value.shape)}>"
    return _short_repr(value, 60)


def _plain_view(value: Any) -> Any:
    return _shown(value, 2) if isinstance(value, (StandIn, StandInObject, torch.Tensor)) else value


def mark_shared_storage(root: Node) -> None:
    """Point every tensor that reuses an earlier tensor's storage at that tensor's key, and say
    whether it is tied (the very same bytes: offset, shape, stride and dtype) or a distinct part
    of a shared storage (an LSTM's packed weights are views of one flat buffer)."""
    first: dict[Any, str] = {}
    same_view: dict[Any, str] = {}
    for node in root.tensors():
        info = node.tensor
        assert info is not None
        if info.storage_id is None:
            continue
        view = (info.storage_id, info.storage_offset, info.shape, info.stride, info.dtype)
        tied_to = same_view.setdefault(view, node.key)
        owner = first.setdefault(info.storage_id, node.key)
        if tied_to != node.key:
            node.shares_storage_with, node.tied = tied_to, True
        elif owner != node.key:
            node.shares_storage_with = owner


def _is_scalar_like(value: Any) -> bool:
    # NumPy scalars and similar: anything with a scalar ``item()`` and no length.
    return (
        type(value).__module__ == "numpy"
        and hasattr(value, "item")
        and not hasattr(value, "__len__")
    )


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Size):
        return list(value)
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if _is_scalar_like(value):
        return value.item()
    return value


def _short_bytes(value: bytes) -> str:
    return f"<{len(value)} bytes>" if len(value) > 64 else repr(value)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value's repr must never break the tree
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
