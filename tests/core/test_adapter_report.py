"""A LoRA adapter saved by the real ``peft`` opens as kind "lora-adapter", and its numbers per
module agree with PEFT's own ΔW (``get_delta_weight``), formed in full here only to check."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.cli import main
from ckpt_gui.core.adapters import adapter_report, find_adapters
from ckpt_gui.core.reader import open_checkpoint
from tests.core.adapter_models import edit_config, lora_layers, make_adapter


def inspect_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["inspect", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_against_peft(targets: list[dict], model: object) -> None:
    layers = lora_layers(model)
    assert {t["module"] for t in targets} == set(layers)
    for t in targets:
        delta = layers[t["module"]].get_delta_weight("default").detach().double()
        sigma = torch.linalg.svdvals(delta.reshape(delta.shape[0], -1))
        assert t["delta_norm"] == pytest.approx(float(delta.norm()), rel=1e-6)
        assert t["stable_rank"] == pytest.approx(float(delta.norm() ** 2 / sigma[0] ** 2), rel=1e-6)
        top = [float(s) for s in sigma[: min(t["r"], 8)]]  # the 8 largest are reported
        assert t["singular_values"] == pytest.approx(top, rel=1e-6)
        assert t["untrained"] is False


def test_trained_adapter_numbers_match_peft(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, target_modules=["q_proj", "v_proj", "up_proj"])
    out = inspect_json(capsys, str(made.adapter))
    assert out["kind"] == "lora-adapter"
    adapter = out["adapter"]
    assert (adapter["type"], adapter["r"], adapter["alpha"]) == ("lora", 4, 8)
    targets = adapter["targets"]
    modules = {t["module"] for t in targets}
    assert "base_model.model.model.layers.0.self_attn.q_proj" in modules
    assert "base_model.model.model.layers.1.mlp.up_proj" in modules
    assert all(t["r"] == 4 and t["scale"] == 2.0 and t["base_norm"] is None for t in targets)
    _check_against_peft(targets, made.model)
    assert "unmatched" not in out


def test_its_safetensors_file_opens_as_the_adapter(tmp_path: Path) -> None:
    made = make_adapter(tmp_path)
    with open_checkpoint(made.adapter / "adapter_model.safetensors") as ckpt:
        assert ckpt.kind == "lora-adapter"
        with find_adapters(ckpt) as found:
            report = adapter_report(found.adapters[0])
    assert len(report.modules) == 2 * 4
    assert all(m.delta_norm and m.delta_norm > 0 for m in report.modules)


def test_fresh_adapter_is_flagged_untrained(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, steps=0)
    targets = inspect_json(capsys, str(made.adapter))["adapter"]["targets"]
    assert targets and all(t["untrained"] for t in targets)
    assert all(t["delta_norm"] == 0 and t["stable_rank"] is None for t in targets)
    assert main(["inspect", str(made.adapter)]) == 0
    text = capsys.readouterr().out
    assert "untrained: B all zeros" in text
    assert f"{len(targets)} of {len(targets)} modules are untrained" in text


def test_rslora_scale_is_alpha_over_root_r(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, r=16, lora_alpha=8, use_rslora=True)
    targets = inspect_json(capsys, str(made.adapter))["adapter"]["targets"]
    assert all(t["scale"] == pytest.approx(8 / math.sqrt(16)) for t in targets)
    _check_against_peft(targets, made.model)


def test_rank_and_alpha_patterns(tmp_path: Path, capsys) -> None:
    made = make_adapter(
        tmp_path,
        r=4,
        lora_alpha=8,
        rank_pattern={"layers.1.self_attn.q_proj": 2},
        alpha_pattern={"v_proj": 32},
    )
    targets = {
        t["module"]: t for t in inspect_json(capsys, str(made.adapter))["adapter"]["targets"]
    }
    layers = lora_layers(made.model)
    for name, t in targets.items():
        assert t["scale"] == layers[name].scaling["default"]
        assert t["r"] == layers[name].r["default"]
    assert targets["base_model.model.model.layers.1.self_attn.q_proj"]["r"] == 2
    assert targets["base_model.model.model.layers.0.self_attn.v_proj"]["scale"] == 8.0
    _check_against_peft(list(targets.values()), made.model)


def test_bin_adapter_reads_through_the_pickle_policy(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, safe=False)
    assert (made.adapter / "adapter_model.bin").exists()
    out = inspect_json(capsys, str(made.adapter))
    assert out["kind"] == "lora-adapter" and out["view"] == "weights_only"
    _check_against_peft(out["adapter"]["targets"], made.model)


def test_several_adapters_in_one_folder(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    made.model.add_adapter(
        "second", __import__("peft").LoraConfig(r=2, lora_alpha=4, target_modules=["o_proj"])
    )
    made.model.save_pretrained(made.adapter)
    assert (made.adapter / "second" / "adapter_model.safetensors").exists()
    out = inspect_json(capsys, str(made.adapter))
    assert [a["name"] for a in out["adapters"]] == ["default", "second"]
    assert out["adapter"]["name"] == "default"
    second = out["adapters"][1]["targets"]
    assert [t["module"] for t in second] == [
        f"base_model.model.model.layers.{i}.self_attn.o_proj" for i in range(2)
    ]
    assert all(t["r"] == 2 and t["untrained"] for t in second)  # never trained
    assert any("more adapters in sub-folders: second" in n for n in out["adapter"]["notes"])
    # The sub-folder alone is that adapter.
    alone = inspect_json(capsys, str(made.adapter / "second"))
    assert alone["adapter"]["targets"] == second


def test_a_folder_of_adapter_folders(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    folder = tmp_path / "adapters"
    folder.mkdir()
    for name in ("a", "b"):
        shutil.copytree(made.adapter, folder / name)
    out = inspect_json(capsys, str(folder))
    assert out["kind"] == "lora-adapter"
    assert [a["name"] for a in out["adapters"]] == ["a", "b"]
    assert out["adapters"][0]["targets"][0]["lora_A"].startswith("a.base_model.model.")


def test_base_norms_and_ratio(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    out = inspect_json(capsys, str(made.adapter), "--base", str(made.base))
    base = load_file(made.base)
    adapter = out["adapter"]
    assert out["unmatched"] == [] and adapter["missing_base"] == []
    for t in adapter["targets"]:
        w = base[t["base_key"]].double()
        assert t["base_key"] == t["module"].removeprefix("base_model.model.") + ".weight"
        assert t["base_norm"] == pytest.approx(float(w.norm()), rel=1e-9)
        assert t["relative"] == pytest.approx(t["delta_norm"] / t["base_norm"])
    assert main(["inspect", str(made.adapter), "--base", str(made.base)]) == 0
    assert "‖ΔW‖/‖W‖" in capsys.readouterr().out


def test_base_under_another_prefix_is_paired(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    inner = {k.removeprefix("model."): v for k, v in load_file(made.base).items()}
    save_file(inner, tmp_path / "inner.safetensors")  # the inner model, without "model."
    adapter = inspect_json(
        capsys, str(made.adapter), "--base", str(tmp_path / "inner.safetensors")
    )["adapter"]
    assert adapter["base_match"]["strip"] == "model."
    assert all(t["base_key"].startswith("layers.") for t in adapter["targets"])


def test_targets_matching_no_base_weight_are_flagged(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, target_modules=["q_proj", "v_proj"])
    edit_config(made.adapter, target_modules=["q_proj", "v_proj", "query_key_value"])
    out = inspect_json(capsys, str(made.adapter), "--base", str(made.base))
    assert out["unmatched"] == ["query_key_value"]
    # A base of another architecture: nothing pairs.
    other = {"transformer.h.0.attn.c_attn.weight": torch.zeros(48, 16)}
    save_file(other, tmp_path / "gpt.safetensors")
    out = inspect_json(capsys, str(made.adapter), "--base", str(tmp_path / "gpt.safetensors"))
    assert out["unmatched"] == ["q_proj", "v_proj", "query_key_value"]
    targets = out["adapter"]["targets"]
    assert all(t["base_norm"] is None and "no base weight" in t["flags"] for t in targets)
    assert len(out["adapter"]["missing_base"]) == len(targets)
    assert main(["stats", str(made.adapter), "--base", str(tmp_path / "gpt.safetensors")]) == 0
    assert "unmatched targets (no base weight): q_proj, v_proj" in capsys.readouterr().out


def test_stats_adds_the_adapter_numbers(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    assert main(["stats", str(made.adapter), "--base", str(made.base), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["tensors"]) == 16  # A and B of 8 modules, as today
    assert len(out["adapter"]["targets"]) == 8
    assert all(t["base_norm"] > 0 for t in out["adapter"]["targets"])


def test_dora_and_modules_to_save_are_shown_as_what_they_are(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, use_dora=True, modules_to_save=["lm_head"])
    out = inspect_json(capsys, str(made.adapter), "--base", str(made.base))
    adapter = out["adapter"]
    assert adapter["use_dora"] is True
    for t in adapter["targets"]:
        assert t["magnitude"] == t["module"] + ".lora_magnitude_vector"
        assert "DoRA" in t["flags"]
    saved = {s["name"]: s for s in adapter["modules_to_save"]}
    assert set(saved) == {"lm_head.weight", "lm_head.bias"}
    assert saved["lm_head.weight"]["base_key"] == "lm_head.weight"
    assert saved["lm_head.weight"]["shape"] == [32, 16]


def test_inspect_of_a_checkpoint_that_is_no_adapter(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    out = inspect_json(capsys, str(made.base))
    assert "adapter" not in out and out["kind"] != "lora-adapter"
    assert main(["inspect", str(made.base), "--base", str(made.base)]) == 2
    err = capsys.readouterr().err
    assert "not a LoRA adapter" in err and len(err.strip().splitlines()) == 1
