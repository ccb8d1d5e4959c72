"""``ckpt-gui trajectory``: the JSON contract of docs/cli.md, the readable report, exit statuses."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ckpt_gui.cli import main
from tests.core.run_files import EPOCHS, NAN_AT, load_model, reference, save_all, train_states

CONTRACT_TENSOR_KEYS = {
    "key",
    "shape",
    "dtype",
    "norm",
    "rel_change_from_first",
    "rel_update",
    "update_cosine",
    "nan",
    "inf",
    "frozen",
}
LISTS = ("norm", "rel_change_from_first", "rel_update", "update_cosine", "nan", "inf")


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))


@pytest.fixture(scope="module")
def states() -> list[dict]:
    return train_states()


@pytest.fixture
def run_folder(tmp_path: Path, states) -> Path:
    save_all(tmp_path / "run", states, lambda i, s: f"model_epoch_{s['epoch'] * 5}.pt")
    return tmp_path / "run"


def _json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["trajectory", *args, "--json"])
    captured = capsys.readouterr()
    assert captured.err == ""
    return code, json.loads(captured.out)


def test_json_shape(run_folder: Path, capsys) -> None:
    code, out = _json(capsys, str(run_folder))
    assert code == 0
    assert out["order_by"] == "step"
    assert [c["path"] for c in out["checkpoints"]] == [
        str(run_folder / f"model_epoch_{5 * i}.pt") for i in range(EPOCHS)
    ]
    assert out["checkpoints"][0] == {
        "path": str(run_folder / "model_epoch_0.pt"),
        "order_key": "global_step",
        "order_value": 3,
    }
    keys = [t["key"] for t in out["tensors"]]
    assert keys[:2] == ["model_state_dict.embed.weight", "model_state_dict.embed.bias"]
    for t in out["tensors"]:
        assert CONTRACT_TENSOR_KEYS <= set(t)
        assert all(len(t[name]) == EPOCHS for name in LISTS)
        assert t["rel_update"][0] is None
        assert t["update_cosine"][:2] == [None, None]
        assert isinstance(t["frozen"], bool)
    embed = out["tensors"][0]
    assert embed["frozen"] and embed["shape"] == [8, 6] and embed["dtype"] == "float32"
    assert out["values"]["loss"] == [s["loss"] for s in train_states()]
    assert out["values"]["global_step"] == [3, 6, 9, 12, 15]
    assert "hidden.weight.exp_avg_sq" in {o["key"] for o in out["optimizer"]}


def test_json_numbers_and_nulls(run_folder: Path, capsys) -> None:
    """NaN never reaches the JSON: figures a NaN makes meaningless are null, counts exact."""
    _, out = _json(capsys, str(run_folder))
    bias = next(t for t in out["tensors"] if t["key"] == "model_state_dict.hidden.bias")
    models = [load_model(run_folder / f"model_epoch_{5 * i}.pt") for i in range(EPOCHS)]
    want = reference([m["hidden.bias"] for m in models])
    assert bias["nan"] == [0, 0, 0, 1, 0] and bias["inf"] == [0] * EPOCHS
    assert bias["norm"][NAN_AT] is None and bias["rel_update"][NAN_AT + 1] is None
    assert bias["first_nonfinite"] == NAN_AT and "nonfinite" in bias["flags"]
    for name in ("norm", "rel_change_from_first", "rel_update", "update_cosine"):
        for got, expected in zip(bias[name], want[name]):
            if expected is None or math.isnan(expected):
                assert got is None
            else:
                assert got == pytest.approx(expected, rel=1e-6)


def test_filter(run_folder: Path, capsys) -> None:
    _, out = _json(capsys, str(run_folder), "--filter", "*.weight")
    assert [t["key"] for t in out["tensors"]] == [
        "model_state_dict.embed.weight",
        "model_state_dict.hidden.weight",
        "model_state_dict.norm.weight",
        "model_state_dict.head.weight",
    ]


def test_list_of_files_and_no_cache(tmp_path: Path, run_folder: Path, capsys) -> None:
    files = sorted(run_folder.iterdir(), reverse=True)
    code, out = _json(capsys, *map(str, files), "--no-cache")
    assert code == 0
    assert [c["order_value"] for c in out["checkpoints"]] == [3, 6, 9, 12, 15]
    assert out["cache"]["opened"] == [c["path"] for c in out["checkpoints"]]
    assert not (tmp_path / "cache-home").exists()
    code, again = _json(capsys, str(run_folder))
    code, cached = _json(capsys, str(run_folder))
    assert cached["cache"] == {
        "opened": [],
        "computed": {"checkpoints": [], "pairs": [], "triples": []},
    }
    assert cached["tensors"] == out["tensors"]


def test_readable_report(run_folder: Path, capsys) -> None:
    assert main(["trajectory", str(run_folder)]) == 0
    text = capsys.readouterr().out
    assert "run of 5 checkpoints, ordered by step" in text
    assert "model_epoch_20.pt" in text
    line = next(x for x in text.splitlines() if x.startswith("model_state_dict.embed.weight"))
    assert line.split()[1:3] == ["[8,", "6]"] and line.endswith("frozen")
    bias = next(x for x in text.splitlines() if x.startswith("model_state_dict.hidden.bias"))
    assert "nonfinite" in bias
    assert (
        "NaN or Inf in 1 tensor(s), first in model_state_dict.hidden.bias at model_epoch_15.pt"
        in text
    )
    assert "2 frozen" in text


def test_a_bad_file_is_one_line_exit_2(run_folder: Path, capsys) -> None:
    bad = run_folder / "model_epoch_7.pt"
    bad.write_bytes(b"this is not a checkpoint at all")
    code = main(["trajectory", str(run_folder), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckpt-gui: error: ")
    assert str(bad) in lines[0]


def test_fewer_than_two_checkpoints_exit_2(tmp_path: Path, states, capsys) -> None:
    [only] = save_all(tmp_path / "one", states[:1], lambda i, s: "model.pt")
    for args in ([str(tmp_path / "one")], [str(only)], [str(tmp_path / "missing")]):
        assert main(["trajectory", *args]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and len(captured.err.splitlines()) == 1
