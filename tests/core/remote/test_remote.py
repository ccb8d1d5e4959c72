"""Checkpoints read over HTTP from a local server with Range support (no internet): only the
bytes a question needs cross the wire, the results equal the local file's, and every network
failure is one line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.cli import main
from ckpt_gui.core.errors import CheckpointError
from ckpt_gui.core.reader import open_checkpoint
from ckpt_gui.core.remote.cache import Cache
from ckpt_gui.core.remote.location import is_remote, shown
from ckpt_gui.core.remote.store import RemoteFile
from tests.core.remote.server import serving

pytest.importorskip("aiohttp")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with an empty cache of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (root, url, behaviour)
    root = tmp_path_factory.mktemp("served")
    g = torch.Generator().manual_seed(0)
    big = {f"layers.{i}.weight": torch.randn(1024, 1024, generator=g) for i in range(25)}
    big["tiny"] = torch.arange(12.0).reshape(3, 4)
    save_file(big, root / "big.safetensors")  # 100 MB
    torch.save({"model": big, "epoch": 3, "step": torch.tensor(10)}, root / "train.pt")
    (root / "shards").mkdir()
    weight_map = {}
    for shard in range(100):
        name = f"model-{shard + 1:05d}-of-00100.safetensors"
        tensors = {f"h.{shard}.{k}": torch.full((8, 8), float(shard + k)) for k in range(3)}
        save_file(tensors, root / "shards" / name)
        weight_map.update(dict.fromkeys(tensors, name))
    index = {"metadata": {}, "weight_map": weight_map}
    (root / "shards" / "model.safetensors.index.json").write_text(json.dumps(index))
    with serving(root) as (url, behaviour):
        yield root, url, behaviour


@pytest.fixture
def server(served):  # noqa: ANN001, ANN201
    root, url, behaviour = served
    behaviour.reset()
    behaviour.drop_after = behaviour.status = None
    yield root, url, behaviour
    behaviour.drop_after = behaviour.status = None
    behaviour.etag_salt = ""


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_urls_are_told_from_paths_and_shown_without_credentials() -> None:
    assert is_remote("https://huggingface.co/x") and is_remote("s3://bucket/key")
    assert is_remote("hf://org/repo@main/model.safetensors") and is_remote("gs://b/k")
    assert not is_remote("/tmp/model.pt") and not is_remote("model.safetensors")
    assert not is_remote("C:/models/x.pt") and not is_remote("file.pt://odd")
    url = "https://user:secret@example.com:8443/m.safetensors?X-Amz-Signature=abc#frag"
    assert shown(url) == "https://example.com:8443/m.safetensors"


def test_inspect_reads_under_one_percent_and_matches_the_local_file(
    server, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url, behaviour = server
    remote = _json(["inspect", f"{url}/big.safetensors", "--json"], capsys)
    size = (root / "big.safetensors").stat().st_size
    assert behaviour.sent < size / 100
    local = _json(["inspect", str(root / "big.safetensors"), "--json"], capsys)
    assert remote["path"] == f"{url}/big.safetensors"
    for doc in (remote, local):
        doc.pop("path"), doc.pop("notes", None)
    assert remote == local


def test_stats_of_one_tensor_fetches_its_bytes_and_headers_only(
    server, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url, behaviour = server
    key = "layers.7.weight"
    remote = _json(["stats", f"{url}/big.safetensors", "--filter", key, "--json"], capsys)
    tensor_bytes = 1024 * 1024 * 4
    assert tensor_bytes <= behaviour.sent <= tensor_bytes + (64 << 10)
    local = _json(["stats", str(root / "big.safetensors"), "--filter", key, "--json"], capsys)
    assert remote["tensors"] == local["tensors"]  # the same numbers, to the last bit
    behaviour.reset()  # a second look is served from the cache
    _json(["stats", f"{url}/big.safetensors", "--filter", key, "--json"], capsys)
    assert behaviour.sent == 0


def test_a_torch_zip_reads_its_pickle_not_its_tensors(
    server, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url, behaviour = server
    with open_checkpoint(f"{url}/train.pt") as ckpt:
        assert ckpt.view == "weights_only" and ckpt.kind == "training checkpoint"
        assert behaviour.sent < (root / "train.pt").stat().st_size / 100
        local = torch.load(root / "train.pt", weights_only=True)
        keys = sorted(n.key for n in ckpt.root.tensors())
        assert keys == sorted([*(f"model.{k}" for k in local["model"]), "step"])
        assert ckpt.find("epoch").value == 3
        before = behaviour.sent
        tiny = ckpt.find("model.tiny")
        assert torch.equal(tiny.load(), local["model"]["tiny"])
        assert behaviour.sent - before < 4096
        assert torch.equal(
            ckpt.find("model.layers.3.weight").load(), local["model"]["layers.3.weight"]
        )


def test_a_remote_pickle_gets_the_local_safety_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch's safe loader first; what it refuses, the structural view (as for a local file),
    with tensors fetched as they are read; nothing from the file ever runs."""
    import argparse

    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("ran code from the file",))

    big = torch.arange(300_000.0)
    torch.save({"w": big, "evil": Payload(), "args": argparse.Namespace(lr=0.5)}, tmp_path / "x.pt")
    with serving(tmp_path) as (url, behaviour):
        with open_checkpoint(f"{url}/x.pt") as ckpt:
            assert ckpt.view == "structural" and "print" in (ckpt.view_note or "")
            assert behaviour.sent < big.numel() * 4 / 2  # the pickle, not the tensor's bytes
            assert torch.equal(ckpt.find("w").load(), big)
            local = open_checkpoint(tmp_path / "x.pt")
            assert [n.key for n in ckpt.root.walk()] == [n.key for n in local.root.walk()]
            local.close()
        assert main(["inspect", f"{url}/x.pt"]) == 0
        assert main(["inspect", "--trust", f"{url}/x.pt"]) == 2  # a real load: never remotely
    out = capsys.readouterr()
    lines = (out.out + out.err).splitlines()
    assert "ran code from the file" not in lines  # shown as a stand-in, print never called
    assert "print('ran code from the file')" in out.out
    assert "needs the whole file" in out.err


def test_a_folder_of_100_shards_opens_from_its_index_and_headers(
    server, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url, behaviour = server
    remote = _json(["inspect", f"{url}/shards/", "--json"], capsys)
    local = _json(["inspect", str(root / "shards"), "--json"], capsys)
    assert [t["key"] for t in remote["tensors"]] == [t["key"] for t in local["tensors"]]
    assert remote["format"] == "safetensors-sharded"
    stats = _json(["stats", f"{url}/shards/", "--filter", "h.41.2", "--json"], capsys)
    assert stats["tensors"][0]["max"] == 43.0


def test_diff_takes_a_local_and_a_remote_checkpoint(
    server, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url, _ = server
    assert main(["diff", str(root / "train.pt"), f"{url}/train.pt"]) == 0
    assert "no differences" in capsys.readouterr().out


@pytest.mark.parametrize("status", [404, 403, 500])
def test_refusals_are_one_line(server, capsys: pytest.CaptureFixture[str], status: int) -> None:
    _, url, behaviour = server
    behaviour.status = status
    err = _error(["inspect", f"{url}/big.safetensors"], capsys)
    assert err.startswith(f"ckpt-gui: error: {url}/big.safetensors: ")


def test_a_connection_dropped_mid_tensor_is_one_line_and_nothing_half_read_is_kept(
    server, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, behaviour = server
    behaviour.drop_after = 100_000
    err = _error(["stats", f"{url}/big.safetensors", "--filter", "layers.1.weight"], capsys)
    assert "reading failed" in err or "the server sent" in err
    behaviour.drop_after = None
    behaviour.reset()
    _json(["stats", f"{url}/big.safetensors", "--filter", "layers.1.weight", "--json"], capsys)
    assert behaviour.sent >= 1024 * 1024 * 4  # fetched whole again: no partial range was kept


def test_a_file_that_changes_on_the_server_is_not_mixed(server) -> None:
    _, url, behaviour = server
    with open_checkpoint(f"{url}/big.safetensors") as ckpt:
        behaviour.etag_salt = "a new upload"
        with pytest.raises(CheckpointError, match="changed on the server"):
            ckpt.find("layers.2.weight").load()


def test_credentials_never_reach_a_message(server, capsys: pytest.CaptureFixture[str]) -> None:
    _, url, behaviour = server
    behaviour.status = 403
    secret = url.replace("http://", "http://alice:hunter2@") + "/big.safetensors?token=s3cr3t"
    err = _error(["inspect", secret], capsys)
    assert "hunter2" not in err and "s3cr3t" not in err and "alice" not in err


def test_the_cache_stays_within_its_limit(server, tmp_path: Path) -> None:
    _, url, _ = server
    cache = Cache(tmp_path / "small", limit=6 << 20)
    first = RemoteFile(f"{url}/big.safetensors", cache=cache)
    first.read(0, 5 << 20)
    second = RemoteFile(f"{url}/train.pt", cache=cache)
    second.read(50 << 20, 55 << 20)  # the least recently used file goes
    assert cache.usage() == 5 << 20
    assert first.cached.missing(0, 5 << 20) == [(0, 5 << 20)]  # fetched again if read again
    cache.clear()
    assert cache.usage() == 0


def test_formats_that_need_the_whole_file_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(tmp_path / "legacy.pt", "wb") as f:
        torch.save({"w": torch.ones(2)}, f, _use_new_zipfile_serialization=False)
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}))
    with serving(tmp_path) as (url, _):
        err = _error(["inspect", f"{url}/legacy.pt"], capsys)
        assert "download it and open the copy" in err


def test_statistics_report_the_download_and_can_stop_it(
    server, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckpt_gui.core.errors import Cancelled
    from ckpt_gui.core.remote import store
    from ckpt_gui.core.stats import Progress, StatsResult, iter_stats

    _, url, behaviour = server
    monkeypatch.setattr(store, "FETCH_STEP", 1 << 20)
    with open_checkpoint(f"{url}/big.safetensors") as ckpt:
        node = ckpt.find("layers.5.weight")
        events = list(iter_stats([node]))
        steps = [e.done_bytes for e in events if isinstance(e, Progress)]
        assert steps[:5] == [0, 1 << 20, 2 << 20, 3 << 20, 4 << 20]  # one per megabyte fetched
        assert isinstance(events[-2], StatsResult)
        other = ckpt.find("layers.6.weight")
        polls = []

        def cancel() -> bool:
            polls.append(1)
            return len(polls) > 2

        behaviour.reset()
        with pytest.raises(Cancelled):
            list(iter_stats([other], cancel=cancel))
        assert behaviour.sent < 4 << 20  # stopped part way through the download (4 MB)


def test_a_file_that_needs_reading_whole_downloads_in_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ckpt_gui.core.remote import store
    from ckpt_gui.core.remote.download import iter_download

    monkeypatch.setattr(store, "FETCH_STEP", 1 << 16)
    with open(tmp_path / "legacy.pt", "wb") as f:
        torch.save({"w": torch.arange(100_000.0)}, f, _use_new_zipfile_serialization=False)
    with serving(tmp_path) as (url, behaviour):
        steps = iter_download(f"{url}/legacy.pt")
        seen = []
        while True:
            try:
                seen.append(next(steps))
            except StopIteration as stop:
                copy = stop.value
                break
        size = (tmp_path / "legacy.pt").stat().st_size
        assert seen[0] == (0, size) and seen[-1] == (size, size) and len(seen) > 5
        assert copy.name.endswith("-legacy.pt")
        assert copy.read_bytes() == (tmp_path / "legacy.pt").read_bytes()
        with open_checkpoint(copy) as ckpt:
            assert torch.equal(ckpt.find("w").load(), torch.arange(100_000.0))
        behaviour.reset()
        again = iter_download(f"{url}/legacy.pt")
        assert next(again) == (size, size)  # cached: nothing fetched again
        assert behaviour.sent == 0


def test_a_quantized_model_reads_its_remote_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.core.quant import writers

    path, reference = writers.gptq(tmp_path / "gptq")
    with serving(tmp_path) as (url, _):
        remote = _json(["inspect", f"{url}/gptq/model.safetensors", "--json"], capsys)
        local = _json(["inspect", str(path), "--json"], capsys)
        assert remote["quantized"] == local["quantized"] and remote["quantized"]
        with open_checkpoint(f"{url}/gptq/") as ckpt:
            (logical,) = ckpt.logical
            key = "model.layers.0.mlp.down_proj.weight"
            values = logical.dequantize().numpy()
        assert logical.key == key and (values == reference[key]).all()


def test_export_of_a_remote_checkpoint_is_refused_in_one_line(
    server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url, _ = server
    err = _error(["export", f"{url}/train.pt", str(tmp_path / "out.safetensors")], capsys)
    assert err.endswith("a remote checkpoint; download it first, then export the local copy")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_gguf_file_opens_from_its_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from ckpt_gui.core.remote.store import shared_cache
    from tests.core.quant import gguf_writer

    path, _, raw = gguf_writer.llama(tmp_path / "llama")
    with serving(tmp_path) as (url, behaviour):
        remote = _json(["inspect", f"{url}/llama/model.gguf", "--json"], capsys)
        local = _json(["inspect", str(path), "--json"], capsys)
        assert remote["quantized"] == local["quantized"] and remote["quantized"]
        assert [t["key"] for t in remote["tensors"]] == [t["key"] for t in local["tensors"]]
        behaviour.reset()
        with open_checkpoint(f"{url}/llama/model.gguf") as ckpt:
            assert ckpt.format == "gguf" and behaviour.sent == 0  # the header was cached
            name = "blk.0.attn_q.weight"
            stored = ckpt.find(name).load().numpy()
            assert np.array_equal(stored, raw[name])
            assert 0 < behaviour.sent <= stored.nbytes + (64 << 10)
            (logical,) = [lt for lt in ckpt.logical if lt.key == "blk.0.ffn_down.weight"]
            local_ckpt = open_checkpoint(path)
            (expected,) = [lt for lt in local_ckpt.logical if lt.key == logical.key]
            assert torch.equal(logical.dequantize(), expected.dequantize())
            local_ckpt.close()
            shared_cache().limit = 1  # evicting everything else keeps the mapped copy
            shared_cache().trim()
            assert shared_cache().usage() > 0


def test_a_gguf_header_longer_than_the_first_fetch(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "vocab.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_token_list([f"token-{i:06d}" for i in range(30_000)])  # ~600 KB of header
    weight = np.arange(1 << 20, dtype=np.float32).reshape(1024, 1024)  # 4 MB of data
    writer.add_tensor("output.weight", weight)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with serving(tmp_path) as (url, behaviour), open_checkpoint(f"{url}/vocab.gguf") as ckpt:
        tokens = ckpt.find("metadata.tokenizer.ggml.tokens").value
        assert tokens.startswith("[30,000 × string: token-000000, token-000001")
        assert behaviour.sent < 2 << 20  # the header (doubling its fetch), not the data
        assert np.array_equal(ckpt.find("output.weight").load().numpy(), weight)
