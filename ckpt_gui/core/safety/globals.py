"""Which globals a pickle may name: "safe", "unsafe" or "unknown".

"safe" is what ``torch.load(weights_only=True)`` allows by default, plus a few builtins that only
build plain data. "unsafe" is what can run code, touch files or the network, or import: the classic
``__reduce__`` gadgets. Everything else, a model class, ``torch.nn.Linear``, a NumPy scalar, is
"unknown": we cannot vouch for what its constructor or ``__setstate__`` does. The table is plain
data, so classifying never imports anything and works without torch.
"""

from __future__ import annotations

import _compat_pickle
from collections.abc import Iterable

SAFE, UNSAFE, UNKNOWN = "safe", "unsafe", "unknown"
_RANK = {SAFE: 0, UNKNOWN: 1, UNSAFE: 2}

_DTYPE_NAMES = (
    "float64 float32 float16 bfloat16 complex128 complex64 complex32 bool uint8 int8 int16 int32 "
    "int64 uint16 uint32 uint64 float8_e4m3fn float8_e4m3fnuz float8_e5m2 float8_e5m2fnuz "
    "float8_e8m0fnu float4_e2m1fn_x2 qint8 qint32 quint8 quint4x2 quint2x4 bits1x8 bits2x4 "
    "bits4x2 bits8 bits16 uint1 uint2 uint3 uint4 uint5 uint6 uint7 int1 int2 int3 int4 int5 "
    "int6 int7"
).split()
_STORAGES = (
    "Double Float Half Long Int Short Char Byte Bool BFloat16 ComplexDouble ComplexFloat "
    "QInt8 QInt32 QUInt8 QUInt4x2 QUInt2x4"
).split()
_TENSORS = "Double Float Half Long Int Short Char Byte Bool BFloat16".split()
_REBUILDS = (
    "_rebuild_tensor _rebuild_tensor_v2 _rebuild_tensor_v3 _rebuild_parameter "
    "_rebuild_parameter_with_state _rebuild_qtensor _rebuild_sparse_tensor "
    "_rebuild_meta_tensor_no_storage _rebuild_nested_tensor _rebuild_wrapper_subclass "
    "_rebuild_device_tensor_from_numpy _rebuild_device_tensor_from_cpu_tensor"
).split()
_QSCHEMES = (
    "per_tensor_affine per_tensor_symmetric per_channel_affine per_channel_symmetric "
    "per_channel_affine_float_qparams"
).split()

# Known harmless: constructors of plain data, so naming them cannot run anything (what they are
# given is judged on its own). Listed as "safe" so that they do not drown the real unknowns.
# Not range (list(range(10**9)) is tens of GB), nor Fraction or Decimal (Fraction("1e999999999")
# computes for hours): only constructors whose cost is bounded by what the pickle holds.
_HARMLESS_BUILTINS = "list dict tuple int float str bool object NoneType Ellipsis".split()
_HARMLESS_STDLIB = [
    ("collections", "defaultdict"),  # its factory is a global of its own, judged on its own
    ("typing", "Any"),
    ("argparse", "Namespace"),  # only sets the attributes it is given
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
    ("uuid", "UUID"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
    ("pathlib", "Path"),
]
# NumPy arrays, dtypes and scalars (torch documents these for torch.serialization.safe_globals).
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")

# torch's default weights_only allow-list (torch/_weights_only_unpickler.py, torch 2.6-2.13);
# tests/core/test_scan.py checks that every name torch allows is "safe" here.
SAFE_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    [
        ("collections", "OrderedDict"),
        ("collections", "Counter"),
        ("torch.nn.parameter", "Parameter"),
        ("torch.serialization", "_get_layout"),
        ("torch", "Size"),
        ("torch", "Tensor"),
        ("torch", "device"),
        ("torch._tensor", "_rebuild_from_type_v2"),
        ("torch.storage", "TypedStorage"),
        ("torch.storage", "UntypedStorage"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
        ("builtins", "set"),
        ("builtins", "complex"),
        # Not in torch's list but equally inert: they build plain values from plain values.
        # (protocol <= 2 writes empty bytes as ``bytes()`` and a frozenset as ``frozenset([...])``.)
        ("builtins", "frozenset"),
        ("builtins", "slice"),
        ("builtins", "bytes"),
        ("builtins", "object"),
        # Protocol 0/1 write every instance as ``_reconstructor(cls, base, state)``. It only calls
        # ``base.__new__``/``__init__`` of classes the pickle names as globals of their own, which
        # are judged on their own; by itself it adds no power.
        ("copyreg", "_reconstructor"),
    ]
    + [("builtins", name) for name in _HARMLESS_BUILTINS]
    + _HARMLESS_STDLIB
    + [(module, name) for module in _NUMPY_CORE for name in ("_reconstruct", "scalar")]
    + [("numpy", "dtype"), ("numpy", "ndarray")]
    + [("torch", name) for name in _DTYPE_NAMES + _QSCHEMES]
    + [("torch._utils", name) for name in _REBUILDS]
    + [(m, f"{s}Storage") for m in ("torch", "torch.cuda") for s in _STORAGES]
    + [(m, f"{t}Tensor") for m in ("torch", "torch.cuda") for t in _TENSORS]
    + [(m, f"{t}Tensor") for m in ("torch.sparse", "torch.cuda.sparse") for t in _TENSORS[:-2]]
    + [("torch.sparse", "BFloat16Tensor"), ("torch.cuda.sparse", "BFloat16Tensor")]
)

# Any global from these modules (or their submodules) can run code, spawn processes, touch files
# or the network, or import more modules. (pathlib is not one: DCP metadata pickles a PosixPath,
# and building a path object does nothing; its methods would need a getattr gadget, flagged here.)
UNSAFE_MODULES = frozenset(
    """os posix nt posixpath ntpath subprocess _posixsubprocess sys importlib runpy pickle _pickle
    cPickle dill cloudpickle joblib marshal shelve shutil socket ctypes _ctypes webbrowser code
    codeop pty types multiprocessing _thread threading asyncio signal tempfile glob io _io
    zipimport pkgutil site sysconfig platform pdb bdb timeit trace profile cProfile pydoc inspect gc
    urllib urllib2 http httplib ftplib smtplib telnetlib requests xmlrpc distutils setuptools pip
    ensurepip venv commands popen2 operator""".split()
)
# Single names that are gadgets in otherwise harmless modules.
UNSAFE_NAMES = frozenset(
    [
        ("builtins", name)
        for name in """eval exec execfile compile open getattr setattr delattr __import__ globals
        locals vars input breakpoint exit quit help memoryview reload file apply
        __build_class__""".split()
    ]
    + [
        ("torch", "load"),
        ("torch.serialization", "load"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.hub", "load"),
        ("torch.jit", "load"),
        ("numpy", "load"),
        ("numpy", "loads"),
        ("numpy.lib.npyio", "load"),
        ("numpy.testing._private.utils", "runstring"),
        ("numpy.f2py", "compile"),
        ("copyreg", "add_extension"),
        ("copy_reg", "add_extension"),
    ]
)

# Calls whose bytes argument is itself loaded: a pickle, or (for _load_from_bytes) a torch file.
NESTED_PICKLE_LOADERS = frozenset(
    [
        ("pickle", "loads"),
        ("pickle", "_loads"),
        ("_pickle", "loads"),
        ("cPickle", "loads"),
        ("dill", "loads"),
        ("dill._dill", "loads"),
        ("cloudpickle", "loads"),
        ("numpy", "loads"),
    ]
)
NESTED_TORCH_LOADERS = frozenset([("torch.storage", "_load_from_bytes")])


def normalize(module: str, name: str) -> tuple[str, str]:
    """The names Python 3 would import for a Python 2 pickle (``__builtin__`` -> ``builtins``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def classify(module: str, name: str) -> str:
    """The verdict for one global: ``"safe"``, ``"unsafe"`` or ``"unknown"``."""
    module, name = normalize(module, name)
    if (module, name) in SAFE_GLOBALS:
        return SAFE
    if (module, name) in UNSAFE_NAMES or (module, name) in NESTED_PICKLE_LOADERS:
        return UNSAFE
    if any(module == m or module.startswith(m + ".") for m in UNSAFE_MODULES):
        return UNSAFE
    # Protocol 4 resolves dotted names attribute by attribute, so ``("torch",
    # "serialization.os.system")`` reaches os.system through an innocent-looking module.
    parts = name.split(".")
    if len(parts) > 1 and any(p.startswith("__") or p in UNSAFE_MODULES for p in parts):
        return UNSAFE
    if parts[-1] in ("eval", "exec", "system", "popen", "__import__", "__builtins__"):
        return UNSAFE
    return UNKNOWN


def worst(verdicts: Iterable[str]) -> str:
    """The most severe of some verdicts (``"safe"`` when there are none)."""
    result = SAFE
    for verdict in verdicts:
        if _RANK[verdict] > _RANK[result]:
            result = verdict
    return result
