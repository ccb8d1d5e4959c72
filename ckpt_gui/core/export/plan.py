"""What an export will write: a pure function from a checkpoint and options to the keys kept
(with their output names and dtypes), the keys dropped (with a reason) and the expected size
(the plan's data types are in ``options.py``).

The same plan drives the dialog's live preview, the writers and the verification, so what the
user was shown is exactly what is written and then checked.
"""

from __future__ import annotations

import fnmatch

from ckpt_gui.core.checkpoint import Checkpoint
from ckpt_gui.core.export.layout import SAFETENSORS_DTYPES, assign_shards, estimate_size
from ckpt_gui.core.export.options import (
    CASTS,
    FORMATS,
    MAX_EXPANDED_BYTES,
    MODES,
    NUMPY_CHOICES,
    ON_OVERFLOW,
    STATE_DICT_LABELS,
    Dropped,
    ExportOptions,
    ExportPlan,
    KeptTensor,
    output_dtype,
)
from ckpt_gui.core.safety.missing import unavailable
from ckpt_gui.core.tree import Node, dtype_from_name, join_key
from ckpt_gui.core.units import human_bytes


def state_dict_candidates(root: Node) -> list[Node]:
    """Every dict recognised as a model or EMA state_dict, and every pickled model (structural
    view), in saved order."""
    return [
        n
        for n in root.walk()
        if (n.kind == "dict" and n.label in STATE_DICT_LABELS)
        or (n.kind == "object" and n.label == "model")
    ]


def default_state_dict(candidates: list[Node]) -> Node | None:
    """The model's state_dict (not an EMA) when there is one."""
    for node in candidates:
        if node.label == "model":
            return node
    return candidates[0] if candidates else None


def plan_export(ckpt: Checkpoint, options: ExportOptions) -> ExportPlan:
    """What exporting ``ckpt`` with ``options`` keeps, drops and writes (nothing is read)."""
    candidates = state_dict_candidates(ckpt.root)
    plan = ExportPlan(
        options=options,
        source=ckpt.path,
        size_before=ckpt.size_on_disk,
        state_dict=None,
        candidates=[c.key for c in candidates],
    )
    _check_options(options, plan)
    top = ckpt.root
    if options.mode == "params":
        chosen = _chosen_state_dict(candidates, options, plan)
        if chosen is None:
            return plan
        plan.state_dict, top = chosen.key, chosen
        plan.from_module = chosen.kind == "object"
        _drop_outside(ckpt.root, chosen, plan)
    _Walker(plan, top).run()
    if not plan.kept and not plan.kept_values and not plan.problems:
        plan.problems.append("nothing left to export: every key was dropped")
    _check_names(plan)
    _mark_sharing(ckpt.root, plan)
    assign_shards(plan)
    estimate_size(ckpt.root, plan)
    return plan


def _check_options(options: ExportOptions, plan: ExportPlan) -> None:
    if options.mode not in MODES:
        plan.problems.append(f"unknown export mode {options.mode!r}")
    if options.format not in FORMATS:
        plan.problems.append(f"unknown format {options.format!r} (pt or safetensors)")
    if options.dtype is not None and options.dtype not in CASTS:
        plan.problems.append(f"cannot cast to {options.dtype!r} (float32, float16 or bfloat16)")
    if options.shard_size is not None and options.shard_size <= 0:
        plan.problems.append("the shard size must be positive")
    if options.on_overflow not in ON_OVERFLOW:
        plan.problems.append(f"unknown overflow choice {options.on_overflow!r} (error, clamp, inf)")
    if options.numpy is not None and options.numpy not in NUMPY_CHOICES:
        plan.problems.append(f"unknown NumPy choice {options.numpy!r} (keep or tensors)")


def _chosen_state_dict(
    candidates: list[Node], options: ExportOptions, plan: ExportPlan
) -> Node | None:
    if options.state_dict is not None:
        for node in candidates:
            if node.key == options.state_dict:
                return node
        names = ", ".join(repr(c.key) for c in candidates) or "none"
        plan.problems.append(f"no state_dict {options.state_dict!r} (choose from: {names})")
        return None
    chosen = default_state_dict(candidates)
    if chosen is None:
        plan.problems.append("no model state_dict found; export a CPU copy instead")
    return chosen


def _drop_outside(root: Node, chosen: Node, plan: ExportPlan) -> None:
    """Record every leaf outside the chosen state_dict as dropped, saying why."""
    for node in _leaves(root):
        if node is chosen or _is_inside(node, chosen):
            continue
        owner = _owner_state_dict(node)
        if node.kind == "tensor" and node.role == "optimizer_state":
            reason = "optimizer state"
        elif owner is not None:
            reason = f"state_dict {owner.key!r} not chosen"
        else:
            reason = "not in the model's state_dict"
        plan.dropped.append(Dropped(node.key, reason, _nbytes(node), node.kind == "tensor"))


class _Walker:
    """Walks the kept part of the tree, applying the globs, the renames and the format's limits,
    and numbers list items among the kept ones (the result's keys are computed here)."""

    def __init__(self, plan: ExportPlan, top: Node) -> None:
        self.plan, self.top, self.opts = plan, top, plan.options

    def run(self) -> None:
        self.plan.structure[self.top.key] = ""
        self.visit(self.top, "", included=not self.opts.include)

    def visit(self, node: Node, out_key: str, included: bool) -> bool:
        kept_any, index = False, 0
        for child in node.children:
            name = str(index) if node.kind == "list" else self.rename(node, child.name)
            rel = _relative(child.key, self.top.key)
            if self.matches(self.opts.exclude, child, rel, name):
                for leaf in _leaves(child):
                    self.drop(leaf, "excluded by --exclude")
                continue
            child_included = included or self.matches(self.opts.include, child, rel, name)
            child_out = join_key(out_key, name)
            if child.standin is not None and not self.plan.flat and child_included:
                # Writing it back would need the class (or function) itself; a dict of its
                # state in its place would load as something else.
                for leaf in _leaves(child):
                    self.drop(leaf, "an object ckpt-gui cannot write back")
                self.plan.problems.append(
                    f"{child.key} is {_what(child)}, which {unavailable(child.standin)}; "
                    "export --params-only, or --trust if you trust the file"
                )
                continue
            if child.kind in ("dict", "list", "object") and child.children:
                keep = self.visit(child, child_out, child_included)
            elif child.kind == "tensor":
                keep = child_included and self.keep_tensor(child, child_out)
                if not child_included:
                    self.drop(child, "not matched by --include")
            else:  # a value, or an empty container
                keep = child_included and not self.plan.flat
                if not child_included:
                    self.drop(child, "not matched by --include")
                elif self.plan.flat:
                    self.drop(child, f"{self.container_name()} holds tensors only")
                else:
                    self.plan.kept_values.append((child.key, child_out))
            if keep:
                self.plan.structure[child.key] = name
                kept_any, index = True, index + 1
        return kept_any

    def keep_tensor(self, node: Node, out_key: str) -> bool:
        info = node.tensor
        assert info is not None
        if info.no_data:  # nothing to write (and an uninitialised one's bytes are the heap's)
            self.drop(node, f"no data: {info.no_data}")
            return False
        if info.layout != "strided" and self.plan.flat:
            self.drop(node, f"a {info.layout} tensor")
            self.plan.problems.append(
                f"{node.key} is a {info.layout} tensor; {self.container_name()} holds dense "
                "tensors only (export it as pt)"
            )
            return False
        container = "tensor"
        if info.container == "numpy":
            if not self.numpy_choice_ok(node):
                return False
            container = "numpy" if self.opts.numpy == "keep" else "tensor"
        # A NumPy array kept as one is never cast (bfloat16 has no NumPy dtype), nor is a
        # sparse or nested tensor, which is written back as the object it is.
        uncast = container == "numpy" or info.layout != "strided"
        dtype = info.dtype if uncast else output_dtype(info.dtype, self.opts.dtype)
        if self.opts.format == "safetensors" and dtype not in SAFETENSORS_DTYPES:
            self.drop(node, f"{dtype} cannot be stored in safetensors")
            self.plan.problems.append(f"{node.key}: {dtype} cannot be stored in safetensors")
            return False
        nbytes = info.numel * dtype_from_name(dtype).itemsize
        broadcast = (
            info.stride is not None
            and 0 in info.stride
            and any(stride == 0 and size > 1 for size, stride in zip(info.shape, info.stride))
        )
        if (
            broadcast
            and nbytes > MAX_EXPANDED_BYTES
            and (self.opts.format == "safetensors" or dtype != info.dtype)
        ):
            # torch.save keeps a broadcast view as its small storage; anything else would
            # write (or cast) every repeated element.
            self.drop(node, "a broadcast view too large to expand")
            self.plan.problems.append(
                f"{node.key}: a broadcast view of {info.numel:,} elements; writing it in full "
                "would take " + human_bytes(nbytes) + " (export it as pt, without a dtype cast)"
            )
            return False
        kept = KeptTensor(node.key, out_key, info.dtype, dtype, info.shape, nbytes)
        kept.source_container, kept.container = info.container, container
        self.plan.kept.append(kept)
        return True

    def numpy_choice_ok(self, node: Node) -> bool:
        """A NumPy array is kept as one or converted to a tensor only as the user chose."""
        if self.opts.numpy == "tensors" or (self.opts.numpy == "keep" and not self.plan.flat):
            return True
        if self.opts.numpy == "keep":
            problem = f"{node.key} is a NumPy array; {self.container_name()} holds tensors only"
            problem += " (convert NumPy arrays to tensors)"
        else:
            problem = f"{node.key} is a NumPy array: keep it as one, or convert it to a tensor"
        self.drop(node, "a NumPy array")
        self.plan.problems.append(problem)
        return False

    def rename(self, parent: Node, name: str) -> str:
        """Prefix changes apply to the keys of state_dicts (``module.``, Lightning's ``model.``)."""
        if parent.label not in STATE_DICT_LABELS:
            return name
        strip = self.opts.strip_prefix
        if strip and name.startswith(strip) and len(name) > len(strip):
            name = name[len(strip) :]
        return self.opts.add_prefix + name

    @staticmethod
    def matches(globs: tuple[str, ...], node: Node, rel: str, name: str) -> bool:
        """A glob matches the full source key, the key below the exported object, or the name
        the key gets in the result, so ``linear1.*`` works in a training checkpoint too."""
        if not globs:
            return False
        return any(fnmatch.fnmatchcase(k, g) for g in globs for k in {node.key, rel, name} if k)

    def drop(self, node: Node, reason: str) -> None:
        self.plan.dropped.append(Dropped(node.key, reason, _nbytes(node), node.kind == "tensor"))

    def container_name(self) -> str:
        return "a sharded export" if self.opts.shard_size else "safetensors"


def _check_names(plan: ExportPlan) -> None:
    seen: dict[str, str] = {}
    for source, name in [(k.key, k.name) for k in plan.kept] + plan.kept_values:
        if name in seen:
            plan.problems.append(f"{seen[name]!r} and {source!r} would both be named {name!r}")
            return
        seen[name] = source


def _mark_sharing(root: Node, plan: ExportPlan) -> None:
    """In pt output, tensors that share a storage in the source keep sharing it (tied weights).
    safetensors cannot alias, so there every key gets its own copy."""
    if plan.options.format != "pt":
        return
    nodes = {n.key: n for n in root.tensors()}
    first: dict[object, str] = {}
    tied = views = 0
    for kept in plan.kept:
        info = nodes[kept.key].tensor
        if info is None or info.storage_id is None:
            continue
        owner = first.setdefault((info.storage_id, kept.dtype), kept.name)
        if owner != kept.name:
            kept.shares_with = owner
            if nodes[kept.key].tied:
                tied += 1
            else:
                views += 1
    plan.shared = (tied, views) if tied or views else None


def _what(node: Node) -> str:
    if node.kind == "object":
        return f"an instance of {node.standin}"
    return f"a reference to {node.standin}"


def _relative(key: str, top: str) -> str:
    return key[len(top) + 1 :] if top and key.startswith(top + ".") else key


def _leaves(node: Node) -> list[Node]:
    return [n for n in node.walk() if n.kind not in ("dict", "list") or not n.children]


def _nbytes(node: Node) -> int:
    return node.tensor.nbytes if node.tensor is not None else 0


def _is_inside(node: Node, ancestor: Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def _owner_state_dict(node: Node) -> Node | None:
    parent = node.parent
    while parent is not None:
        if parent.label in STATE_DICT_LABELS:
            return parent
        parent = parent.parent
    return None
