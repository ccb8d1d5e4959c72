"""``s3://`` checkpoints against moto's S3 server (a test extra; no internet): read through
s3fs as any object store is, with credentials from the environment."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ckpt_gui.cli import main

moto_server = pytest.importorskip("moto.server")
pytest.importorskip("s3fs")
boto3 = pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def bucket(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - (folder, bucket url)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test-secret-never-shown",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint,
        }.items():
            env.setenv(name, value)
        root = tmp_path_factory.mktemp("s3")
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="models")
        g = torch.Generator().manual_seed(1)
        tensors = {f"layer.{i}.weight": torch.randn(64, 64, generator=g) for i in range(4)}
        save_file(tensors, root / "model.safetensors")
        torch.save({"model": tensors, "epoch": 2}, root / "train.pt")
        for name in ("model.safetensors", "train.pt"):
            s3.upload_file(str(root / name), "models", f"run/{name}")
        yield root, "s3://models/run"
    server.stop()


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", ["model.safetensors", "train.pt"])
def test_an_s3_checkpoint_gives_the_local_numbers(
    bucket, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root, url = bucket
    remote = _json(["stats", f"{url}/{name}", "--json"], capsys)
    local = _json(["stats", str(root / name), "--json"], capsys)
    assert remote["path"] == f"{url}/{name}"
    assert remote["tensors"] == local["tensors"]


def test_a_missing_key_is_one_line_without_secrets(
    bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = bucket
    assert main(["inspect", f"{url}/nothere.safetensors"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"ckpt-gui: error: {url}/nothere.safetensors: not found on the server, or access denied"
    )
    assert "test-secret" not in err
