"""Key matching for diffs, on real files: wrapper prefixes stripped when they line keys up."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.diff import (
    IDENTICAL,
    ONLY_A,
    KeyMatch,
    diff_checkpoints,
    match_checkpoints,
    parse_map,
)
from ckpt_gui.core.reader import open_checkpoint
from tests.core.checkpoints import trained, training_checkpoint


def _state_dict() -> dict[str, torch.Tensor]:
    model, _ = trained()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _diff(path_a: Path, path_b: Path, **options: object):
    with open_checkpoint(path_a) as a, open_checkpoint(path_b) as b:
        return diff_checkpoints(a, b, **options)


def test_ddp_prefixed_safetensors_matches_its_plain_twin(tmp_path: Path) -> None:
    sd = _state_dict()
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "plain.safetensors")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pt")
    report = _diff(tmp_path / "ddp.pt", tmp_path / "plain.safetensors")
    assert (report.match.mode, report.match.strip_a, report.match.strip_b) == (
        "auto",
        "module.",
        "",
    )
    assert report.match.matched == len(sd)
    assert report.counts()[IDENTICAL] == len(sd)
    assert report.equal
    assert [e.key for e in report.of(IDENTICAL)][0] == "module.linear1.weight"  # A's keys


def test_exact_matching_keeps_the_prefixes(tmp_path: Path) -> None:
    sd = _state_dict()
    torch.save(sd, tmp_path / "plain.pt")
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pt")
    report = _diff(tmp_path / "ddp.pt", tmp_path / "plain.pt", match="exact")
    counts = report.counts()
    assert counts["only_a"] == counts["only_b"] == len(sd)
    assert report.match.matched == 0 and not report.equal


def test_lightning_checkpoint_against_bare_state_dict(tmp_path: Path) -> None:
    model, opt = trained("adam")
    sd = model.state_dict()
    torch.save(
        {
            "epoch": 3,
            "global_step": 120,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {f"model.{k}": v for k, v in sd.items()},
            "optimizer_states": [opt.state_dict()],
            "lr_schedulers": [],
        },
        tmp_path / "last.ckpt",
    )
    torch.save(sd, tmp_path / "weights.pt")
    report = _diff(tmp_path / "last.ckpt", tmp_path / "weights.pt")
    assert report.match.strip_a == "state_dict.model." and report.match.strip_b == ""
    assert len(report.of(IDENTICAL)) == len(sd)
    only_a = [e.key for e in report.of(ONLY_A)]
    assert only_a and all(k.startswith("optimizer_states.0.state.") for k in only_a)
    assert "epoch" in [e.key for e in report.of(ONLY_A, "value")]
    assert report.counts()["only_b"] == 0


def test_training_checkpoint_against_epoch_state_dict(tmp_path: Path) -> None:
    obj = training_checkpoint(tmp_path / "train.pt")
    torch.save(obj["model_state_dict"], tmp_path / "epoch7.pt")
    report = _diff(tmp_path / "train.pt", tmp_path / "epoch7.pt")
    assert report.match.to_json() == {
        "mode": "auto",
        "strip_a": "model_state_dict.",
        "strip_b": "",
        "matched": 9,
    }
    assert len(report.of(IDENTICAL)) == 9
    assert {e.key for e in report.of(ONLY_A)} == {
        f"optimizer_state_dict.state.{i}.momentum_buffer" for i in range(6)
    }
    identical = report.of(IDENTICAL)[0]
    assert identical.key == "model_state_dict.linear1.weight" and identical.name == "linear1.weight"


def test_training_checkpoint_against_a_ddp_compiled_state_dict(tmp_path: Path) -> None:
    obj = training_checkpoint(tmp_path / "train.pt")
    sd = obj["model_state_dict"]
    torch.save({f"module._orig_mod.{k}": v for k, v in sd.items()}, tmp_path / "wrapped.pt")
    report = _diff(tmp_path / "train.pt", tmp_path / "wrapped.pt")
    assert (report.match.strip_a, report.match.strip_b) == (
        "model_state_dict.",
        "module._orig_mod.",
    )
    assert len(report.of(IDENTICAL)) == len(sd)


def test_keys_that_already_line_up_are_matched_exactly(tmp_path: Path) -> None:
    sd = {f"model.{k}": v for k, v in _state_dict().items()}
    torch.save(sd, tmp_path / "a.pt")
    torch.save(sd, tmp_path / "b.pt")
    report = _diff(tmp_path / "a.pt", tmp_path / "b.pt")
    assert (report.match.strip_a, report.match.strip_b) == ("", "")
    assert report.match.describe() == "keys compared as they are (auto, 9 paired)"


def test_a_head_outside_the_wrapper_stays_only_in_a(tmp_path: Path) -> None:
    sd = _state_dict()
    torch.save(
        {**{f"model.{k}": v for k, v in sd.items()}, "lm_head.weight": torch.ones(3)},
        tmp_path / "causal.pt",
    )
    torch.save(sd, tmp_path / "base.pt")
    report = _diff(tmp_path / "causal.pt", tmp_path / "base.pt")
    assert report.match.strip_a == "model."
    assert [e.key for e in report.of(ONLY_A)] == ["lm_head.weight"]


def test_user_mapping(tmp_path: Path) -> None:
    sd = _state_dict()
    torch.save({f"student.{k}": v for k, v in sd.items()}, tmp_path / "a.pt")
    torch.save({f"teacher.{k}": v for k, v in sd.items()}, tmp_path / "b.pt")
    assert _diff(tmp_path / "a.pt", tmp_path / "b.pt").match.matched == 0  # not wrappers
    report = _diff(tmp_path / "a.pt", tmp_path / "b.pt", match=parse_map("student.=teacher."))
    assert report.match.to_json()["mode"] == "map"
    assert len(report.of(IDENTICAL)) == len(sd) and report.equal


def test_parse_map_needs_an_equals_sign() -> None:
    assert parse_map("model_state_dict.=") == KeyMatch("map", "model_state_dict.", "")
    with pytest.raises(ValueError, match="A_PREFIX=B_PREFIX"):
        parse_map("module.")


def test_values_are_matched_and_compared(tmp_path: Path) -> None:
    sd = _state_dict()
    torch.save({"epoch": 10, "model": sd, "tag": "run-1"}, tmp_path / "e10.pt")
    torch.save({"epoch": 20, "model": sd, "tag": "run-1"}, tmp_path / "e20.pt")
    report = _diff(tmp_path / "e10.pt", tmp_path / "e20.pt")
    changed = report.of("changed", "value")
    assert [(e.key, e.value_a, e.value_b) for e in changed] == [("epoch", 10, 20)]
    assert report.counts("value")[IDENTICAL] == 1
    assert not report.equal  # a changed value is a difference


def test_matching_pairs_in_a_order(tmp_path: Path) -> None:
    torch.save({"z": torch.ones(1), "a": torch.ones(1), "m": torch.ones(1)}, tmp_path / "a.pt")
    torch.save({"m": torch.ones(1), "z": torch.ones(1), "b": torch.ones(1)}, tmp_path / "b.pt")
    with open_checkpoint(tmp_path / "a.pt") as a, open_checkpoint(tmp_path / "b.pt") as b:
        m = match_checkpoints(a, b)
        assert [(x.key, y.key) for x, y in m.pairs] == [("z", "z"), ("m", "m")]
        assert [n.key for n in m.only_a] == ["a"] and [n.key for n in m.only_b] == ["b"]
