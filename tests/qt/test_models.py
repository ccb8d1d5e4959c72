"""The item model and filter proxy over real checkpoints: structure, texts, sorting, filtering."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import tensor_stats
from ckpt_gui.qt.models import columns as col
from ckpt_gui.qt.models.filter_proxy import TreeFilterProxy
from ckpt_gui.qt.models.items import build_items
from ckpt_gui.qt.models.tree_model import SORT_ROLE, CheckpointModel
from tests.qt import files

NO_PARENT = QModelIndex()


def model_for(path: Path, with_stats: bool = True) -> CheckpointModel:
    ckpt = open_checkpoint(path)
    model = CheckpointModel(build_items(ckpt.root))
    if with_stats:
        model.add_stats([(n, tensor_stats(n.load())) for n in ckpt.tensors()])
    return model


def find(model: CheckpointModel | TreeFilterProxy, *names: str) -> QModelIndex:
    """The index reached by following row names from the top."""
    index = QModelIndex()
    for name in names:
        rows = [model.index(r, 0, index) for r in range(model.rowCount(index))]
        matches = [i for i in rows if i.data() == name]
        assert matches, f"{name!r} not among {[i.data() for i in rows]}"
        index = matches[0]
    return index


def cell(index: QModelIndex, column: int) -> str:
    return index.siblingAtColumn(column).data()


def names(model: CheckpointModel | TreeFilterProxy, parent: QModelIndex = NO_PARENT) -> list[str]:
    return [model.index(r, 0, parent).data() for r in range(model.rowCount(parent))]


@pytest.mark.parametrize("with_stats", [False, True])
def test_model_passes_qt_model_tester(qtmodeltester, tmp_path: Path, with_stats: bool) -> None:
    model = model_for(files.training_checkpoint(tmp_path / "train.pt"), with_stats)
    qtmodeltester.check(model, force_py=True)


def test_proxy_passes_qt_model_tester(qtmodeltester, tmp_path: Path) -> None:
    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(files.training_checkpoint(tmp_path / "train.pt")))
    proxy.set_filter("weight")
    qtmodeltester.check(proxy, force_py=True)


def test_rows_show_keys_dtypes_shapes_sizes_and_values(tmp_path: Path) -> None:
    model = model_for(files.training_checkpoint(tmp_path / "train.pt"))
    assert names(model) == ["epoch", "model_state_dict", "optimizer_state_dict", "loss"]
    epoch = find(model, "epoch")
    assert cell(epoch, col.VALUE) == "7"
    assert cell(find(model, "loss"), col.VALUE) == "0.25"
    # Dotted state_dict keys are grouped into module rows.
    assert names(model, find(model, "model_state_dict")) == ["linear1", "bn", "linear2"]
    weight = find(model, "model_state_dict", "linear1", "weight")
    assert cell(weight, col.DTYPE) == "float32"
    assert cell(weight, col.SHAPE) == "[5, 10]"
    assert cell(weight, col.ELEMENTS) == "50"
    assert cell(weight, col.SIZE) == "200 B"
    assert cell(weight, col.ROLE) == "param"
    assert cell(find(model, "model_state_dict", "bn", "running_mean"), col.ROLE) == "buffer"
    # Module rows roll up their tensors' sizes.
    linear1 = find(model, "model_state_dict", "linear1")
    assert cell(linear1, col.ELEMENTS) == "55"
    assert cell(linear1, col.ROLE) == "module"


def test_statistics_cells_and_module_rollups(tmp_path: Path) -> None:
    model = model_for(files.sized_state_dict(tmp_path / "sized.pt"))
    assert cell(find(model, "b"), col.MIN) == "2"
    assert cell(find(model, "c"), col.MEAN) == "-3"
    assert cell(find(model, "a"), col.ZEROS) == "0 %"
    assert cell(find(model, "a"), col.NORM) == "10"
    training = model_for(files.training_checkpoint(tmp_path / "train.pt"))
    linear1 = find(training, "model_state_dict", "linear1")
    weight = find(training, "model_state_dict", "linear1", "weight")
    bias = find(training, "model_state_dict", "linear1", "bias")
    mins = [
        float(weight.siblingAtColumn(col.MIN).data(SORT_ROLE)),
        float(bias.siblingAtColumn(col.MIN).data(SORT_ROLE)),
    ]
    assert linear1.siblingAtColumn(col.MIN).data(SORT_ROLE) == pytest.approx(min(mins))


def test_optimizer_state_rows_name_their_parameter(tmp_path: Path) -> None:
    model = model_for(files.training_checkpoint(tmp_path / "train.pt"))
    entry = find(model, "optimizer_state_dict", "state", "0")
    assert cell(entry, col.VALUE) == "→ linear1.weight"
    buffer = find(model, "optimizer_state_dict", "state", "0", "momentum_buffer")
    assert cell(buffer, col.VALUE) == "→ linear1.weight"
    assert cell(buffer, col.ROLE) == "optim"
    lr = find(model, "optimizer_state_dict", "param_groups", "0", "lr")
    assert cell(lr, col.VALUE) == "0.1"


def test_numeric_columns_sort_by_number_not_text(tmp_path: Path) -> None:
    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(files.sized_state_dict(tmp_path / "sized.pt")))
    proxy.setSortRole(SORT_ROLE)
    proxy.sort(col.ELEMENTS, Qt.SortOrder.AscendingOrder)
    assert names(proxy) == ["b", "c", "a"]  # 9, 10, 100 (as text: 10, 100, 9)
    proxy.sort(col.ELEMENTS, Qt.SortOrder.DescendingOrder)
    assert names(proxy) == ["a", "c", "b"]
    proxy.sort(col.MEAN, Qt.SortOrder.AscendingOrder)
    assert names(proxy) == ["c", "a", "b"]  # -3, 1, 2


def test_rows_without_a_value_sort_last_both_ways(tmp_path: Path) -> None:
    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(files.training_checkpoint(tmp_path / "train.pt")))
    for order in (Qt.SortOrder.AscendingOrder, Qt.SortOrder.DescendingOrder):
        proxy.sort(col.SIZE, order)
        assert names(proxy)[-2:] in (["epoch", "loss"], ["loss", "epoch"])


def test_name_sort_is_natural(tmp_path: Path) -> None:
    import torch

    torch.save({f"layers.{i}.w": torch.ones(1) for i in (10, 2, 1)}, tmp_path / "n.pt")
    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(tmp_path / "n.pt"))
    proxy.sort(col.NAME, Qt.SortOrder.AscendingOrder)
    assert names(proxy, find(proxy, "layers")) == ["1", "2", "10"]


@pytest.mark.parametrize(
    ("pattern", "mode"),
    [("running_var", "substring"), ("*.bn.running_v*", "glob"), (r"bn\.running_v\w+$", "regex")],
)
def test_filter_keeps_the_parents_of_matches(tmp_path: Path, pattern: str, mode: str) -> None:
    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(files.training_checkpoint(tmp_path / "train.pt")))
    assert proxy.set_filter(pattern, mode) == ""
    assert names(proxy) == ["model_state_dict"]
    assert names(proxy, find(proxy, "model_state_dict")) == ["bn"]
    assert names(proxy, find(proxy, "model_state_dict", "bn")) == ["running_var"]
    proxy.set_filter("", mode)
    assert names(proxy) == ["epoch", "model_state_dict", "optimizer_state_dict", "loss"]


def test_invalid_regex_reports_an_error_and_shows_nothing(tmp_path: Path) -> None:
    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(files.training_checkpoint(tmp_path / "train.pt")))
    assert proxy.set_filter("weight(", "regex").startswith("invalid regular expression")
    assert proxy.rowCount() == 0


def test_marks_nan_zero_and_tied_rows(tmp_path: Path) -> None:
    model = model_for(files.marked_state_dict(tmp_path / "marked.pt"))
    broken = find(model, "broken", "weight")
    assert cell(broken, col.NONFINITE) == "2"
    assert (
        broken.siblingAtColumn(col.NONFINITE).data(Qt.ItemDataRole.ForegroundRole).color().name()
        == "#c62828"
    )
    assert broken.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert "NaN/Inf" in broken.data(Qt.ItemDataRole.ToolTipRole)
    assert find(model, "broken").data(Qt.ItemDataRole.BackgroundRole) is not None  # rolled up
    zeros = find(model, "zeros", "bias")
    assert cell(zeros, col.ZEROS) == "100 %"
    assert "all zeros" in zeros.data(Qt.ItemDataRole.ToolTipRole)
    head = find(model, "head", "weight")
    assert cell(head, col.VALUE) == "tied: embed.weight"
    tip = head.siblingAtColumn(col.VALUE).data(Qt.ItemDataRole.ToolTipRole)
    assert tip == "shares storage with embed.weight"
    assert head.data(Qt.ItemDataRole.DecorationRole) is not None
    assert find(model, "embed", "weight").data(Qt.ItemDataRole.DecorationRole) is None


def test_multidata_clears_roles_a_cell_does_not_set(tmp_path: Path) -> None:
    """The delegate reuses one span for every cell: a module row's italic font must not leak
    into the tensor row painted after it."""
    from PySide6.QtCore import QModelRoleData, QModelRoleDataSpan

    proxy = TreeFilterProxy()
    proxy.setSourceModel(model_for(files.training_checkpoint(tmp_path / "train.pt")))
    module = find(proxy, "model_state_dict", "linear1")
    tensor = find(proxy, "model_state_dict", "linear1", "weight")
    for role, module_value, tensor_value in (
        (Qt.ItemDataRole.FontRole, True, None),
        (Qt.ItemDataRole.DisplayRole, "linear1", "weight"),
    ):
        role_data = QModelRoleData(int(role))
        span = QModelRoleDataSpan(role_data)
        proxy.multiData(module, span)
        got = role_data.data()
        assert (got.italic() if role == Qt.ItemDataRole.FontRole else got) == module_value
        proxy.multiData(tensor, span)
        assert role_data.data() == tensor_value


def test_tensors_saved_on_a_gpu_are_marked() -> None:
    from ckpt_gui.core.tree import Node, TensorInfo

    root = Node(name="", key="", kind="dict")
    for name, device in (("on_gpu", "cuda:1"), ("on_cpu", "cpu")):
        info = TensorInfo(dtype="float16", shape=(4, 4), stride=(4, 1), device=device)
        root.add(Node(name=name, key=name, kind="tensor", tensor=info))
    model = CheckpointModel(build_items(root))
    gpu, cpu = find(model, "on_gpu"), find(model, "on_cpu")
    assert cell(gpu, col.DTYPE) == "float16 · cuda:1"
    assert cell(cpu, col.DTYPE) == "float16"
    assert "saved on cuda:1" in gpu.data(Qt.ItemDataRole.ToolTipRole)
    assert gpu.data(Qt.ItemDataRole.DecorationRole) is not None
    assert cpu.data(Qt.ItemDataRole.DecorationRole) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1234.5678, "1235"),
        (-3.409529e-4, "-3.410e-04"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
        (2.5e7, "2.500e+07"),
        (None, ""),
    ],
)
def test_statistics_read_with_four_significant_digits(value: float | None, text: str) -> None:
    from ckpt_gui.qt.formatting import format_float

    assert format_float(value) == text


def test_percentages_never_round_a_nonzero_share_to_zero() -> None:
    from ckpt_gui.qt.formatting import format_percent

    assert [format_percent(f) for f in (0, 1e-7, 0.0312, 0.5, 1)] == [
        "0 %",
        "<0.01 %",
        "3.12 %",
        "50.0 %",
        "100 %",
    ]
