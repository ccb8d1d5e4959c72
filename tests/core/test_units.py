"""One rule for numbers on screen and in the CLI's tables (core.units.float_text)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpt_gui.cli import main
from ckpt_gui.core.units import float_text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1234.5678, "1235"),
        (0.001, "0.001"),
        (-3.409529e-4, "-3.410e-04"),
        (99999.9, "1.000e+05"),  # decided on the rounded value, never "1e+05"
        (12345.6, "12346"),  # never "1.235e+04" inside the plain range
        (0.5, "0.5"),
        (0.00099996, "0.001"),
        (2.5e7, "2.500e+07"),
        (1e-30, "1.000e-30"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (2**60 + 1, "1152921504606846977"),  # an integer tensor's extreme stays exact
        (-7, "-7"),
        (True, "True"),
    ],
)
def test_float_text(value: float, text: str) -> None:
    assert float_text(value) == text


def test_more_digits_on_request() -> None:
    assert float_text(0.123456789, 7) == "0.1234568"
    assert float_text(1.5e-9, 7) == "1.500000e-09"


def test_the_cli_tables_use_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sd.pt"
    small = torch.tensor([1e-5, 3e-5], dtype=torch.float64)
    torch.save({"small": small, "big": torch.tensor([2**40, -3], dtype=torch.int64)}, path)
    assert main(["stats", str(path)]) == 0
    out = capsys.readouterr().out
    small_row = next(line for line in out.splitlines() if line.startswith("small"))
    big_row = next(line for line in out.splitlines() if line.startswith("big"))
    assert float_text(1e-5) in small_row.split()  # "1.000e-05", not .4g's "1e-05"
    assert float_text(3e-5) in small_row.split()
    assert "1099511627776" in big_row.split() and "-3" in big_row.split()

    b = tmp_path / "b.pt"
    torch.save({"small": small * 2, "big": torch.tensor([2**40, -3])}, b)
    assert main(["diff", str(path), str(b)]) == 1
    out = capsys.readouterr().out
    assert float_text(3e-5) in out  # max |A-B| of the changed tensor
