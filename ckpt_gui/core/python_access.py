"""How to reach an entry of a loaded checkpoint in Python: ``sd["model.layer.weight"]``,
``ckpt["optimizer"]["state"][0]["exp_avg"]`` (the row menus' Copy as Python)."""

from __future__ import annotations

import json

from ckpt_gui.core.tree import Node


def python_access(node: Node, variable: str = "ckpt") -> str:
    """The expression that gives ``node`` from the object ``torch.load`` returned, called
    ``variable``."""
    chain: list[Node] = []
    current: Node | None = node
    while current is not None and current.parent is not None:
        chain.append(current)
        current = current.parent
    parts = [variable]
    for item in reversed(chain):
        parent = item.parent
        assert parent is not None
        if parent.kind == "list" or item.key_type == "int":
            parts.append(f"[{item.name}]")
        elif parent.kind == "object" and parent.standin is None and item.name.isidentifier():
            parts.append(f".{item.name}")
        else:
            parts.append(f"[{json.dumps(item.name, ensure_ascii=False)}]")
    return "".join(parts)
