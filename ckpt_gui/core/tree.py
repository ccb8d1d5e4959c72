"""The checkpoint tree: plain Python nodes that mirror the saved object.

Inner nodes are dicts, lists and tuples; leaves are tensors (described by a ``TensorInfo``,
whose data is read only when ``load()`` is called) or plain values. The GUI's item model, the
CLI and the tests all walk this same tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:  # torch is imported when a tensor is loaded: a header needs none of it
    import torch

ROLES = ("parameter", "buffer", "optimizer_state", "other")
T = TypeVar("T")


class _cached(Generic[T]):
    """``functools.cached_property`` without the lock Python 3.11 takes on every first access
    (a few microseconds each, seconds over a million tensors): the value computed on first
    access is stored in the instance, where later lookups find it first."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> T:
        if obj is None:
            return self  # type: ignore[return-value]
        value = self.compute(obj)
        setattr(obj, self.name, value)  # found before this (non-data) descriptor from now on
        return value


@dataclass
class TensorInfo:
    """What is known about a tensor without reading its data."""

    dtype: str  # torch dtype name without "torch.", e.g. "float32"
    shape: tuple[int, ...]
    stride: tuple[int, ...] | None
    device: str  # where it was saved: "cpu", "cuda:0", ...
    storage_id: Any = None  # equal ids mean one shared storage (tied weights)
    storage_offset: int = 0
    # What the file holds: a torch tensor ("tensor") or a NumPy array ("numpy"), which the tree
    # shows and measures like a tensor but an export must write back as what it was; or
    # "quantized": a quantized weight's logical tensor, which a --dequantize export writes.
    container: str = "tensor"
    # Why it has no data to read ("uninitialised (no data in the file)": a legacy constructor
    # called with sizes; "a meta tensor"): never measured, shown or exported; loading raises.
    no_data: str = ""
    # "strided", or a layout whose loader gives the stored values, end to end, as one 1-D
    # tensor ("sparse_coo", "sparse_csr", ..., "nested"); ``stored`` counts those values.
    layout: str = "strided"
    stored: int | None = None
    # ``(source, offset)`` where the bytes lie, row-major and back to back, in a buffer whose
    # ``source.byte_view(begin, end)`` gives many tensors' bytes at once as one uint8 tensor:
    # statistics then read thousands of tiny tensors in one step (safetensors files). None
    # where each tensor has to be loaded on its own.
    bytes_at: tuple[Any, int] | None = field(default=None, repr=False, compare=False)
    # For a quantized weight's logical tensor (``core/quant``): the ``LogicalTensor`` its
    # values are dequantized through, chunk by chunk; ``loader`` gives a small one whole.
    quant: Any = field(default=None, repr=False, compare=False)

    @property
    def uninitialised(self) -> bool:
        return self.no_data.startswith("uninitialised")

    # Reads the tensor as a CPU tensor, memory-mapped from the file wherever the format allows.
    loader: Callable[[], torch.Tensor] | None = field(default=None, repr=False, compare=False)
    # For a tensor of a remote checkpoint: fetches the bytes ``loader`` will read, in steps,
    # yielding the bytes each step brought (nothing when they are cached); a caller that
    # reports progress or can be cancelled runs it first. None for local data.
    fetch: Callable[[], Iterator[int]] | None = field(default=None, repr=False, compare=False)

    @_cached
    def numel(self) -> int:
        # Cached: the shape never changes once described, and sweeps over a million tensors
        # ask for it several times each.
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def element_size(self) -> int:
        return itemsize(self.dtype)

    @_cached
    def nbytes(self) -> int:
        """Bytes of the data as stored (a sparse tensor's values, not its dense size)."""
        count = self.numel if self.stored is None else self.stored
        return count * self.element_size

    @property
    def contiguous(self) -> bool:
        if self.stride is None:
            return True
        expected = 1
        for size, stride in zip(reversed(self.shape), reversed(self.stride)):
            if size != 1 and stride != expected:
                return False
            expected *= size
        return True


@dataclass(eq=False)
class Node:
    """One entry of the tree. ``key`` is the dotted path from the root (see docs/cli.md)."""

    name: str
    key: str
    kind: str  # "dict" | "list" | "tensor" | "value" | "object"
    parent: Node | None = field(default=None, repr=False)
    children: list[Node] = field(default_factory=list, repr=False)
    tensor: TensorInfo | None = None
    value: Any = None  # for "value" leaves: the Python value
    role: str = "other"  # for tensors: one of ROLES
    label: str | None = None  # what this node was recognised as: "optimizer", "model", ...
    shares_storage_with: str | None = None
    # With ``shares_storage_with``: True when both are the same bytes (tied weights), False
    # when they are distinct parts of one storage (packed buffers, slices of one tensor).
    tied: bool = False
    param: str | None = None  # optimizer state: the parameter it belongs to
    # Set when the node stands in for a class or function the pickle names (structural view):
    # "module.Name" of what loading the file for real would have imported or called.
    standin: str | None = None
    # The Python type of the saved object ("dict", "tuple", "collections.OrderedDict", "int"),
    # and of its key in the parent mapping when that is not a string ("int"): what a real load
    # gives, which a verified export must reproduce. None where the format has no Python types.
    type_name: str | None = None
    key_type: str | None = None
    # Attributes the file set on the object that hide its own methods (``items`` on a dict,
    # ``untyped_storage`` on a tensor): the tree reads through the type, and says so.
    overrides: tuple[str, ...] = ()

    def add(self, child: Node) -> Node:
        child.parent = self
        self.children.append(child)
        return child

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first, in saved order."""
        stack = [self]
        pop, extend = stack.pop, stack.extend
        while stack:
            node = pop()
            yield node
            if node.children:  # most nodes are leaves: nothing to push
                extend(reversed(node.children))

    def tensors(self) -> Iterator[Node]:
        """The tensor nodes of ``walk()``, in the same order."""
        stack = [self]
        pop, extend = stack.pop, stack.extend
        while stack:
            node = pop()
            if node.kind == "tensor":
                yield node
            if node.children:
                extend(reversed(node.children))

    def child(self, name: str) -> Node | None:
        for c in self.children:
            if c.name == name:
                return c
        return None

    def load(self) -> torch.Tensor:
        """The tensor's data on the CPU (memory-mapped where possible)."""
        if self.tensor is None or self.tensor.loader is None:
            raise ValueError(f"{self.key} is not a tensor")
        return self.tensor.loader()


def join_key(parent_key: str, name: str) -> str:
    return f"{parent_key}.{name}" if parent_key else name


# Bytes per element of the dtypes files hold, by name: enough to describe a tensor from a header
# without importing torch (a test checks it against torch). Other dtypes ask torch.
ITEMSIZES = {
    **dict.fromkeys(("float64", "int64", "uint64", "complex64"), 8),
    **dict.fromkeys(("float32", "int32", "uint32", "complex32"), 4),
    **dict.fromkeys(("float16", "bfloat16", "int16", "uint16"), 2),
    **dict.fromkeys(("int8", "uint8", "bool", "float4_e2m1fn_x2"), 1),
    **dict.fromkeys(("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz"), 1),
    **dict.fromkeys(("float8_e5m2fnuz", "float8_e8m0fnu"), 1),
    "complex128": 16,
}
_DTYPES: dict[str, torch.dtype] = {}


def dtypes() -> dict[str, torch.dtype]:
    """Every torch dtype by its name without "torch." ("float32", "float8_e4m3fn"): the one
    table (built on first use, when torch is needed anyway)."""
    if not _DTYPES:
        import torch

        _DTYPES.update(
            (str(d).removeprefix("torch."), d)
            for d in vars(torch).values()
            if isinstance(d, torch.dtype)
        )
    return _DTYPES


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_from_name(name: str) -> torch.dtype:
    try:
        return dtypes()[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}") from None


def itemsize(name: str) -> int:
    """Bytes per element of the dtype called ``name``; ``ValueError`` for no dtype."""
    size = ITEMSIZES.get(name)
    return size if size is not None else dtype_from_name(name).itemsize
