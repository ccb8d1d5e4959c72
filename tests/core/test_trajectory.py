"""Training runs (core.run): ordering, every figure against float64 references computed from
``torch.load``, flags, the cache and its invalidation, on a real small run trained with Adam."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from ckpt_gui.core.errors import Cancelled
from ckpt_gui.core.run import (
    RunCache,
    RunError,
    RunOpened,
    TrajectoryResult,
    compute_trajectory,
    iter_trajectory,
)
from tests.core.run_files import (
    EPOCHS,
    NAN_AT,
    NAN_KEY,
    close,
    load_model,
    reference,
    save_all,
    set_mtimes,
    train_states,
)

FIGURES = ("norm", "rel_change_from_first", "rel_update", "update_cosine", "min", "max", "std")


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def states() -> list[dict]:
    return train_states()


def _training_run(folder: Path, states: list[dict]) -> list[Path]:
    """Training checkpoints whose names sort against their steps (``z`` is the first)."""
    names = ["z", "q", "m", "c", "a", "b", "d"]
    return save_all(folder, states, lambda i, s: f"ckpt-{names[i]}.pt")


def _cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache-home" / "ckpt-gui" / "runs"


# -- ordering --------------------------------------------------------------------------------


def test_orders_by_the_step_stored_in_each_file(tmp_path: Path, states) -> None:
    paths = _training_run(tmp_path / "run", states)
    report = compute_trajectory([tmp_path / "run"])
    assert report.order_by == "step"
    assert [c.path for c in report.checkpoints] == paths
    assert [c.order_key for c in report.checkpoints] == ["global_step"] * EPOCHS
    assert [c.order_value for c in report.checkpoints] == [3, 6, 9, 12, 15]


def test_orders_by_epoch_without_a_step(tmp_path: Path, states) -> None:
    epochs_only = [{k: v for k, v in s.items() if k != "global_step"} for s in states]
    paths = _training_run(tmp_path / "run", epochs_only)
    report = compute_trajectory(list(reversed(paths)))
    assert report.order_by == "epoch"
    assert [c.path for c in report.checkpoints] == paths
    assert [c.order_value for c in report.checkpoints] == list(range(EPOCHS))


def test_bare_state_dicts_order_by_the_number_in_their_names(tmp_path: Path, states) -> None:
    epochs = [0, 2, 5, 10, 12]  # a plain sort would put epoch_10 and epoch_12 before epoch_2
    paths = save_all(tmp_path / "run", states, lambda i, s: f"model_epoch_{epochs[i]}.pth", "bare")
    set_mtimes(list(reversed(paths)))  # modification times disagree: names win
    report = compute_trajectory([tmp_path / "run"])
    assert report.order_by == "name"
    assert [c.path.name for c in report.checkpoints] == [p.name for p in paths]
    assert [c.order_value for c in report.checkpoints] == epochs
    assert report.values == {}


def test_lightning_names_and_content(tmp_path: Path, states) -> None:
    paths = save_all(
        tmp_path / "run",
        states,
        lambda i, s: f"epoch={s['epoch']}-step={s['global_step'] * 100}.ckpt",
        "lightning",
    )
    report = compute_trajectory([tmp_path / "run"])
    assert report.order_by == "step"
    assert [c.path for c in report.checkpoints] == paths
    assert report.tensors[0].key == "state_dict.model.embed.weight"
    assert report.values["lr"] == [0.05] * EPOCHS


def test_unnumbered_names_order_by_modification_time(tmp_path: Path, states) -> None:
    names = ["first.pt", "second.pt", "third.pt", "fourth.pt", "fifth.pt"]
    paths = save_all(tmp_path / "run", states, lambda i, s: names[i], "bare")
    order = [paths[3], paths[0], paths[4], paths[1], paths[2]]
    set_mtimes(order)
    report = compute_trajectory([tmp_path / "run"])
    assert report.order_by == "mtime"
    assert [c.path for c in report.checkpoints] == order
    assert report.checkpoints[0].order_value == pytest.approx(1_600_000_000.0)


# -- figures -----------------------------------------------------------------------------------


def test_every_figure_matches_float64_references(tmp_path: Path, states) -> None:
    paths = _training_run(tmp_path / "run", states)
    # Many chunks even for tiny tensors.
    report = compute_trajectory([tmp_path / "run"], chunk_elems=7)
    models = [load_model(p) for p in paths]
    assert [t.key for t in report.tensors] == ["model_state_dict." + k for k in models[0]]
    for t in report.tensors:
        name = t.key.removeprefix("model_state_dict.")
        want = reference([m[name] for m in models])
        for figure in FIGURES:
            assert close(getattr(t, figure), want[figure]), (t.key, figure)
        assert t.nan == want["nan"] and t.inf == want["inf"]
        assert t.shape == tuple(models[0][name].shape)


def test_nan_checkpoint(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    report = compute_trajectory([tmp_path / "run"])
    bias = next(t for t in report.tensors if t.key == f"model_state_dict.{NAN_KEY}")
    assert bias.nan == [0, 0, 0, 1, 0]
    assert bias.first_nonfinite == NAN_AT
    assert "nonfinite" in bias.flags
    assert math.isnan(bias.norm[NAN_AT]) and not math.isnan(bias.norm[NAN_AT + 1])
    assert math.isnan(bias.rel_update[NAN_AT]) and math.isnan(bias.rel_update[NAN_AT + 1])
    assert math.isnan(bias.rel_change_from_first[NAN_AT])
    assert bias.min[NAN_AT] is not None  # over the finite values
    others = [t for t in report.tensors if t is not bias]
    assert all(t.first_nonfinite is None for t in others)


def test_frozen_layer(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    report = compute_trajectory([tmp_path / "run"])
    frozen = {t.key for t in report.tensors if t.frozen}
    assert frozen == {"model_state_dict.embed.weight", "model_state_dict.embed.bias"}
    embed = report.tensors[0]
    assert embed.flags == ("frozen",)
    assert embed.rel_update == [None, 0.0, 0.0, 0.0, 0.0]
    assert embed.update_cosine == [None, None, None, None, None]  # no update, no direction


def test_values_and_optimizer_state(tmp_path: Path, states) -> None:
    paths = _training_run(tmp_path / "run", states)
    report = compute_trajectory([tmp_path / "run"])
    assert report.values["loss"] == [s["loss"] for s in states]
    assert report.values["epoch"] == list(range(EPOCHS))
    assert report.values["lr"] == [0.05] * EPOCHS
    series = {o.key: o.norm for o in report.optimizer}
    assert "embed.weight.exp_avg_sq" not in series  # frozen: Adam keeps no state for it
    loaded = [torch.load(p, weights_only=True)["optimizer_state_dict"]["state"] for p in paths]
    # Adam's ids follow model.parameters(): embed.weight 0, embed.bias 1, hidden.weight 2, ...
    want = [float(state[2]["exp_avg_sq"].double().norm()) for state in loaded]
    assert close(series["hidden.weight.exp_avg_sq"], want)


def test_exploding_and_vanishing_flags(tmp_path: Path, states) -> None:
    changed = [dict(s, model_state_dict=dict(s["model_state_dict"])) for s in states]
    for i, s in enumerate(changed):
        sd = s["model_state_dict"]
        sd["head.weight"] = sd["head.weight"] * (4.0**i)  # x256 by the end
        sd["hidden.weight"] = sd["hidden.weight"] / (4.0**i)
    _training_run(tmp_path / "run", changed)
    flags = {t.key: t.flags for t in compute_trajectory([tmp_path / "run"]).tensors}
    assert "exploding" in flags["model_state_dict.head.weight"]
    assert "vanishing" in flags["model_state_dict.hidden.weight"]
    assert flags["model_state_dict.head.bias"] == ()


def test_bare_state_dict_against_training_checkpoints(tmp_path: Path, states) -> None:
    """Keys are the first checkpoint's; the others' ``model_state_dict.`` prefix is matched
    away as ``diff`` does."""
    folder = tmp_path / "run"
    first = save_all(folder, states[:1], lambda i, s: "ckpt_0.pt", "bare")
    rest = save_all(folder, states[1:], lambda i, s: f"ckpt_{i + 1}.pt")
    report = compute_trajectory([folder])
    assert report.order_by == "name"
    models = [load_model(p) for p in first + rest]
    head = next(t for t in report.tensors if t.key == "head.weight")
    assert head.keys == ["head.weight"] + ["model_state_dict.head.weight"] * (EPOCHS - 1)
    want = reference([m["head.weight"] for m in models])
    assert close(head.rel_change_from_first, want["rel_change_from_first"])
    assert report.values["loss"][0] is None and report.values["loss"][1] == states[1]["loss"]


def test_hf_trainer_folders(tmp_path: Path, states) -> None:
    from safetensors.torch import save_file

    out = tmp_path / "output"
    for s in states:
        folder = out / f"checkpoint-{s['global_step'] * 100}"
        folder.mkdir(parents=True)
        save_file(s["model_state_dict"], folder / "model.safetensors")
        trainer = {
            "global_step": s["global_step"] * 100,
            "epoch": s["epoch"] + 0.5,
            "log_history": [{"loss": s["loss"], "learning_rate": 0.05, "step": 1}],
        }
        (folder / "trainer_state.json").write_text(json.dumps(trainer))
    (out / "checkpoint-300").rename(out / "checkpoint-0300")  # only the numbers order them
    report = compute_trajectory([out])
    assert report.order_by == "step"
    assert [c.order_key for c in report.checkpoints] == ["trainer_state.json:global_step"] * 5
    assert [c.order_value for c in report.checkpoints] == [300, 600, 900, 1200, 1500]
    assert report.values["loss"] == [s["loss"] for s in states]
    frozen = {t.key for t in report.tensors if t.frozen}
    assert frozen == {"embed.weight", "embed.bias"}  # safetensors keeps keys sorted


# -- chunked exactness -------------------------------------------------------------------------


def test_tiny_magnitudes_many_chunks_and_layouts(tmp_path: Path) -> None:
    """Adam-like magnitudes (~1e-22, whose float32 squares underflow), float64 values below
    float32's range, bfloat16, and one checkpoint that saved a transposed layout."""
    g = torch.Generator().manual_seed(1)
    base = {
        "tiny": torch.rand(300, 70, generator=g) * 1e-22,
        "wide": torch.randn(50, 40, generator=g, dtype=torch.float64) * 1e-60,
        "half": torch.randn(64, 33, generator=g).bfloat16(),
        "layout": torch.randn(40, 30, generator=g),
    }
    runs = []
    for i in range(4):
        step = {
            k: v + (torch.rand(v.shape, generator=g, dtype=v.dtype) * v.abs() * 0.01 * (i + 1))
            for k, v in base.items()
        }
        if i == 2:
            step["layout"] = step["layout"].t().contiguous().t()  # same values, column-major
        runs.append(step)
        torch.save(step, tmp_path / f"step_{i}.pt")
    report = compute_trajectory([tmp_path / f"step_{i}.pt" for i in range(4)], chunk_elems=1000)
    for t in report.tensors:
        want = reference([r[t.key] for r in runs])
        for figure in ("norm", "rel_change_from_first", "rel_update", "update_cosine"):
            assert close(getattr(t, figure), want[figure], rel=1e-5), (t.key, figure)


# -- the cache ---------------------------------------------------------------------------------


def test_reopening_reads_the_cache_only(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    first = compute_trajectory([tmp_path / "run"])
    assert first.opened == list(range(EPOCHS))
    assert first.computed["checkpoints"] == list(range(EPOCHS))
    again = compute_trajectory([tmp_path / "run"])
    assert again.opened == []  # not one file opened, so no tensor loaded
    assert again.computed == {"checkpoints": [], "pairs": [], "triples": []}
    assert _figures(again) == _figures(first)
    assert again.values == first.values
    assert [o.norm for o in again.optimizer] == [o.norm for o in first.optimizer]


def test_a_trusted_run_has_its_own_cache_units(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    compute_trajectory([tmp_path / "run"])
    trusted = compute_trajectory([tmp_path / "run"], trust=True)
    assert trusted.computed["checkpoints"] == list(range(EPOCHS))  # not the safe view's units
    again = compute_trajectory([tmp_path / "run"], trust=True)
    assert again.opened == []


def test_the_cache_drops_the_least_recently_used_units(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    compute_trajectory([tmp_path / "run"])
    folder = _cache_dir(tmp_path)
    units = sorted(folder.glob("*.json"))
    sizes = {p: p.stat().st_size for p in units}
    for age, path in enumerate(units):  # the first oldest
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    keep = sum(sizes.values()) - sizes[units[0]] - sizes[units[1]]
    RunCache(folder, limit=keep).prune()
    assert sorted(folder.glob("*.json")) == units[2:]
    compute_trajectory([tmp_path / "run"], cache=RunCache(folder))  # reads what is left
    assert len(list(folder.glob("*.json"))) == len(units)


def _figures(report) -> list:
    out = []
    for t in report.tensors:
        row = [getattr(t, f) for f in (*FIGURES, "nan", "inf", "frozen", "flags")]
        out.append(json.dumps(row))  # NaN == NaN once written out
    return out


def test_a_changed_checkpoint_is_measured_again(tmp_path: Path, states) -> None:
    paths = _training_run(tmp_path / "run", states)
    compute_trajectory([tmp_path / "run"])
    changed = dict(states[2], model_state_dict=dict(states[2]["model_state_dict"]))
    changed["model_state_dict"]["head.weight"] = changed["model_state_dict"]["head.weight"] + 1
    torch.save(changed, paths[2])
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    report = compute_trajectory([tmp_path / "run"])
    assert report.computed["checkpoints"] == [2]
    assert report.computed["pairs"] == [(0, 2), (1, 2), (2, 3)]
    assert report.computed["triples"] == [(0, 1, 2), (1, 2, 3), (2, 3, 4)]
    models = [load_model(p) for p in paths]
    head = next(t for t in report.tensors if t.key == "model_state_dict.head.weight")
    want = reference([m["head.weight"] for m in models])
    for figure in FIGURES:
        assert close(getattr(head, figure), want[figure]), figure


def test_an_added_checkpoint_costs_only_its_own_work(tmp_path: Path, states) -> None:
    more = train_states(epochs=6)
    paths = _training_run(tmp_path / "run", more[:5])
    compute_trajectory([tmp_path / "run"])
    paths += save_all(tmp_path / "run", more[5:], lambda i, s: "ckpt-new.pt")
    report = compute_trajectory([tmp_path / "run"])
    assert [c.path for c in report.checkpoints] == paths
    assert report.computed == {
        "checkpoints": [5],
        "pairs": [(0, 5), (4, 5)],
        "triples": [(3, 4, 5)],
    }
    assert report.opened == [0, 3, 4, 5]  # the first, and the two the last update needs
    models = [load_model(p) for p in paths]
    for t in report.tensors:
        want = reference([m[t.key.removeprefix("model_state_dict.")] for m in models])
        for figure in FIGURES:
            assert close(getattr(t, figure), want[figure]), (t.key, figure)


def test_a_corrupt_cache_file_is_measured_again(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    first = compute_trajectory([tmp_path / "run"])
    pairs = sorted(_cache_dir(tmp_path).glob("pair-*.json"))
    pairs[0].write_text('{"version": 1, "kind": "pair", "identity": [], "data": {"sums": ')
    checkpoints = sorted(_cache_dir(tmp_path).glob("checkpoint-*.json"))
    checkpoints[0].write_bytes(b"\x00garbage")
    again = compute_trajectory([tmp_path / "run"])
    assert len(again.computed["pairs"]) == 1 and len(again.computed["checkpoints"]) == 1
    assert _figures(again) == _figures(first)
    third = compute_trajectory([tmp_path / "run"])  # written back whole
    assert third.computed == {"checkpoints": [], "pairs": [], "triples": []}


def test_no_cache_writes_nothing(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    report = compute_trajectory([tmp_path / "run"], cache=False)
    assert report.computed["checkpoints"] == list(range(EPOCHS))
    assert not (tmp_path / "cache-home").exists()


def test_cache_writes_leave_no_temporary_files(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    compute_trajectory([tmp_path / "run"])
    names = [p.name for p in _cache_dir(tmp_path).iterdir()]
    assert names and all(n.endswith(".json") and not n.startswith(".") for n in names)


# -- events, cancel, errors --------------------------------------------------------------------


def test_events_and_cancel(tmp_path: Path, states) -> None:
    _training_run(tmp_path / "run", states)
    steps = iter_trajectory([tmp_path / "run"], cache=RunCache(tmp_path / "c"))
    opened = next(steps)
    assert isinstance(opened, RunOpened) and len(opened.checkpoints) == EPOCHS
    first = next(e for e in steps if isinstance(e, TrajectoryResult))
    assert first.tensor.key == opened.keys[0]
    steps.close()  # what was measured so far is kept
    report = compute_trajectory([tmp_path / "run"], cache=RunCache(tmp_path / "c"))
    assert report.computed["checkpoints"] == list(range(EPOCHS))  # the other tensors
    assert report.opened == list(range(EPOCHS))
    with pytest.raises(Cancelled):
        compute_trajectory([tmp_path / "run"], cache=False, cancel=lambda: True)


def test_fewer_than_two_checkpoints(tmp_path: Path, states) -> None:
    paths = _training_run(tmp_path / "run", states[:1])
    with pytest.raises(RunError, match="at least 2 checkpoints"):
        compute_trajectory([tmp_path / "run"])
    with pytest.raises(RunError, match="at least 2"):
        compute_trajectory(paths)


def test_copies_read_into_memory_go_step_by_step(tmp_path: Path, states, monkeypatch) -> None:
    """Legacy torch files are read into memory, not mapped: past ``WHOLE_PASS_BYTES`` their
    copies are measured a step at a time (at most four alive), with the same figures."""
    import ckpt_gui.core.run.measure as module

    folder = tmp_path / "legacy"
    folder.mkdir()
    paths = []
    for i, s in enumerate(states):
        paths.append(folder / f"ckpt_{i}.pt")
        torch.save(s, paths[-1], _use_new_zipfile_serialization=False)
    monkeypatch.setattr(module, "WHOLE_PASS_BYTES", 0)
    report = compute_trajectory([folder], cache=False)
    assert report.order_by == "step"
    models = [load_model(p) for p in paths]
    for t in report.tensors:
        want = reference([m[t.key.removeprefix("model_state_dict.")] for m in models])
        for figure in FIGURES:
            assert close(getattr(t, figure), want[figure]), (t.key, figure)
    assert report.computed["triples"] == [(0, 1, 2), (1, 2, 3), (2, 3, 4)]
