"""LoRA on the layers whose ΔW is not simply B·A: convolutions (3x3 and 1x1 kernels) and GPT-2's
``Conv1D`` (``fan_in_fan_out``, weights stored transposed). Built with the real ``peft`` (and
transformers' ``Conv1D``, which peft requires); the numbers and the merged export must be what
PEFT itself computes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ckpt_gui.cli import main
from tests.core.adapter_models import Made, lora_layers, merged_reference
from tests.core.test_adapter_merge import assert_bitwise, merge, read_back

peft = pytest.importorskip("peft")


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.mix = nn.Conv2d(8, 8, kernel_size=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.mix(torch.relu(self.conv_in(x))))
        return self.head(x.mean(dim=(2, 3)))


class Gpt2Block(nn.Module):
    """GPT-2's attention projections: ``Conv1D`` stores its weight as (in, out)."""

    def __init__(self) -> None:
        super().__init__()
        from transformers.pytorch_utils import Conv1D

        self.c_attn = Conv1D(3 * 8, 8)
        self.c_proj = Conv1D(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.c_attn(x).split(8, dim=-1)
        return self.c_proj(torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v)


def _made(tmp_path: Path, base: nn.Module, data: torch.Tensor, **config: Any) -> Made:
    torch.manual_seed(0)
    base_path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, base_path)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, **config))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(3):
        loss = model(data).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter)
    return Made(base_path, adapter, model)


@pytest.fixture(params=["conv", "gpt2"])
def made(request: pytest.FixtureRequest, tmp_path: Path) -> Made:
    torch.manual_seed(0)
    if request.param == "conv":
        return _made(
            tmp_path, ConvNet(), torch.randn(2, 3, 6, 6), target_modules=["conv_in", "mix"]
        )
    pytest.importorskip("transformers")
    return _made(
        tmp_path,
        Gpt2Block(),
        torch.randn(2, 5, 8),
        target_modules=["c_attn", "c_proj"],
        fan_in_fan_out=True,
    )


def test_the_numbers_are_peft_s(made: Made, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(made.adapter), "--json"]) == 0
    targets = json.loads(capsys.readouterr().out)["adapter"]["targets"]
    layers = lora_layers(made.model)
    assert {t["module"] for t in targets} == set(layers) and len(layers) == 2
    for t in targets:
        delta = layers[t["module"]].get_delta_weight("default").detach().double()
        sigma = torch.linalg.svdvals(delta.reshape(delta.shape[0], -1))
        assert t["delta_norm"] == pytest.approx(float(delta.norm()), rel=1e-6)
        assert t["stable_rank"] == pytest.approx(float(delta.norm() ** 2 / sigma[0] ** 2), rel=1e-6)
        # PEFT forms ΔW in float32: its singular values are good to ~1e-7 of the largest.
        top = [float(s) for s in sigma[: min(t["r"], 8)]]
        assert t["singular_values"] == pytest.approx(top, abs=1e-6 * float(sigma[0]))


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_the_merge_is_peft_s_bit_for_bit(
    made: Made, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    dst = tmp_path / f"merged.{fmt}"
    lines = merge(made, dst, "--format", fmt, capsys=capsys)
    assert any(line.startswith("verified:") and "bit for bit" in line for line in lines)
    assert_bitwise(read_back(dst), merged_reference(made))
