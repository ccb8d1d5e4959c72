"""``export ADAPTER DST --merge-into BASE`` writes exactly what PEFT's ``merge_and_unload`` gives
(bit for bit in float32), never touches the sources, and its 'verified:' line is earned."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ckpt_gui.cli import main
from ckpt_gui.core.adapters import find_adapters, merge_targets, pair_with_base
from ckpt_gui.core.export import ExportError, ExportOptions
from ckpt_gui.core.export.merge_verify import merge_verifier
from ckpt_gui.core.export.plan import plan_export
from ckpt_gui.core.reader import open_checkpoint
from tests.core.adapter_models import make_adapter, merged_reference


def digest(folder: Path) -> dict[str, str]:
    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def read_back(path: Path) -> dict[str, torch.Tensor]:
    with open_checkpoint(path) as ckpt:
        return {n.key: n.load().clone() for n in ckpt.tensors()}


def merge(made, dst: Path, *extra: str, capsys=None) -> list[str]:
    code = main(["export", str(made.adapter), str(dst), "--merge-into", str(made.base), *extra])
    out = capsys.readouterr() if capsys is not None else None
    assert code == 0, out.err if out else ""
    return out.out.splitlines() if out else []


def assert_bitwise(result: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert sorted(result) == sorted(expected)
    for key, value in expected.items():
        got = result[key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        assert torch.equal(
            got.view(-1).view(torch.uint8), value.contiguous().view(-1).view(torch.uint8)
        ), key


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_float32_merge_is_peft_bit_for_bit(tmp_path: Path, capsys, fmt: str) -> None:
    made = make_adapter(
        tmp_path,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "embed_tokens"],
        modules_to_save=["lm_head"],
    )
    before = digest(made.adapter) | digest(made.base)
    dst = tmp_path / f"merged.{fmt}"
    lines = merge(made, dst, capsys=capsys)
    assert digest(made.adapter) | digest(made.base) == before  # sources untouched
    verified = [line for line in lines if line.startswith("verified:")]
    assert verified and "11 merged weights equal W + scale·B·A" in verified[0]
    assert "bit for bit" in verified[0] and "modules_to_save" in verified[0]
    assert any("merged 11 modules of adapter default" in line for line in lines)
    assert_bitwise(read_back(dst), merged_reference(made))


def test_sharded_merge(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    dst = tmp_path / "merged"
    merge(made, dst, "--shard-size", "4KB", capsys=capsys)
    assert (dst / "model.safetensors.index.json").exists()
    assert len(list(dst.glob("model-*.safetensors"))) > 1
    assert_bitwise(read_back(dst), merged_reference(made))


def test_rslora_and_patterns_merge_bit_for_bit(tmp_path: Path, capsys) -> None:
    made = make_adapter(
        tmp_path,
        r=8,
        lora_alpha=5,
        use_rslora=True,
        rank_pattern={"k_proj": 2},
        alpha_pattern={"layers.0.self_attn.q_proj": 3},
    )
    merge(made, tmp_path / "m.safetensors", capsys=capsys)
    assert_bitwise(read_back(tmp_path / "m.safetensors"), merged_reference(made))


def test_bin_adapter_merge(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, safe=False)
    merge(made, tmp_path / "m.safetensors", capsys=capsys)
    assert_bitwise(read_back(tmp_path / "m.safetensors"), merged_reference(made))


def test_bfloat16_merge(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    lines = merge(made, tmp_path / "m.safetensors", "--dtype", "bfloat16", capsys=capsys)
    verified = next(line for line in lines if line.startswith("verified:"))
    assert "cast to bfloat16, bit for bit" in verified
    reference = merged_reference(made)
    result = read_back(tmp_path / "m.safetensors")
    # Exactly the float32 merge rounded to bfloat16 ...
    assert_bitwise(result, {k: v.to(torch.bfloat16) for k, v in reference.items()})
    # ... so within bfloat16's rounding (2⁻⁸ relative) of it.
    for key, value in reference.items():
        got = result[key].double()
        assert ((got - value.double()).abs() <= value.double().abs() * 2**-8).all(), key


def test_bfloat16_base_merges_as_peft_does(tmp_path: Path, capsys) -> None:
    peft = pytest.importorskip("peft")
    (tmp_path / "f32").mkdir()
    made = make_adapter(tmp_path / "f32")
    base = {k: v.to(torch.bfloat16) for k, v in load_file(made.base).items()}
    save_file(base, tmp_path / "base16.safetensors")
    model = made.model.get_base_model()
    model = type(model)()
    model.load_state_dict({k: v.float() for k, v in base.items()})
    model = model.to(torch.bfloat16)
    # PEFT loads a float32 adapter onto a bfloat16 base as float32 factors (autocast).
    reference = peft.PeftModel.from_pretrained(model, made.adapter).merge_and_unload().state_dict()
    dst = tmp_path / "m.safetensors"
    code = main(
        [
            "export",
            str(made.adapter),
            str(dst),
            "--merge-into",
            str(tmp_path / "base16.safetensors"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert_bitwise(read_back(dst), {k: v.detach() for k, v in reference.items()})


def test_existing_destination_refused_without_force(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    dst = tmp_path / "m.safetensors"
    dst.write_bytes(b"keep me")
    args = ["export", str(made.adapter), str(dst), "--merge-into", str(made.base)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert dst.read_bytes() == b"keep me"
    assert main([*args, "--force"]) == 0
    assert_bitwise(read_back(dst), merged_reference(made))


def test_destination_inside_the_adapter_is_refused(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    before = digest(made.adapter)
    for dst in (made.adapter / "adapter_model.safetensors", made.adapter / "merged.safetensors"):
        args = ["export", str(made.adapter), str(dst), "--merge-into", str(made.base), "--force"]
        assert main(args) == 2
        assert "choose another" in capsys.readouterr().err
    assert digest(made.adapter) == before


def test_merge_into_the_wrong_base_is_refused(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    save_file({"transformer.wte.weight": torch.zeros(32, 16)}, tmp_path / "gpt.safetensors")
    dst = tmp_path / "m.safetensors"
    args = [
        "export",
        str(made.adapter),
        str(dst),
        "--merge-into",
        str(tmp_path / "gpt.safetensors"),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "has no weight in" in err and len(err.strip().splitlines()) == 1
    assert not dst.exists()


def test_dora_merge_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path, use_dora=True)
    args = ["export", str(made.adapter), str(tmp_path / "m.pt"), "--merge-into", str(made.base)]
    assert main(args) == 2
    assert "DoRA" in capsys.readouterr().err


def test_the_verification_catches_a_wrong_merge(tmp_path: Path) -> None:
    """The verifier recomputes from the sources: a file holding a wrong merge fails it."""
    made = make_adapter(tmp_path)
    reference = merged_reference(made)
    key = "model.layers.0.self_attn.q_proj.weight"
    base = load_file(made.base)
    for name, wrong in (
        ("unmerged", dict(reference, **{key: base[key]})),
        (
            "one ulp off",
            dict(reference, **{key: torch.nextafter(reference[key], torch.tensor(1.0))}),
        ),
    ):
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in wrong.items()}, path)
        with open_checkpoint(made.adapter) as adapter_ckpt, open_checkpoint(made.base) as base_ckpt:
            with find_adapters(adapter_ckpt) as found:
                adapter = found.adapters[0]
                spec = merge_targets(
                    adapter, pair_with_base(adapter.tensors, adapter.config, base_ckpt)
                )
                plan = plan_export(base_ckpt, ExportOptions(format="safetensors"))
                with pytest.raises(ExportError, match="verification failed"):
                    steps = merge_verifier(spec)(plan, base_ckpt, path, None)
                    while True:
                        next(steps)


def test_headless_json_of_the_merged_result(tmp_path: Path, capsys) -> None:
    made = make_adapter(tmp_path)
    merge(made, tmp_path / "m.safetensors", capsys=capsys)
    assert main(["inspect", str(tmp_path / "m.safetensors"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] != "lora-adapter"
    assert {t["key"] for t in out["tensors"]} == set(load_file(made.base))


def test_a_folder_with_sub_folder_adapters_merges_its_own(tmp_path: Path, capsys) -> None:
    peft = pytest.importorskip("peft")
    made = make_adapter(tmp_path)
    made.model.add_adapter("second", peft.LoraConfig(r=2, lora_alpha=4, target_modules=["o_proj"]))
    made.model.save_pretrained(made.adapter)
    lines = merge(made, tmp_path / "m.safetensors", capsys=capsys)
    assert "not merged: the other adapters in the folder (second)" in lines
    made.model.set_adapter("default")
    assert_bitwise(read_back(tmp_path / "m.safetensors"), merged_reference(made))
