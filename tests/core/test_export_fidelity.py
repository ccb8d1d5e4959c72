"""A verified export is the source, as torch would load it: key types, tuples, NumPy arrays and
every tensor's bytes; or it is refused with one line naming what cannot be reproduced."""

from __future__ import annotations

import argparse
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.chunks import drain
from ckpt_gui.core.export import ExportError, ExportOptions, iter_export, plan_export
from ckpt_gui.core.export.verify import iter_verify
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import TinyNet, trained
from tests.core.test_export_write import unchanged


def numpy_training_checkpoint(path: Path) -> dict:
    """A training checkpoint torch's safe loader refuses because it holds NumPy values (as
    sevenn's and many others do): Adam state under int keys, betas as a tuple."""
    model, opt = trained("adam")
    obj = {
        "epoch": 3,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": opt.state_dict(),
        "mean": np.linspace(0.0, 1.0, 5, dtype=np.float32),
        "best": np.float64(0.125),
        "shape": (2, 3),
        "p": None,  # a structural-view copy once failed its own verification on None values
    }
    torch.save(obj, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    return obj


def attached_moments(state: dict) -> int:
    """How many parameters of a fresh TinyNet an Adam restored from ``state`` has moments for."""
    model = TinyNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.load_state_dict(state)
    return sum(1 for p in model.parameters() if "exp_avg" in opt.state.get(p, {}))


def test_cpu_copy_of_a_structural_view_needs_a_numpy_choice(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "copy.pt"
    numpy_training_checkpoint(src)
    with unchanged(src):
        assert main(["export", str(src), str(dst), "--cpu-copy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "mean is a NumPy array: keep it as one, or convert it to a tensor" in err[0]
    assert not dst.exists()


def test_cpu_copy_with_numpy_as_tensors_loads_like_the_source(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "copy.pt"
    original = numpy_training_checkpoint(src)
    with unchanged(src):
        assert main(["export", str(src), str(dst), "--cpu-copy", "--numpy", "tensors"]) == 0
    assert "verified: all" in capsys.readouterr().out
    # The copy holds only what the safe loader allows, NumPy values aside (best stays a
    # NumPy scalar, which the safe loader allows through safe_globals only).
    with torch.serialization.safe_globals([np.dtype, type(np.dtype(np.float64))]):
        with torch.serialization.safe_globals([np._core.multiarray.scalar]):
            copy = torch.load(dst, weights_only=True)
    optimizer = copy["optimizer_state_dict"]
    assert list(optimizer["state"]) == list(original["optimizer_state_dict"]["state"])
    assert all(type(k) is int for k in optimizer["state"])
    assert type(optimizer["param_groups"][0]["betas"]) is tuple
    assert copy["shape"] == (2, 3) and type(copy["shape"]) is tuple
    assert "p" in copy and copy["p"] is None
    assert attached_moments(optimizer) == len(list(TinyNet().parameters())) == 6
    assert torch.equal(copy["mean"], torch.from_numpy(original["mean"]))
    assert type(copy["best"]) is np.float64 and copy["best"] == original["best"]


def test_cpu_copy_keeping_numpy_arrays(tmp_path: Path) -> None:
    src, dst = tmp_path / "train.pt", tmp_path / "copy.pt"
    original = numpy_training_checkpoint(src)
    result = drain(iter_export(src, dst, ExportOptions(mode="all", numpy="keep")))
    assert result.verification.tensors == len(result.plan.kept)
    copy = torch.load(dst, weights_only=False)
    assert type(copy["mean"]) is np.ndarray and copy["mean"].dtype == np.float32
    assert np.array_equal(copy["mean"], original["mean"])
    assert attached_moments(copy["optimizer_state_dict"]) == 6
    with open_checkpoint(dst) as reopened:  # still refused by the safe loader: structural
        assert reopened.find("mean").tensor.container == "numpy"


def test_keeping_numpy_arrays_in_safetensors_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "arrays.pt"
    torch.save({"model": {"w": np.ones((2, 2), np.float32)}}, src)
    with open_checkpoint(src) as ckpt:
        options = ExportOptions(mode="all", format="safetensors", numpy="keep")
        plan = plan_export(ckpt, options)
    assert plan.problems == [
        "model.w is a NumPy array; safetensors holds tensors only (convert NumPy arrays to tensors)"
    ]


@pytest.fixture
def uninstalled_module(monkeypatch):
    """A module that exists while a file is saved and is gone (not installed) when it is read."""

    def install(name: str, cls_name: str) -> type:
        module = types.ModuleType(name)
        cls = type(cls_name, (), {"__module__": name})
        setattr(module, cls_name, cls)
        monkeypatch.setitem(sys.modules, name, module)
        return cls

    return install


def test_object_of_an_uninstalled_class_is_refused_by_name(
    tmp_path: Path, capsys, uninstalled_module, monkeypatch
) -> None:
    config_class = uninstalled_module("omegaconf", "DictConfig")
    src, dst = tmp_path / "lightning.ckpt", tmp_path / "copy.pt"
    config = config_class()
    config.lr = 0.1
    torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": config}, src)
    monkeypatch.delitem(sys.modules, "omegaconf")
    with unchanged(src):
        assert main(["export", str(src), str(dst), "--cpu-copy"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "hyper_parameters is an instance of omegaconf.DictConfig, which is not installed; "
            "export --params-only, or --trust if you trust the file"
        )
    )
    assert not dst.exists()
    # --trust cannot help when the class is missing: said plainly, not "damaged".
    assert main(["export", "--trust", str(src), str(dst), "--cpu-copy"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "a real load needs module 'omegaconf', which is not installed; open it without "
            "--trust to see it in the structural view"
        )
    )
    # The parameters alone need no class.
    assert main(["export", str(src), str(dst), "--params-only"]) == 0
    assert torch.equal(torch.load(dst, weights_only=True)["w"], torch.ones(2))


def test_argparse_namespace_is_refused_without_trust_and_kept_with_it(
    tmp_path: Path, capsys
) -> None:
    src, dst = tmp_path / "run.pt", tmp_path / "copy.pt"
    torch.save({"args": argparse.Namespace(lr=0.5), "model": {"w": torch.ones(3)}}, src)
    assert main(["export", str(src), str(dst), "--cpu-copy"]) == 2
    assert "args is an instance of argparse.Namespace, which ckpt-gui does not import" in (
        capsys.readouterr().err
    )
    assert main(["export", "--trust", str(src), str(dst), "--cpu-copy"]) == 0
    assert torch.load(dst, weights_only=False)["args"] == argparse.Namespace(lr=0.5)


def test_trusted_view_with_missing_class_is_one_clear_line(tmp_path: Path, capsys) -> None:
    script = (
        "import torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.fc = torch.nn.Linear(2, 2)\n"
        f"torch.save(Net(), {str(tmp_path / 'model.pt')!r})\n"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", script], check=True)
    assert main(["inspect", "--trust", str(tmp_path / "model.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "a real load needs 'Net' from the script that saved the file, which is not defined "
        "here; open it without --trust to see it in the structural view"
    )
    assert "damaged" not in err
    assert main(["inspect", str(tmp_path / "model.pt")]) == 0  # the structural view opens


def _rewrite(path: Path, change) -> None:
    obj = torch.load(path, weights_only=False)
    torch.save(change(obj), path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: {**o, "shape": list(o["shape"])}, "'shape' is a list, expected tuple"),
        (
            lambda o: {**o, "ids": {str(k): v for k, v in o["ids"].items()}},
            "the key of 'ids.0' is a str, expected a int",
        ),
        (lambda o: {**o, "epoch": float(o["epoch"])}, "'epoch' is a float, expected int"),
        (lambda o: {**o, "w": o["w"].numpy()}, "'w' is a NumPy array, expected a tensor"),
    ],
)
def test_verification_fails_when_the_result_means_something_else(
    tmp_path: Path, change, message: str
) -> None:
    src, out = tmp_path / "src.pt", tmp_path / "out.pt"
    torch.save({"w": torch.ones(2), "shape": (2, 3), "ids": {0: "a"}, "epoch": 3}, src)
    with open_checkpoint(src) as ckpt:
        plan = plan_export(ckpt, ExportOptions(mode="all"))
        drain(iter_export(ckpt, out, ExportOptions(mode="all")))
        drain(iter_verify(plan, ckpt, out))  # the real export verifies
        _rewrite(out, change)
        with pytest.raises(ExportError, match=f"verification failed: {message}"):
            drain(iter_verify(plan, ckpt, out))


def test_an_existing_destination_needs_force(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "w.pt", tmp_path / "unrelated.pt"
    torch.save({"w": torch.ones(3)}, src)
    dst.write_bytes(b"someone else's file")
    with unchanged(dst):
        assert main(["export", str(src), str(dst), "--cpu-copy"]) == 2
    assert capsys.readouterr().err.strip().endswith("already exists; use --force to replace it")
    assert main(["export", str(src), str(dst), "--cpu-copy", "--force"]) == 0
    assert torch.equal(torch.load(dst, weights_only=True)["w"], torch.ones(3))


def test_an_existing_shard_needs_force(tmp_path: Path, capsys) -> None:
    src, folder = tmp_path / "w.pt", tmp_path / "sharded"
    torch.save({"model": {"a": torch.ones(300), "b": torch.ones(300)}}, src)
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    args = ["export", str(src), str(folder), "--shard-size", "1KB"]
    assert main(args) == 0  # a model folder with its config: the shards join it
    capsys.readouterr()
    with unchanged(folder):
        assert main(args) == 2
    assert "model-00001-of-00002.safetensors: already exists" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0


def test_structural_view_reports_offsets_within_the_storage(tmp_path: Path) -> None:
    path = tmp_path / "views.pt"
    base = torch.arange(20.0)
    torch.save({"tail": base[7:], "row": base.view(4, 5)[2], "cfg": argparse.Namespace()}, path)
    real = torch.load(path, weights_only=False)
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural"
        for key in ("tail", "row"):
            assert ckpt.find(key).tensor.storage_offset == real[key].storage_offset() > 0


def test_torchscript_offsets_are_torch_s(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), path)
    with open_checkpoint(path) as ckpt:
        offsets = {n.key: n.tensor.storage_offset for n in ckpt.root.tensors()}
    assert offsets and set(offsets.values()) == {0}
