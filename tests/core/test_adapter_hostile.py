"""A malformed or hostile ``adapter_config.json`` is one line on stderr and exit 2, for every
command that reads it, never a traceback and never a hang; an adapter's pickles go through the
same loading policy as any file."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.cli import main
from ckpt_gui.core.adapters.patterns import AdapterConfigError, compile_pattern

GOOD = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}


def adapter_folder(tmp_path: Path, config: bytes | dict) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir(exist_ok=True)
    tensors = {
        "base_model.model.layers.0.q_proj.lora_A.weight": torch.ones(2, 4),
        "base_model.model.layers.0.q_proj.lora_B.weight": torch.ones(4, 2),
    }
    save_file(tensors, folder / "adapter_model.safetensors")
    data = config if isinstance(config, bytes) else json.dumps(config).encode()
    (folder / "adapter_config.json").write_bytes(data)
    save_file({"layers.0.q_proj.weight": torch.ones(4, 4)}, tmp_path / "base.safetensors")
    return folder


def one_line_error(capsys: pytest.CaptureFixture[str], args: list[str], expected: str) -> None:
    start = time.monotonic()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 30  # a runaway pattern would never return
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ckpt-gui: error:"), err
    assert "Traceback" not in err
    assert expected in lines[0], lines[0]


HOSTILE = [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'{"r": NaN}', "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    (dict(GOOD, r="eight"), "r is not a whole number"),
    (dict(GOOD, r=0), "a rank must be between"),
    (dict(GOOD, r=True), "r is not a whole number"),
    (dict(GOOD, r=10**30), "a rank must be between"),
    (dict(GOOD, lora_alpha="big"), "lora_alpha is not a number"),
    (dict(GOOD, lora_alpha=1e300), "not a usable alpha"),
    (dict(GOOD, use_rslora="yes"), "use_rslora is not true or false"),
    (dict(GOOD, target_modules={"q": 1}), "target_modules is neither"),
    (dict(GOOD, target_modules=[1, 2]), "not a module name"),
    (dict(GOOD, target_modules="(a+)+$"), "repeats a repetition"),
    (dict(GOOD, target_modules="(q|qq)*_proj"), "repeats an alternation"),
    (dict(GOOD, target_modules=r"(\w+)\1"), "refers back to a group"),
    (dict(GOOD, target_modules=".*.*.*.*x"), "unbounded repetitions"),
    (dict(GOOD, target_modules="(["), "not a valid regular expression"),
    (dict(GOOD, target_modules="a" * 600), "refused"),
    (dict(GOOD, rank_pattern={"(x+x+)+y": 2}), "repeats a repetition"),
    (dict(GOOD, rank_pattern={"q_proj": -1}), "a rank must be between"),
    (dict(GOOD, alpha_pattern=[1]), "alpha_pattern is not a JSON object"),
    (dict(GOOD, modules_to_save="lm_head"), "modules_to_save is not a list"),
    (dict(GOOD, peft_type="IA3"), "only LoRA adapters"),
]


@pytest.mark.parametrize("config, expected", HOSTILE)
def test_hostile_configs_are_one_line(tmp_path: Path, capsys, config, expected: str) -> None:
    folder = adapter_folder(tmp_path, config)
    base = str(tmp_path / "base.safetensors")
    one_line_error(capsys, ["inspect", str(folder)], expected)
    one_line_error(capsys, ["stats", str(folder), "--base", base, "--json"], expected)
    one_line_error(
        capsys,
        ["export", str(folder), str(tmp_path / "m.safetensors"), "--merge-into", base],
        expected,
    )
    assert not (tmp_path / "m.safetensors").exists()


def test_an_oversized_config_is_refused_before_reading(tmp_path: Path, capsys) -> None:
    folder = adapter_folder(tmp_path, GOOD)
    with open(folder / "adapter_config.json", "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of nothing
    one_line_error(capsys, ["inspect", str(folder)], "over the 4 MiB limit")


def test_a_fifo_config_never_blocks(tmp_path: Path, capsys) -> None:
    folder = adapter_folder(tmp_path, GOOD)
    (folder / "adapter_config.json").unlink()
    os.mkfifo(folder / "adapter_config.json")
    one_line_error(capsys, ["inspect", str(folder)], "not a regular file")


def test_a_good_config_still_works(tmp_path: Path, capsys) -> None:
    folder = adapter_folder(tmp_path, GOOD)
    assert main(["inspect", str(folder), "--json"]) == 0
    targets = json.loads(capsys.readouterr().out)["adapter"]["targets"]
    assert targets[0]["delta_norm"] == pytest.approx(2.0 * 8)  # ‖2·ones(4,2)@ones(2,4)‖ = 2·2·4


def test_a_bin_adapter_with_a_payload_is_never_run(tmp_path: Path, capsys) -> None:
    """The adapter's .bin is opened like any pickle: scanned, refused by weights_only, shown
    in the structural view; the payload never runs."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    state = {
        "base_model.model.q_proj.lora_A.weight": torch.ones(2, 4),
        "base_model.model.q_proj.lora_B.weight": torch.ones(4, 2),
        "extra": Payload(),
    }
    torch.save(state, folder / "adapter_model.bin", pickle_module=pickle)
    (folder / "adapter_config.json").write_text(json.dumps(dict(GOOD, target_modules=["q_proj"])))
    assert main(["inspect", str(folder), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["view"] == "structural" and out["kind"] == "lora-adapter"
    assert len(out["adapter"]["targets"]) == 1
    assert not sentinel.exists()


@pytest.mark.parametrize(
    "pattern", [r".*\.(q_proj|v_proj)", r"^(?!.*vision).*\.layers\.\d+\.q_proj"]
)
def test_real_patterns_pass(pattern: str) -> None:
    assert compile_pattern(pattern, "target_modules").fullmatch("model.layers.0.q_proj")


def test_a_runaway_pattern_is_refused() -> None:
    with pytest.raises(AdapterConfigError, match="repeats a repetition"):
        compile_pattern("(a*)*b", "target_modules")
