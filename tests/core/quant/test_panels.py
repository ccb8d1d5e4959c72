"""What the window's panels read of a quantized weight, Qt-free: its histogram (exact, and the
quick sample) and its values, all dequantized."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ckpt_gui.core.histogram import histogram
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.value_sample import sample_tensor
from tests.core.quant import writers as W


def _logical(ckpt):
    return next(n for n in ckpt.tensors() if n.tensor.quant is not None)


def test_exact_histogram_counts_every_dequantized_value(tmp_path: Path) -> None:
    path, refs = W.awq(tmp_path, out=128, cols=512)
    ref = next(iter(refs.values()))
    with open_checkpoint(path) as ckpt:
        lt = _logical(ckpt).tensor.quant
        h = histogram(lt, bins=32, exact=True, chunk_elems=4096)
        quick = histogram(lt, bins=32, sample=5000)
    counts, _ = np.histogram(ref, bins=32, range=(ref.min(), ref.max()))
    assert not h.sampled and h.numel == ref.size
    assert np.array_equal(h.counts, counts)
    assert quick.sampled and quick.numel == ref.size and quick.elements <= 5000


def test_values_panel_shows_dequantized_rows(tmp_path: Path) -> None:
    path, refs = W.gptq(tmp_path, out=512, cols=512)
    ref = next(iter(refs.values()))
    with open_checkpoint(path) as ckpt:
        shown = sample_tensor(_logical(ckpt))
    assert shown.note.startswith("dequantized (gptq, 4-bit, group 64); ")
    assert shown.sampled and shown.full_shape == ref.shape
    assert np.array_equal(shown.values, ref[np.ix_(shown.rows, shown.cols)])


def test_compare_histograms_sample_the_same_rows_of_both_sides(tmp_path: Path, monkeypatch) -> None:
    import torch
    from safetensors.torch import save_file

    from ckpt_gui.core.diff import histograms
    from ckpt_gui.core.diff.compare import diff_checkpoints

    path, refs = W.gptq(tmp_path / "q", out=256, cols=512)
    key, ref = next(iter(refs.items()))
    original = np.ascontiguousarray(ref) + np.float32(0.001)
    save_file({key: torch.from_numpy(original)}, str(tmp_path / "original.safetensors"))
    monkeypatch.setattr(histograms, "DEFAULT_SAMPLE", 10_000)  # below the weight's 131,072
    with (
        open_checkpoint(path) as a,
        open_checkpoint(tmp_path / "original.safetensors") as b,
    ):
        [entry] = [e for e in diff_checkpoints(a, b).entries if e.key == key]
        h = histograms.entry_histograms(entry)
    assert h.a.numel == h.b.numel == h.diff.numel == 19 * 512  # 19 evenly spaced rows
    rows = np.unique(np.linspace(0, 255, 19).round().astype(int))
    diff = ref[rows] - original[rows]
    assert h.diff.counts.sum() == diff.size
    assert h.diff.edges[0] <= diff.min() and h.diff.edges[-1] >= diff.max()
