"""Plain-data objects torch's safe loader refuses are shown as what they are, class named, never
built: NumPy values, paths, datetimes, enum members, Namespaces, dataclasses, defaultdicts."""

from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import enum
import json
import pathlib
from pathlib import Path

import numpy as np
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.reader import open_checkpoint


class Mode(enum.Enum):
    TRAIN = 3


@dataclasses.dataclass
class Config:
    lr: float = 0.1
    layers: tuple = (3, 1)


def test_plain_data_objects_read_as_what_they_are(tmp_path: Path, capsys) -> None:
    path = tmp_path / "run.pt"
    torch.save(
        {
            "w": torch.ones(2),
            "when": datetime.datetime(2024, 1, 2, 3, 4, 5),
            "day": datetime.date(2024, 1, 2),
            "dir": pathlib.PurePosixPath("runs/a"),
            "args": argparse.Namespace(lr=0.5, name="x"),
            "mode": Mode.TRAIN,
            "cfg": Config(),
            "counts": collections.defaultdict(list, {"a": [1]}),
            "best": np.float32(0.25),
            "mean": np.arange(3, dtype=np.int16),
        },
        path,
    )
    with open_checkpoint(path) as ckpt:
        assert ckpt.view == "structural"
        assert ckpt.find("best").value == 0.25 and ckpt.find("best").type_name == "numpy.float32"
        mean = ckpt.find("mean")
        assert mean.kind == "tensor" and mean.tensor.container == "numpy"
        assert mean.load().tolist() == [0, 1, 2] and mean.tensor.dtype == "int16"
    assert main(["inspect", str(path), "--json"]) == 0
    values = {v["key"]: v["value"] for v in json.loads(capsys.readouterr().out)["values"]}
    assert values == {
        "when": "datetime.datetime(2024, 1, 2, 3, 4, 5)",
        "day": "datetime.date(2024, 1, 2)",
        "dir": "PurePosixPath('runs/a')",
        "args": "Namespace(lr=0.5, name='x')",
        "mode": "Mode(3)",
        "cfg": "Config(lr=0.1, layers=(3, 1))",
        "counts": "defaultdict(<list>, {'a': [1]})",
        "best": 0.25,
    }


def test_a_numpy_array_left_without_its_state_is_refused_by_export(tmp_path: Path, capsys) -> None:
    """An array reference DUPed before its BUILD stays an inert stand-in: shown, and a CPU copy
    refuses it by name instead of writing one of ckpt-gui's own objects."""
    import io
    import struct
    import zipfile

    def glob(module: str, name: str) -> bytes:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    def text(value: str) -> bytes:
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    dtype = glob("numpy", "dtype") + text("f4") + b"\x89\x88\x87R(K\x03" + text("<")
    dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    array = glob("numpy._core.multiarray", "_reconstruct") + glob("numpy", "ndarray")
    array += b"K\x00\x85C\x01b\x87R"
    state = b"(K\x01K\x03\x85" + dtype + b"\x89C\x0c" + struct.pack("<3f", 1, 2, 3) + b"t"
    data = b"\x80\x02}(" + text("a") + b"](" + array + b"2" + state + b"be" + b"u."
    buffer = io.BytesIO()
    torch.save({}, buffer)
    path = tmp_path / "dup.pt"
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as out:
        for info in src.infolist():
            out.writestr(
                info.filename, data if info.filename.endswith("data.pkl") else src.read(info)
            )
    assert (
        main(["export", str(path), str(tmp_path / "copy.pt"), "--cpu-copy", "--numpy", "keep"]) == 2
    )
    assert "_reconstruct" in capsys.readouterr().err
