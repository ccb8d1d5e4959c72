"""The export plan: what is kept (under which name and dtype), dropped (and why), and how big the
result will be, computed from real checkpoint files without writing anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ckpt_gui.core.export import ExportOptions, parse_size, plan_export
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import trained, training_checkpoint

MODEL_KEYS = [
    "linear1.weight",
    "linear1.bias",
    "bn.weight",
    "bn.bias",
    "bn.running_mean",
    "bn.running_var",
    "bn.num_batches_tracked",
    "linear2.weight",
    "linear2.bias",
]


def lightning_checkpoint(path: Path) -> None:
    model, opt = trained("adam")
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.2.0",
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [],
            "loops": {"fit_loop": {"epoch_progress": {"current": 3}}},
            "callbacks": {},
        },
        path,
    )


def model_and_ema(path: Path) -> None:
    model, _ = trained()
    ema = {
        k: v.clone() + 1 if v.is_floating_point() else v.clone()
        for k, v in model.state_dict().items()
    }
    torch.save({"model": model.state_dict(), "ema": ema, "step": 10}, path)


def plan_for(path: Path, **options: object):
    with open_checkpoint(path) as ckpt:
        return plan_export(ckpt, ExportOptions(**options))  # type: ignore[arg-type]


def test_params_only_keeps_the_model_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    training_checkpoint(path, "adam")
    plan = plan_for(path)
    assert plan.ok and plan.state_dict == "model_state_dict"
    assert [k.name for k in plan.kept] == MODEL_KEYS
    assert plan.kept[0].key == "model_state_dict.linear1.weight"
    reasons = {d.key: d.reason for d in plan.dropped}
    assert reasons["optimizer_state_dict.state.0.exp_avg"] == "optimizer state"
    assert reasons["epoch"] == "not in the model's state_dict"
    assert not any(d.key.startswith("model_state_dict") for d in plan.dropped)
    assert (
        plan.tensor_bytes == sum(k.nbytes for k in plan.kept) == 4 * (50 + 5 + 4 * 5 + 10 + 2) + 8
    )


def test_cpu_copy_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    obj = training_checkpoint(path)
    plan = plan_for(path, mode="all")
    assert plan.ok and not plan.dropped
    assert {k.name for k in plan.kept} == {k.key for k in plan.kept}
    values = dict(plan.kept_values)
    assert values["epoch"] == "epoch" and values["loss"] == "loss"
    assert len(plan.kept) == len(obj["model_state_dict"]) + 6  # SGD: one momentum per param


def test_several_state_dicts_default_to_the_model_and_offer_the_others(tmp_path: Path) -> None:
    path = tmp_path / "ema.pt"
    model_and_ema(path)
    plan = plan_for(path)
    assert plan.candidates == ["model", "ema"] and plan.state_dict == "model"
    assert {d.reason for d in plan.dropped if d.key.startswith("ema.")} == {
        "state_dict 'ema' not chosen"
    }
    ema = plan_for(path, state_dict="ema")
    assert ema.state_dict == "ema" and [k.key for k in ema.kept][0] == "ema.linear1.weight"
    wrong = plan_for(path, state_dict="nope")
    assert wrong.problems == ["no state_dict 'nope' (choose from: 'model', 'ema')"]


def test_lightning_state_dict_with_model_prefix_stripped(tmp_path: Path) -> None:
    path = tmp_path / "lightning.ckpt"
    lightning_checkpoint(path)
    plan = plan_for(path, strip_prefix="model.")
    assert plan.state_dict == "state_dict"
    assert [k.name for k in plan.kept] == MODEL_KEYS
    replaced = plan_for(path, strip_prefix="model.", add_prefix="backbone.")
    assert replaced.kept[0].name == "backbone.linear1.weight"
    assert {d.reason for d in plan.dropped if "optimizer_states" in d.key and d.is_tensor} == {
        "optimizer state"
    }


def test_globs_match_the_key_inside_the_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    training_checkpoint(path)
    plan = plan_for(path, include=("linear*",), exclude=("*.bias",))
    assert [k.name for k in plan.kept] == ["linear1.weight", "linear2.weight"]
    reasons = {d.key: d.reason for d in plan.dropped}
    assert reasons["model_state_dict.linear1.bias"] == "excluded by --exclude"
    assert reasons["model_state_dict.bn.weight"] == "not matched by --include"
    nothing = plan_for(path, include=("nomatch",))
    assert nothing.problems == ["nothing left to export: every key was dropped"]


def test_cast_touches_floating_tensors_only(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    training_checkpoint(path)
    plan = plan_for(path, dtype="bfloat16")
    dtypes = {k.name: (k.source_dtype, k.dtype, k.nbytes) for k in plan.kept}
    assert dtypes["linear1.weight"] == ("float32", "bfloat16", 100)
    assert dtypes["bn.num_batches_tracked"] == ("int64", "int64", 8)


def test_cpu_copy_renumbers_lists_after_excluding_items(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save({"items": [torch.zeros(1), torch.ones(2), torch.full((3,), 2.0)]}, path)
    plan = plan_for(path, mode="all", exclude=("items.0",))
    assert [(k.key, k.name) for k in plan.kept] == [("items.1", "items.0"), ("items.2", "items.1")]


def test_safetensors_drops_values_and_refuses_unsupported_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "train.pt"
    training_checkpoint(path)
    plan = plan_for(path, mode="all", format="safetensors")
    assert plan.ok and {d.reason for d in plan.dropped} == {"safetensors holds tensors only"}
    complex_path = tmp_path / "c128.pt"
    torch.save({"z": torch.zeros(2, dtype=torch.complex128)}, complex_path)
    bad = plan_for(complex_path, format="safetensors")
    assert bad.problems == ["z: complex128 cannot be stored in safetensors"]


def test_renames_that_collide_are_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "dp.pt"
    torch.save({"module.w": torch.zeros(1), "w": torch.ones(1)}, path)
    plan = plan_for(path, strip_prefix="module.")
    assert plan.problems == ["'module.w' and 'w' would both be named 'w'"]


def test_no_state_dict_means_cpu_copy(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    torch.save({"config": {"lr": 0.1}, "weights": [torch.zeros(2)]}, path)
    plan = plan_for(path)
    assert plan.problems == ["no model state_dict found; export a CPU copy instead"]
    assert plan_for(path, mode="all").ok


def test_tied_weights_share_in_pt_and_shards_fill_in_order(tmp_path: Path) -> None:
    path = tmp_path / "tied.pt"
    shared = torch.zeros(100)
    torch.save({"embed.weight": shared, "a": torch.zeros(100), "head.weight": shared}, path)
    plan = plan_for(path, shard_size=500, format="pt")
    assert [(k.name, k.shard, k.shares_with) for k in plan.kept] == [
        ("embed.weight", 0, None),
        ("a", 1, None),
        ("head.weight", 0, "embed.weight"),
    ]
    assert plan.files == [
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
    ]
    st = plan_for(path, shard_size=500, format="safetensors")
    assert [k.shard for k in st.kept] == [0, 1, 2] and st.kept[2].shares_with is None
    assert st.files[-1] == "model.safetensors.index.json"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("5GB", 5_000_000_000),
        ("500MB", 500_000_000),
        ("2MiB", 2 * 1024**2),
        ("1.5 kb", 1500),
        ("4096", 4096),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("5 parsecs")
