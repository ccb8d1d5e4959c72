"""Recognise the common shapes of checkpoints and label the tree: which dicts are model
state_dicts and optimizers, each tensor's role, and which parameter every optimizer-state id
belongs to.
"""

from __future__ import annotations

from ckpt_gui.core.tree import Node

# Last key components that name buffers, not parameters, in the models people train.
BUFFER_NAMES = {
    "running_mean",
    "running_var",
    "num_batches_tracked",
    "position_ids",
    "inv_freq",
    "token_type_ids",
    "masked_bias",
    "freqs_cis",
    "cos_cached",
    "sin_cached",
}
MODEL_KEYS = {
    "model",
    "model_state_dict",
    "state_dict",
    "model_state",
    "net",
    "network",
    "module",
    "weights",
    "params",
    "generator",
    "discriminator",
    "encoder",
    "decoder",
}
EMA_MARKERS = ("ema", "averaged", "swa")
LIGHTNING_KEYS = {"pytorch-lightning_version", "optimizer_states", "lr_schedulers", "loops"}


def is_optimizer(node: Node) -> bool:
    if node.kind != "dict":
        return False
    state, groups = node.child("state"), node.child("param_groups")
    return (
        node.kind == "dict"
        and state is not None
        and groups is not None
        and (state.kind == "dict" and groups.kind == "list")
    )


def is_state_dict(node: Node) -> bool:
    """A dict whose entries are all tensors (``_extra_state`` values aside)."""
    if node.kind != "dict" or not node.children:
        return False
    tensors = 0
    for c in node.children:
        if c.kind == "tensor":
            tensors += 1
        elif not c.name.endswith("_extra_state"):
            return False
    return tensors > 0


def recognise(root: Node) -> str:
    """Label the tree in place and return what the top object is."""
    # Only containers (and pickled modules, which may be empty) can be optimizers, state_dicts
    # or modules: one walk finds them, and the (maybe a million) leaves are passed over once.
    containers = [n for n in root.walk() if n.children or n.label == "module"]
    optimizers = [n for n in containers if is_optimizer(n)]
    for opt in optimizers:
        opt.label = "optimizer"
    models = [n for n in containers if is_state_dict(n) and not _inside(n, optimizers)]
    # Pickled nn.Modules (structural view) already carry exact roles; the outermost of each
    # module tree is a model, the ones inside it its submodules.
    modules = [n for n in containers if n.label == "module" and not _in_module(n)]
    for module in modules:
        module.label = "model"
    for model in models:
        lowered = model.name.lower()
        model.label = "EMA" if any(m in lowered for m in EMA_MARKERS) else "model"
    for child in root.children:
        if "sched" in child.name.lower() and child.label is None:
            child.label = "scheduler"
    _assign_roles(root, optimizers, models)
    models += modules
    for opt in optimizers:
        owner = _model_for(opt, models)
        if owner is not None:
            map_optimizer_ids(opt, owner)
    return _kind(root, optimizers, models)


def _kind(root: Node, optimizers: list[Node], models: list[Node]) -> str:
    names = {c.name for c in root.children}
    if root.kind == "object" and root.label == "model":
        return "pickled model"
    if root in models:
        return "state_dict"
    if root in optimizers:
        return "optimizer state_dict"
    if "state_dict" in names and names & (LIGHTNING_KEYS | {"global_step"}):
        return "Lightning checkpoint"
    if optimizers or (models and names & (MODEL_KEYS | {"epoch", "step", "loss"})):
        return "training checkpoint"
    if models:
        return "collection of state_dicts"
    return "object"


def _in_module(node: Node) -> bool:
    return node.parent is not None and node.parent.label in ("module", "model")


def _inside(node: Node, ancestors: list[Node]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent in ancestors:
            return True
        parent = parent.parent
    return False


def _assign_roles(root: Node, optimizers: list[Node], models: list[Node]) -> None:
    for opt in optimizers:
        for t in opt.tensors():
            t.role = "optimizer_state"
    for model in models:
        for t in model.children:
            if t.kind == "tensor":
                t.role = "buffer" if _looks_like_buffer(t) else "parameter"


def _looks_like_buffer(node: Node) -> bool:
    assert node.tensor is not None
    if node.name.rsplit(".", 1)[-1] in BUFFER_NAMES:
        return True
    # Integer and boolean tensors cannot require grad, so they are not trainable parameters.
    return not (node.tensor.dtype.startswith(("float", "bfloat", "complex")))


def _model_for(opt: Node, models: list[Node]) -> Node | None:
    """The model state_dict an optimizer most likely belongs to: the main model, not an EMA."""
    main = [m for m in models if m.label == "model"]
    if len(main) == 1:
        return main[0]
    siblings = [m for m in main if opt.parent is not None and m.parent is opt.parent]
    return siblings[0] if len(siblings) == 1 else None


def map_optimizer_ids(opt: Node, model: Node) -> bool:
    """Name the parameter behind every optimizer-state id.

    PyTorch numbers parameters in ``model.parameters()`` order, which is the state_dict order
    with buffers left out and tied parameters counted once. The mapping is accepted only when the
    counts agree and every state tensor has its parameter's shape.
    """
    groups = opt.child("param_groups")
    state = opt.child("state")
    assert groups is not None and state is not None
    ids: list[str] = []
    for group in groups.children:
        params = group.child("params")
        if params is None:
            return False
        ids.extend(str(p.value) for p in params.children)
    candidates = [c for c in model.tensors() if c.role == "parameter" and not c.tied]
    if len(candidates) != len(ids):
        opt.label = "optimizer"
        return False
    by_id = dict(zip(ids, candidates))
    for entry in state.children:
        param = by_id.get(entry.name)
        if param is None:
            return False
        for t in entry.tensors():
            assert t.tensor is not None and param.tensor is not None
            if t.tensor.shape and t.tensor.shape != param.tensor.shape:
                return False
    for entry in state.children:
        name = _relative(by_id[entry.name], model)
        entry.param = name
        for t in entry.walk():
            t.param = name
    for group in groups.children:
        params = group.child("params")
        assert params is not None
        for p in params.children:
            p.param = _relative(by_id[str(p.value)], model)
    return True


def _relative(node: Node, model: Node) -> str:
    """``node``'s key inside ``model``: the parameter name a state_dict would use."""
    return node.key[len(model.key) + 1 :] if model.key else node.key
