"""Every scheme read back from a real file equals the reference dequantization bit for bit
(float32; each reference is a product of exact operands, rounded once), whole and chunk by
chunk, and parts that do not fit a scheme stay raw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.core.quant.logical import iter_dequantized
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.stats import StatsResult, iter_stats
from tests.core.quant import writers as W

CASES = {
    "gptq": (W.gptq, "gptq", 4, 64),
    "gptq-act-order": (lambda d: W.gptq(d, act_order=True), "gptq", 4, 64),
    "awq": (W.awq, "awq", 4, 128),
    "compressed": (W.compressed, "compressed-tensors", 4, 64),
    "compressed-asym": (lambda d: W.compressed(d, asym=True), "compressed-tensors", 4, 64),
    "fp8": (lambda d: W.fp8(d, block=False), "fp8", 8, None),
    "fp8-block": (lambda d: W.fp8(d, block=True), "fp8-block", 8, 128),
    "mxfp4": (W.mxfp4, "mxfp4", 4, 32),
    "mxfp4-2d": (lambda d: W.mxfp4(d, experts=0), "mxfp4", 4, 32),
    "nf4": (W.bnb4, "bnb-nf4", 4, 64),
    "fp4": (lambda d: W.bnb4(d, "fp4"), "bnb-fp4", 4, 64),
    "nf4-nested": (lambda d: W.bnb4(d, nested=True), "bnb-nf4", 4, 64),
    "int8": (W.bnb8, "bnb-int8", 8, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dequantized_values_equal_the_reference(tmp_path: Path, case: str) -> None:
    write, scheme, bits, group = CASES[case]
    path, refs = write(tmp_path)
    with open_checkpoint(path) as ckpt:
        assert [lt.key for lt in ckpt.logical] == list(refs)
        lt = ckpt.logical[0]
        ref = refs[lt.key].astype(np.float32)
        assert (lt.scheme, lt.bits, lt.group_size) == (scheme, bits, group)
        assert lt.shape == ref.shape
        assert np.array_equal(lt.dequantize().numpy(), ref)
        # Row blocks of any size (here 7 rows and less) put together give the same values.
        chunks = torch.cat(list(lt.chunks(7 * lt.cols))).numpy()
        assert np.array_equal(chunks, ref.reshape(-1))
        assert lt.label().startswith(f"dequantized ({scheme}, {bits}-bit")


def test_statistics_of_a_logical_tensor_are_of_the_dequantized_values(tmp_path: Path) -> None:
    path, refs = W.gptq(tmp_path, out=64, cols=512)
    with open_checkpoint(path) as ckpt:
        node = next(n for n in ckpt.tensors() if n.tensor.quant is not None)
        assert [c.role for c in node.children] == ["quantization"] * 4
        assert [c.name for c in node.children] == ["qweight", "qzeros", "scales", "g_idx"]
        # Small chunks: the weight goes through the chunk workers in many row blocks.
        events = list(iter_stats([node], chunk_elems=1000))
    stats = next(e.stats for e in events if isinstance(e, StatsResult))
    ref = next(iter(refs.values())).astype(np.float64)
    assert stats.dequantized and stats.numel == ref.size and stats.dtype == "bfloat16"
    assert stats.min == ref.min() and stats.max == ref.max()
    assert stats.mean == pytest.approx(ref.mean(), rel=1e-9, abs=1e-12)
    assert stats.std == pytest.approx(ref.std(ddof=1), rel=1e-6)
    assert stats.zeros == int((ref == 0).sum())


def test_the_tree_shows_logical_tensors_and_the_file_stays_as_it_is(tmp_path: Path) -> None:
    path, _ = W.awq(tmp_path)
    with open_checkpoint(path) as ckpt:
        raw = [n.key for n in ckpt.root.tensors()]
        shown = [(n.key, n.role) for n in ckpt.tensors()]
    key = "model.layers.0.self_attn.q_proj"
    assert raw == [f"{key}.qweight", f"{key}.qzeros", f"{key}.scales"]
    assert shown == [(f"{key}.weight", "parameter")] + [(k, "quantization") for k in raw]


def test_parts_that_do_not_fit_a_scheme_stay_raw(tmp_path: Path) -> None:
    tensors = {
        "a.qweight": torch.zeros(4, 7, dtype=torch.int32),  # scales say 8 outputs
        "a.qzeros": torch.zeros(1, 1, dtype=torch.int32),
        "a.scales": torch.zeros(1, 8, dtype=torch.float16),
        "b.weight": torch.zeros(4, 4, dtype=torch.int8),  # SCB of the wrong length
        "b.SCB": torch.ones(3),
        "c_blocks": torch.zeros(2, 3, 15, dtype=torch.uint8),  # 15 bytes a block, not 16
        "c_scales": torch.zeros(2, 3, dtype=torch.uint8),
    }
    path = tmp_path / "odd.safetensors"
    save_file(tensors, str(path))
    with open_checkpoint(path) as ckpt:
        assert ckpt.logical == []
        assert sorted(n.key for n in ckpt.tensors()) == sorted(tensors)


def test_iter_dequantized_gives_small_weights_whole_and_large_ones_in_row_blocks(
    tmp_path: Path,
) -> None:
    path, refs = W.fp8(tmp_path, block=True)
    ref = next(iter(refs.values()))
    with open_checkpoint(path) as ckpt:
        [(key, whole)] = list(iter_dequantized(ckpt.logical))
        assert key in refs and np.array_equal(next(whole).numpy(), ref)
        [(_, chunks)] = list(iter_dequantized(ckpt.logical, chunk_elems=1000))
        pieces = list(chunks)
    assert len(pieces) > 1 and all(p.numel() <= 1040 for p in pieces)
    assert np.array_equal(torch.cat(pieces).numpy(), ref.reshape(-1))


def test_parts_that_lie_give_one_line_and_exit_2(tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file

    from ckpt_gui.cli import main

    path, _ = W.gptq(tmp_path, act_order=True)
    tensors = load_file(str(path))
    tensors["model.layers.0.mlp.down_proj.g_idx"][3] = 999  # a group that does not exist
    save_file(tensors, str(path))
    assert main(["stats", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model.layers.0.mlp.down_proj.weight: its gptq parts cannot be read together" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_statistics_read_values_in_any_order_and_the_same_values(tmp_path: Path) -> None:
    """GPTQ's statistics path skips the transpose and the nibble interleave: the values it
    gives for each row block are the block's values, in another order."""
    path, refs = W.gptq(tmp_path, out=64, cols=512)
    ref = next(iter(refs.values()))
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        assert lt.any_order is not None
        for start, stop in lt.row_blocks(8 * 512):
            got = np.sort(lt._flat(start, stop, any_order=True).numpy())
            assert np.array_equal(got, np.sort(ref[start:stop].ravel()))


def test_quantized_weights_nested_in_a_torch_file_fold_in_place(tmp_path: Path) -> None:
    """A torch.save'd training checkpoint holding a GPTQ state_dict: the view's containers
    are copies with the logical tensor in place of its parts; the file's tree is unchanged."""
    from safetensors.torch import load_file

    path, refs = W.gptq(tmp_path / "q")
    state = load_file(str(path))
    torch.save({"model": state, "step": 3}, tmp_path / "train.pt")
    key = "model.layers.0.mlp.down_proj"
    with open_checkpoint(tmp_path / "train.pt") as ckpt:
        [lt] = ckpt.logical
        assert lt.key == f"model.{key}.weight"
        assert np.array_equal(lt.dequantize().numpy(), refs[f"{key}.weight"])
        model = ckpt.view_root().child("model")
        names = [c.name for c in model.children]
        assert f"{key}.weight" in names and f"{key}.qweight" not in names
        assert ckpt.find(f"model.{key}.qweight").parent is ckpt.find("model")  # untouched
        assert ckpt.view_root().child("step").value == 3


@pytest.mark.parametrize("scales", ["float32", "infinite"])
def test_any_order_equals_the_ordered_read_whatever_the_scales(tmp_path: Path, scales) -> None:
    """16-bit finite scales take a one-pass q·s - z·s (exact there); float32 scales with
    more bits, and infinite ones (q·inf - z·inf would be NaN), take (q - z)·s."""
    from safetensors.torch import load_file, save_file

    path, _ = W.gptq(tmp_path, out=64, cols=512)
    state = load_file(str(path))
    key = "model.layers.0.mlp.down_proj.scales"
    s = state[key].float()
    if scales == "float32":
        s = s * (1 + 2.0**-20)  # bits a float16 has not
    else:
        s[0, :5] = torch.inf
    state[key] = s
    save_file(state, str(path))
    with open_checkpoint(path) as ckpt:
        [lt] = ckpt.logical
        for start, stop in lt.row_blocks(8 * 512):
            got = np.sort(lt._flat(start, stop, any_order=True).numpy())
            want = np.sort(lt.block(start, stop).numpy().ravel())
            assert np.array_equal(got, want, equal_nan=True)
            assert got.tobytes() == want.tobytes() or scales == "infinite"
