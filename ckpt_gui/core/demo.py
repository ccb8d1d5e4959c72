"""The built-in demo: a small but real training run to browse and compare.

A tiny GPT-style transformer (token and position embeddings, two pre-norm blocks of attention
and MLP, the output head tied to the embedding) trained for a few epochs with AdamW and a cosine
schedule on a synthetic next-token task, saved after every epoch as a training checkpoint: model
state, optimizer state (AdamW's moments), scheduler, ``epoch`` and ``loss``. The last epoch is
also ``demo-checkpoint.pt``, what ``ckpt-gui --demo`` opens; the epochs next to it give Compare
With… (and runs) something real to show. Writing it takes about a second: the window does it on
a worker, after its first paint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ckpt_gui.core.demo_paths import DEMO_NAME, RUN_FOLDER, default_demo_path

__all__ = ["DEMO_NAME", "RUN_FOLDER", "default_demo_path", "demo_checkpoint", "write_demo"]

EPOCHS = 4
VOCAB, WIDTH, CONTEXT = 96, 48, 16


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, num_heads=4, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = VOCAB, width: int = WIDTH, layers: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, width)
        self.wpe = nn.Embedding(CONTEXT, width)
        self.blocks = nn.ModuleList(Block(width) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)  # GPT-2's initialisation

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        n = idx.shape[1]
        x = self.wte(idx) + self.wpe(torch.arange(n))
        mask = torch.triu(torch.full((n, n), float("-inf")), diagonal=1)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln_f(x))


def demo_run(epochs: int = EPOCHS, steps: int = 6, seed: int = 0) -> list[dict[str, object]]:
    """One training checkpoint per epoch, deterministic for a given seed."""
    threads = torch.get_num_threads()
    # A model this small trains fastest on one thread (and leaves the others to the window).
    torch.set_num_threads(1)
    try:
        return _train(epochs, steps, seed)
    finally:
        torch.set_num_threads(threads)


def _train(epochs: int, steps: int, seed: int) -> list[dict[str, object]]:
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = TinyGPT()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    # The task: continue an arithmetic sequence of tokens (learnable, so the loss falls).
    starts = torch.randint(0, VOCAB, (64, 1), generator=generator)
    strides = torch.randint(1, 4, (64, 1), generator=generator)
    data = (starts + strides * torch.arange(CONTEXT + 1)) % VOCAB
    saved = []
    loss = torch.tensor(0.0)
    for epoch in range(1, epochs + 1):
        for _ in range(steps):
            optimizer.zero_grad()
            logits = model(data[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), data[:, 1:].reshape(-1))
            loss.backward()
            optimizer.step()
            schedule.step()
        saved.append(
            {
                "model": {k: v.clone() for k, v in model.state_dict().items()},
                "optimizer": _cloned(optimizer.state_dict()),
                "scheduler": schedule.state_dict(),
                "epoch": epoch,
                "step": epoch * steps,
                "loss": float(loss.detach()),
                "config": {"vocab_size": VOCAB, "n_embd": WIDTH, "n_layer": 2, "context": CONTEXT},
            }
        )
    return saved


def demo_checkpoint(steps: int = 20, seed: int = 0) -> dict[str, object]:
    """One training checkpoint of the demo model after ``steps`` steps."""
    return demo_run(epochs=1, steps=steps, seed=seed)[-1]


def write_demo(path: str | os.PathLike[str] | None = None) -> Path:
    """Write the demo run (atomically, file by file) and return the checkpoint to open: the
    last epoch. The epochs are in ``demo-run/`` next to it (``epoch-1.pt`` …)."""
    target = Path(path) if path is not None else default_demo_path()
    folder = target.parent / RUN_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    run = demo_run()
    for epoch, checkpoint in enumerate(run, start=1):
        _save(checkpoint, folder / f"epoch-{epoch}.pt")
    _save(run[-1], target)
    return target


def _save(obj: object, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, target)


def _cloned(state: dict[str, object]) -> dict[str, object]:
    """A copy of an optimizer's state_dict whose tensors no longer change with training."""
    out: dict[str, object] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            out[key] = _cloned(value)
        elif isinstance(value, torch.Tensor):
            out[key] = value.clone()
        else:
            out[key] = value
    return out
