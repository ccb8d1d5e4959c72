"""What an export plan is made of: the options a user chose, the tensors kept (with their output
names and dtypes) and dropped (with a reason), and the plan that holds them. Plain data, shared by
the planner (``plan.py``), the file layout (``layout.py``), the writers and the verification."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.tree import dtype_from_name

# A broadcast (stride-0) view bigger than this is only exported as the storage it views.
MAX_EXPANDED_BYTES = 1 << 30

MODES = ("params", "all")  # the model's state_dict only | the whole checkpoint (CPU copy)
FORMATS = ("pt", "safetensors")
CASTS = ("float32", "float16", "bfloat16")
NUMPY_CHOICES = ("keep", "tensors")  # what a NumPy array in the kept part becomes
STATE_DICT_LABELS = ("model", "EMA")
# What a cast does with finite values beyond the target's range (``casting.cast``).
ON_OVERFLOW = ("error", "clamp", "inf")


class ExportError(CheckpointError):
    """The export cannot be done or was refused; the message is one line for the user."""


@dataclass(frozen=True)
class ExportOptions:
    """Everything the user chooses. ``state_dict``: key of the state_dict to keep in "params"
    mode (``None``: the model's); ``add_prefix`` after ``strip_prefix`` replaces a prefix."""

    mode: str = "params"
    format: str = "pt"
    dtype: str | None = None
    state_dict: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    strip_prefix: str = ""
    add_prefix: str = ""
    shard_size: int | None = None
    # What a cast does with finite values beyond the target's range (ON_OVERFLOW).
    on_overflow: str = "error"
    # What a NumPy array becomes: None refuses to choose for the user (NUMPY_CHOICES).
    numpy: str | None = None


PRESETS = {
    "params": ExportOptions(mode="params", format="safetensors"),
    "cpu": ExportOptions(mode="all", format="pt"),
}


@dataclass
class KeptTensor:
    key: str  # in the source
    name: str  # its key in the result (what ``open_checkpoint`` of the result calls it)
    source_dtype: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int  # in the result
    shares_with: str | None = None  # result name of the tensor whose storage it shares (pt)
    shard: int = 0
    source_container: str = "tensor"  # "numpy": a NumPy array in the source
    container: str = "tensor"  # what the result holds: "numpy" when the array is kept as one


@dataclass
class Dropped:
    key: str
    reason: str
    nbytes: int = 0
    is_tensor: bool = True


@dataclass
class ExportPlan:
    options: ExportOptions
    source: Path
    size_before: int
    state_dict: str | None  # the state_dict kept in "params" mode
    candidates: list[str]  # keys of every state_dict the user may choose ("" = the top)
    kept: list[KeptTensor] = field(default_factory=list)
    kept_values: list[tuple[str, str]] = field(default_factory=list)  # (source key, result key)
    dropped: list[Dropped] = field(default_factory=list)
    # Every kept node (containers too) by source key -> its name in the result's container.
    structure: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # shard file names, then the index
    size_after: int = 0
    size_exact: bool = False
    problems: list[str] = field(default_factory=list)
    # The kept state_dict is a pickled model's module tree: its result is the flat state_dict.
    from_module: bool = False
    # pt output: (tied tensors, distinct views of a shared storage) still sharing, if any.
    shared: tuple[int, int] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def flat(self) -> bool:
        """The result is one flat name -> tensor mapping (safetensors, or any sharded export)."""
        return (
            self.options.format == "safetensors"
            or bool(self.options.shard_size)
            or (self.from_module)
        )

    @property
    def root_key(self) -> str:
        """Source key of the object that becomes the result's top level."""
        return (self.state_dict or "") if self.options.mode == "params" else ""

    @property
    def tensor_bytes(self) -> int:
        return sum(k.nbytes for k in self.kept)

    @property
    def dropped_tensors(self) -> list[Dropped]:
        return [d for d in self.dropped if d.is_tensor]


def is_floating(dtype: str) -> bool:
    return dtype_from_name(dtype).is_floating_point


def output_dtype(dtype: str, cast: str | None) -> str:
    """Casts touch floating tensors only; integers, booleans and complex stay as they are."""
    return cast if cast and is_floating(dtype) else dtype


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"500MiB"`` -> 524_288_000 (HF's units); bytes when bare."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (try 500MB or 5GB)")
    number, unit = float(match.group(1)), (match.group(2) or "b").lower().rstrip("b")
    base = 1024 if unit.endswith("i") else 1000
    power = " kmgt".index(unit[:1]) if unit else 0
    size = int(number * base**power)
    if size <= 0:
        raise ValueError(f"the size must be positive: {text!r}")
    return size
