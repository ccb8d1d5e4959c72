"""A merge computes each weight a block of rows at a time (``row_blocks``), so that the product,
its scaling and the sum stay in cache. That is only right if a block's product is bit for bit the
same rows of the whole product B·A that PEFT forms: checked here on this machine's BLAS, for
shapes that split into many blocks (odd row counts, a remainder, ranks 1 to 64), and end to end
against ``merge_and_unload`` for a model whose weights split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ckpt_gui.cli import main
from ckpt_gui.core.adapters.merge import row_blocks
from tests.core.adapter_models import peft

SHAPES = [(200, 4096), (513, 1000), (257, 3072), (1000, 768), (33, 8192), (4096, 256)]


def test_row_blocks_cover_every_row_in_blocks_of_whole_16_rows() -> None:
    assert row_blocks(0, 10) == []
    for rows, columns in [*SHAPES, (15, 100_000), (16, 1), (40, 4096)]:
        blocks = row_blocks(rows, columns)
        assert [s for s, _ in blocks[1:]] == [e for _, e in blocks[:-1]]  # contiguous
        assert (blocks[0][0], blocks[-1][1]) == (0, rows)
        lengths = [e - s for s, e in blocks]
        assert all(n % 16 == 0 for n in lengths[:-1])
        assert lengths[-1] >= max(lengths)  # the remainder is never a block of a few rows
    assert len(row_blocks(200, 4096)) >= 3 and len(row_blocks(513, 1000)) >= 2  # they split


@pytest.mark.parametrize("rank", [1, 4, 16, 64])
def test_a_block_of_rows_is_the_same_rows_of_the_whole_product(rank: int) -> None:
    g = torch.Generator().manual_seed(rank)
    for rows, columns in SHAPES:
        a = torch.randn(rank, columns, generator=g) / columns**0.5
        b = torch.randn(rows, rank, generator=g) * 1e-2
        whole = b @ a  # as PEFT forms it, on torch's own threads
        for start, stop in row_blocks(rows, columns):
            part = torch.mm(b[start:stop], a)
            assert torch.equal(part, whole[start:stop]), (rows, columns, rank, start)


class Wide(nn.Module):
    """Weights whose merges split into many blocks, one with a remainder."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Linear(4096, 200)
        self.odd = nn.Linear(1000, 513)


def test_a_merge_in_blocks_is_peft_bit_for_bit(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    base = Wide()
    base_path = tmp_path / "base.safetensors"
    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, base_path)
    # Not PEFT's default init (B = 0): both factors random, so every product counts.
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["wide", "odd"])
    model = peft.get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    model.save_pretrained(tmp_path / "adapter")
    expected = {k: v.detach() for k, v in model.merge_and_unload().state_dict().items()}
    dst = tmp_path / "merged.safetensors"
    code = main(["export", str(tmp_path / "adapter"), str(dst), "--merge-into", str(base_path)])
    assert code == 0, capsys.readouterr().err
    got = load_file(dst)
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(got[key].view(torch.int32), value.view(torch.int32)), key
    assert not torch.equal(got["wide.weight"], load_file(base_path)["wide.weight"])
