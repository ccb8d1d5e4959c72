"""The tree as the window and ``Checkpoint.tensors()`` show it: every quantized weight as one
logical tensor row (kind "tensor", its values dequantized), with its raw parts as children
(role "quantization"). The checkpoint's own tree is left as the file holds it, which is what
an export writes and ``inspect`` lists."""

from __future__ import annotations

from ckpt_gui.core.quant.logical import LogicalTensor
from ckpt_gui.core.tree import Node, TensorInfo


def logical_info(lt: LogicalTensor) -> TensorInfo:
    stride, acc = [], 1
    for s in reversed(lt.shape):
        stride.append(acc)
        acc *= max(s, 1)
    return TensorInfo(
        dtype=lt.dtype,
        shape=lt.shape,
        stride=tuple(reversed(stride)),
        device="cpu",
        loader=lt.dequantize,
        quant=lt,
    )


def folded_tree(root: Node, logical: list[LogicalTensor]) -> tuple[Node, list[Node]]:
    """``root`` with each logical tensor in place of its parts (at the first part's place),
    and the logical nodes. Containers above a part are copied; everything else is shared."""
    if not logical:
        return root, []
    by_key = {n.key: n for n in root.tensors()}
    first: dict[int, LogicalTensor] = {}
    parts: set[int] = set()
    above: set[int] = set()
    for lt in logical:
        nodes = [by_key[k] for k in lt.parts if k in by_key]
        first[id(nodes[0])] = lt
        for node in nodes:
            parts.add(id(node))
            up = node.parent
            while up is not None and id(up) not in above:
                above.add(id(up))
                up = up.parent
    made: list[Node] = []

    def copy(node: Node) -> Node:
        out = Node(name=node.name, key=node.key, kind=node.kind, value=node.value, label=node.label)
        for child in node.children:
            if id(child) in first:
                lt = first[id(child)]
                made.append(_logical_node(lt, node.key, [by_key[k] for k in lt.parts]))
                out.add(made[-1])
            elif id(child) in above:
                out.add(copy(child))
            elif id(child) not in parts:
                out.children.append(child)  # shared: its parent stays the original
        return out

    return copy(root), made


def _logical_node(lt: LogicalTensor, parent_key: str, raw: list[Node]) -> Node:
    node = Node(
        name=_relative(lt.key, parent_key),
        key=lt.key,
        kind="tensor",
        tensor=logical_info(lt),
        role="parameter",
        label="quantized",
    )
    module = lt.key.rpartition(".")[0]
    for part in raw:
        base = lt.key if part.key.startswith(lt.key + ".") else module
        node.add(
            Node(
                name=_relative(part.key, base),
                key=part.key,
                kind="tensor",
                tensor=part.tensor,
                role="quantization",
            )
        )
    return node


def _relative(key: str, parent_key: str) -> str:
    return key[len(parent_key) + 1 :] if parent_key and key.startswith(parent_key + ".") else key


def summary(logical: list[LogicalTensor]) -> str:
    """``quantized: 224 weights (gptq 4-bit, group 128)``: the note a checkpoint shows."""
    kinds: dict[str, int] = {}
    for lt in logical:
        what = lt.label().removeprefix("dequantized (").removesuffix(")")
        kinds[what] = kinds.get(what, 0) + 1
    listed = "; ".join(f"{n} × {what}" if len(kinds) > 1 else what for what, n in kinds.items())
    count = len(logical)
    return f"quantized: {count} weight{'s' * (count != 1)} ({listed}), shown dequantized"
