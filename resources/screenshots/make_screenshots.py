"""Regenerate the README screenshots of the browser window.

    QT_QPA_PLATFORM=offscreen python resources/screenshots/make_screenshots.py

Writes a small GPT-style training checkpoint (tied embeddings, AdamW state, a scheduler, one
diverged layer with NaN/Inf, a pruned all-zero bias) into a temporary folder, opens it the way
``ckpt-gui PATH --screenshot`` does and saves:
- ``browser.png``: the tree with statistics, the largest tensor selected, its histogram;
- ``values.png``: an attention matrix in the Values panel (heat map and table);
- ``filter.png``: the tree filtered with a glob, parents kept;
- ``error.png``: what a truncated download looks like.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch  # noqa: E402
from torch import nn  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZE = (1600, 1000)


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.ModuleDict(
            {"c_attn": nn.Linear(width, 3 * width), "c_proj": nn.Linear(width, width)}
        )
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.ModuleDict(
            {"c_fc": nn.Linear(width, 4 * width), "c_proj": nn.Linear(4 * width, width)}
        )


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 4096, width: int = 256, layers: int = 4) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, width),
                "wpe": nn.Embedding(512, width),
                "h": nn.ModuleList(Block(width) for _ in range(layers)),
                "ln_f": nn.LayerNorm(width),
            }
        )
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.transformer["wte"].weight  # tied, as in GPT-2
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)  # GPT-2's initialisation

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.transformer["wte"](idx) + self.transformer["wpe"](torch.arange(idx.shape[1]))
        for block in self.transformer["h"]:
            x = x + block.attn["c_proj"](block.attn["c_attn"](block.ln_1(x))[..., : x.shape[-1]])
            x = x + block.mlp["c_proj"](torch.relu(block.mlp["c_fc"](block.ln_2(x))))
        return self.lm_head(self.transformer["ln_f"](x))


def showcase_checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = TinyGPT()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000)
    for _ in range(3):
        idx, targets = torch.randint(0, 4096, (2, 4, 32))
        loss = nn.functional.cross_entropy(model(idx).flatten(0, 1), targets.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    state = model.state_dict()
    with torch.no_grad():
        state["transformer.h.3.mlp.c_fc.weight"][7, :5] = float("nan")  # a diverged layer
        state["transformer.h.3.mlp.c_fc.weight"][9, 0] = float("inf")
        state["transformer.h.2.attn.c_proj.bias"].zero_()  # pruned
    torch.save(
        {
            "model": state,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "epoch": 12,
            "step": 48_000,
            "loss": float(loss.detach()),
            "config": {"vocab_size": 4096, "n_embd": 256, "n_layer": 4, "dropout": 0.0},
        },
        path,
    )
    return path


def wait(app: object, done: object, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        app.processEvents()  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.01)


def settle(app: object, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    wait(app, lambda: time.monotonic() > end)


def main() -> int:
    sys.path.insert(0, str(HERE.parent.parent))
    from ckpt_gui.qt.app import make_application
    from ckpt_gui.qt.main_window import MainWindow

    app = make_application()
    folder = Path(tempfile.mkdtemp(prefix="ckpt-gui-shots-"))
    path = showcase_checkpoint(folder / "gpt-step48000.pt")

    window = MainWindow()
    window.resize(*SIZE)
    window.show()
    view = window.open_path(path)
    wait(app, view.is_idle)
    tree = view.tree
    model = view.model
    assert model is not None
    items = {it.key: it for it in model.root_item().walk()}
    tree.view.expand(tree.proxy.mapFromSource(model.index_of(items["model.transformer"])))
    tree.view.expand(tree.proxy.mapFromSource(model.index_of(items["model.transformer.h"])))
    tree.view.expand(tree.proxy.mapFromSource(model.index_of(items["model.transformer.h.3"])))
    tree.view.expand(tree.proxy.mapFromSource(model.index_of(items["model.transformer.h.3.mlp"])))
    tree.view.expand(tree.proxy.mapFromSource(model.index_of(items["model.lm_head"])))
    view.select_largest_tensor()
    wait(app, lambda: not view.panels_busy())
    tree.view.scrollToTop()
    settle(app)
    window.grab().save(str(HERE / "browser.png"))

    tree.select_item(items["model.transformer.h.0.attn.c_proj.weight"])
    view.plots.setCurrentWidget(view.values)
    wait(app, lambda: not view.panels_busy())
    settle(app)
    window.grab().save(str(HERE / "values.png"))

    view.plots.setCurrentWidget(view.histogram)
    tree.set_filter("*.h.*.mlp.c_fc.weight", "glob")
    tree.select_item(items["model.transformer.h.3.mlp.c_fc.weight"])
    wait(app, lambda: not view.panels_busy())
    settle(app)
    window.grab().save(str(HERE / "filter.png"))
    window.close_current()

    data = path.read_bytes()
    broken = folder / "gpt-step48000-partial.pt"
    broken.write_bytes(data[: len(data) // 3])
    view = window.open_path(broken)
    wait(app, view.is_idle)
    settle(app)
    window.grab().save(str(HERE / "error.png"))
    window.close()
    print("wrote", ", ".join(p.name for p in sorted(HERE.glob("*.png"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
