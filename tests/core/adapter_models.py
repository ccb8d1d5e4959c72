"""Real PEFT adapters for the adapter tests: a small transformer-like model (embedding, attention
q/k/v/o, an MLP, a head), wrapped with ``peft``, trained a few steps so that B is not zero, and
saved with ``save_pretrained``. The base is saved before PEFT wraps it, as a user has it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

peft = pytest.importorskip("peft")

WIDTH, LAYERS, VOCAB = 16, 2, 32


class Attention(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.o_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.q_proj(x) @ self.k_proj(x).transpose(-1, -2), dim=-1)
        return self.o_proj(weights @ self.v_proj(x))


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.self_attn = Attention(d)
        self.norm = nn.LayerNorm(d)
        self.mlp = nn.ModuleDict({"up_proj": nn.Linear(d, 2 * d), "down_proj": nn.Linear(2 * d, d)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm(x))
        return x + self.mlp["down_proj"](torch.relu(self.mlp["up_proj"](x)))


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, WIDTH)
        self.layers = nn.ModuleList([Block(WIDTH) for _ in range(LAYERS)])


class TinyLM(nn.Module):
    """Keys as a Hugging Face causal LM has them: ``model.layers.0.self_attn.q_proj.weight``."""

    def __init__(self) -> None:
        super().__init__()
        self.model = Inner()
        self.lm_head = nn.Linear(WIDTH, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x)
        return self.lm_head(x)


@dataclass
class Made:
    base: Path  # the base's state_dict, saved before PEFT wrapped it
    adapter: Path  # the save_pretrained folder
    model: Any  # the PeftModel, trained


def train(model: nn.Module, steps: int, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        ids = torch.randint(0, VOCAB, (4, 8), generator=g)
        logits = model(ids)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()


def make_adapter(
    tmp_path: Path,
    *,
    steps: int = 3,
    seed: int = 0,
    safe: bool = True,
    base_dtype: torch.dtype = torch.float32,
    **config: Any,
) -> Made:
    """Build, train and save a LoRA adapter; ``config`` goes to ``peft.LoraConfig``."""
    torch.manual_seed(seed)
    base = TinyLM().to(base_dtype)
    base_path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, base_path)
    config.setdefault("r", 4)
    config.setdefault("lora_alpha", 8)
    config.setdefault("target_modules", ["q_proj", "k_proj", "v_proj", "o_proj"])
    model = peft.get_peft_model(base, peft.LoraConfig(**config))
    train(model, steps, seed)
    adapter = tmp_path / "adapter"
    model.save_pretrained(adapter, safe_serialization=safe)
    return Made(base_path, adapter, model)


def lora_layers(model: Any, adapter: str = "default") -> dict[str, Any]:
    """PEFT's LoRA layers by the adapter's module path (``base_model.model.model...q_proj``)."""
    return {
        name: m
        for name, m in model.named_modules()
        if hasattr(m, "get_delta_weight") and adapter in getattr(m, "scaling", {})
    }


def edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def merged_reference(made: Made) -> dict[str, torch.Tensor]:
    """``merge_and_unload().state_dict()`` of the trained model (its keys are the base's)."""
    merged = made.model.merge_and_unload()
    return {k: v.detach() for k, v in merged.state_dict().items()}
