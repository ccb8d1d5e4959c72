"""Roll-ups per module prefix, checked against numpy over the tensors under each prefix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.rollup import add_to, prefixes, rollups
from ckpt_gui.core.stats import StatsResult, iter_stats, tensor_stats

NAN, INF = float("nan"), float("inf")


def state_dict() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i in range(3):
        sd[f"model.layers.{i}.attn.weight"] = torch.randn(16, 16, generator=g) * (i + 1)
        sd[f"model.layers.{i}.attn.bias"] = torch.zeros(16)
        sd[f"model.layers.{i}.mlp.weight"] = torch.randn(32, 16, generator=g).half()
    sd["model.layers.1.mlp.weight"][0, :3] = torch.tensor([NAN, INF, -INF]).half()
    sd["lm_head.weight"] = torch.randn(10, 16, generator=g).bfloat16()
    return sd


def test_prefixes() -> None:
    assert prefixes("model.layers.3.attn.weight") == [
        "", "model.", "model.layers.", "model.layers.3.", "model.layers.3.attn.",
    ]  # fmt: skip
    assert prefixes("bias") == [""]


def test_rollups_match_numpy_over_each_block(tmp_path: Path) -> None:
    sd = state_dict()
    torch.save(sd, tmp_path / "m.pt")
    with open_checkpoint(tmp_path / "m.pt") as ckpt:
        stats = {e.key: e.stats for e in iter_stats(ckpt.tensors()) if isinstance(e, StatsResult)}
    table = rollups(stats)
    assert "model.layers.1." in table and "model.layers.1.attn." in table and "" in table
    assert "model.layers.1.attn.weight." not in table  # tensors themselves are not prefixes

    for prefix in ("", "model.", "model.layers.", "model.layers.1.", "model.layers.2.attn."):
        members = {k: t for k, t in sd.items() if k.startswith(prefix)}
        values = np.concatenate([t.double().numpy().ravel() for t in members.values()])
        finite = values[np.isfinite(values)]
        r = table[prefix]
        assert r.prefix == prefix and r.tensors == len(members)
        assert r.numel == sum(t.numel() for t in members.values())
        assert r.nbytes == sum(t.numel() * t.element_size() for t in members.values())
        assert r.l2 == pytest.approx(math.sqrt(float(np.sum(finite**2))), rel=1e-6)
        assert r.min == finite.min() and r.max == finite.max()
        assert r.zeros == int(np.sum(values == 0))
        assert (r.nan, r.posinf, r.neginf) == (
            int(np.isnan(values).sum()), int(np.sum(values == INF)), int(np.sum(values == -INF)),
        )  # fmt: skip

    assert table["model.layers.1."].nonfinite == 3 and not table["model.layers.1."].healthy
    assert table["model.layers.0."].healthy and table["model.layers.2."].healthy
    assert table[""].nonfinite == 3


def test_growing_rollups_as_results_arrive_and_explicit_sizes() -> None:
    a, b = torch.tensor([3.0, -4.0]), torch.tensor([NAN, 12.0])
    table: dict = {}
    add_to(table, "enc.a", tensor_stats(a))
    assert table["enc."].l2 == 5.0 and table["enc."].tensors == 1
    add_to(table, "enc.b", tensor_stats(b), nbytes=100)
    r = table["enc."]
    assert r.l2 == 13.0 and (r.min, r.max, r.nan) == (-4.0, 12.0, 1)
    assert r.nbytes == 8 + 100 and r.numel == 4
    assert rollups([("x.all_nan", tensor_stats(torch.full((3,), NAN)))])["x."].min is None


def test_optimizer_state_rolls_up_per_state_name_without_counters(tmp_path, capsys) -> None:
    """Adam's moments are rolled up per name over all parameters; its step counter (a float
    tensor holding 2) and BatchNorm's num_batches_tracked never enter value statistics."""
    import json

    import torch

    from ckpt_gui.cli import main
    from ckpt_gui.core.reader import open_checkpoint
    from ckpt_gui.core.rollup import is_counter, optimizer_state_rollups
    from ckpt_gui.core.stats import tensor_stats
    from tests.core.checkpoints import training_checkpoint

    path = tmp_path / "adam.pt"
    saved = training_checkpoint(path, "adam")
    with open_checkpoint(path) as ckpt:
        stats = {n.key: tensor_stats(n.load()) for n in ckpt.tensors() if n.load().numel()}
        table = optimizer_state_rollups(ckpt.root, stats)["optimizer_state_dict"]
        counters = sorted(n.key for n in ckpt.tensors() if is_counter(n))
    assert list(table) == ["exp_avg", "exp_avg_sq"]
    moments = [s["exp_avg_sq"] for s in saved["optimizer_state_dict"]["state"].values()]
    expected = torch.cat([m.double().reshape(-1) for m in moments])
    assert table["exp_avg_sq"].tensors == 6 and table["exp_avg_sq"].numel == expected.numel()
    assert table["exp_avg_sq"].max == expected.max().item()
    assert table["exp_avg_sq"].l2 == pytest.approx(expected.norm().item(), rel=1e-6)
    assert "model_state_dict.bn.num_batches_tracked" in counters
    assert "optimizer_state_dict.state.0.step" in counters
    assert main(["stats", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["optimizer_state"]["optimizer_state_dict"]) == {"exp_avg", "exp_avg_sq"}
