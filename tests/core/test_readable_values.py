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
