"""Terminal escape injection: text from a file (keys, values, metadata, the names of pickled
globals, error messages, file names) never reaches the terminal raw. Every command's output holds
no control character but newline and tab; JSON stays valid and keeps the exact strings."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ckpt_gui.cli import main
from tests.core.escape_files import CLEAR, HOSTILE, EscapeFile, write_all

COMMANDS = (
    "inspect",
    "inspect --json",
    "stats",
    "stats --json",
    "diff",
    "diff --json",
    "export",
    "export --cpu-copy --dtype float16 --on-overflow inf",
    "scan",
    "scan --json",
)


@pytest.fixture(scope="module")
def escape_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, EscapeFile]:
    return {f.name: f for f in write_all(tmp_path_factory.mktemp("escapes"))}


def unsafe_characters(text: str) -> list[str]:
    """Every character of ``text`` a terminal could act on: C0 controls but newline and tab,
    DEL, C1 controls, and anything else Python does not call printable (bidi overrides,
    surrogates)."""
    return sorted({c for c in text if not (c.isprintable() or c in "\n\t")})


def unsafe_bytes(raw: bytes) -> list[int]:
    """The same check on the bytes a terminal receives."""
    bad = {b for b in raw if (b < 0x20 and b not in b"\n\t") or b == 0x7F}
    text = raw.decode("utf-8", errors="replace")
    bad |= {ord(c) for c in text if 0x80 <= ord(c) <= 0x9F}
    return sorted(bad)


def run(command: str, f: EscapeFile, out_dir: Path, capsys) -> tuple[int, str, str]:
    name, *flags = command.split()
    if name == "diff":
        argv = [name, str(f.path), str(f.other), *flags]
    elif name == "export":
        argv = [name, str(f.path), str(out_dir / f"{f.path.stem}.safetensors"), *flags]
    else:
        argv = [name, str(f.path), *flags]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "fixture",
    [
        "state_dict_keys",
        "safetensors_metadata",
        "training_values",
        "global_protocol2",
        "global_protocol4",
        "file_name",
        "missing_file",
        "diff_pair",
    ],
)
def test_no_control_characters_reach_the_terminal(
    escape_files, fixture: str, command: str, tmp_path: Path, capsys
) -> None:
    code, out, err = run(command, escape_files[fixture], tmp_path, capsys)
    assert code in (0, 1, 2)
    assert "unexpected" not in err
    assert unsafe_characters(out) == [], out
    assert unsafe_characters(err) == [], err
    lines = (out + err).splitlines()
    assert not [line for line in lines if line.lstrip().startswith("forged")]
    if "--json" in command and code != 2:
        json.loads(out)  # still one valid JSON object


def test_inspect_notes_show_metadata_readably(escape_files, capsys) -> None:
    assert main(["inspect", str(escape_files["safetensors_metadata"].path)]) == 0
    out = capsys.readouterr().out
    [note] = [line for line in out.splitlines() if line.startswith("  note: metadata:")]
    assert "k\\x1b[2J\\x1b[HALL CLEAR\\r\\x08\\x7f\\x9b31m\\u202e\\nforged=v\\x1b[2J" in note


@pytest.mark.parametrize("fixture", ["global_protocol2", "global_protocol4"])
def test_structural_warning_names_globals_escaped(escape_files, fixture: str, capsys) -> None:
    assert main(["inspect", str(escape_files[fixture].path)]) == 0
    out = capsys.readouterr().out
    [note] = [line for line in out.splitlines() if "structural view" in line]
    assert "torch's safe loader refused this file" in note
    assert "evil\\x1b[2J\\x1b[HALL CLEAR\\r\\x08\\x7f" in note
    assert "Bad\\x1b[2J" in note


def test_stats_nan_line_escaped(escape_files, capsys) -> None:
    main(["stats", str(escape_files["state_dict_keys"].path)])
    out = capsys.readouterr().out
    [line] = [line for line in out.splitlines() if line.startswith("NaN or Inf in")]
    assert "layer\\x1b[2J\\x1b[HALL CLEAR" in line


def test_diff_one_sided_keys_escaped(escape_files, capsys) -> None:
    f = escape_files["diff_pair"]
    assert main(["diff", str(f.path), str(f.other)]) == 1
    out = capsys.readouterr().out
    assert "  onlyA\\x1b[2J\\x1b[HALL CLEAR" in out
    assert "  onlyB\\x1b[2J\\x1b[HALL CLEAR" in out


def test_file_name_escaped_in_report_and_error(escape_files, capsys) -> None:
    path = escape_files["file_name"].path
    assert main(["inspect", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path.parent}/red\\x1b[31m\\x9b\\rname.pt  (")
    assert main(["inspect", str(escape_files["missing_file"].path)]) == 2
    assert "/missingred\\x1b[31m\\x9b\\rname\\udcff.pt: no such file" in capsys.readouterr().err


def test_json_keeps_exact_strings(escape_files, capsys) -> None:
    """JSON escapes control characters itself (ASCII only), so the strings stay exact."""
    assert main(["inspect", str(escape_files["training_values"].path), "--json"]) == 0
    text = capsys.readouterr().out
    assert text.isascii()
    values = {v["key"]: v["value"] for v in json.loads(text)["values"]}
    assert values["comment"] == HOSTILE
    f = escape_files["diff_pair"]
    assert main(["diff", str(f.path), str(f.other), "--json"]) == 1
    text = capsys.readouterr().out
    assert text.isascii()
    out = json.loads(text)
    assert out["only_a"] == [f"onlyA{HOSTILE}"] and out["only_b"] == [f"onlyB{HOSTILE}"]
    assert main(["scan", str(escape_files["global_protocol4"].path), "--json"]) == 1
    text = capsys.readouterr().out
    assert text.isascii()
    modules = {g["module"] for g in json.loads(text)["globals"]}
    assert CLEAR in "".join(modules)


def test_real_terminal_bytes(escape_files) -> None:
    """The bytes ``python -m ckpt_gui`` writes, with a file name that is not even UTF-8."""
    meta = escape_files["safetensors_metadata"].path
    raw_name = os.fsencode(meta.parent) + "/raw\x1b[2J\x9b".encode() + b"\xff.safetensors"
    os.link(meta, raw_name)
    shown = b"raw\\x1b[2J\\x9b\\udcff.safetensors"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    runs = {
        "inspect": ["inspect", raw_name],
        "diff": ["diff", raw_name, os.fsencode(escape_files["diff_pair"].path)],
        "missing": ["stats", raw_name + b".missing"],
    }
    out = {}
    for name, argv in runs.items():
        proc = subprocess.run(
            [sys.executable, "-m", "ckpt_gui", *argv], capture_output=True, env=env, timeout=120
        )
        assert unsafe_bytes(proc.stdout) == [] and unsafe_bytes(proc.stderr) == []
        out[name] = (proc.returncode, proc.stdout, proc.stderr)
    assert out["inspect"][0] == 0 and shown in out["inspect"][1]
    [note] = [line for line in out["inspect"][1].splitlines() if b"note: metadata:" in line]
    assert b"k\\x1b[2J\\x1b[HALL CLEAR\\r\\x08\\x7f\\x9b31m\\u202e\\nforged=v\\x1b" in note
    assert out["diff"][0] == 1 and b"  onlyA\\x1b[2J\\x1b[HALL CLEAR" in out["diff"][1]
    assert out["missing"][0] == 2 and shown + b".missing: no such file" in out["missing"][2]


def test_commands_write_only_through_output() -> None:
    """Escaping happens in one place: ``commands/output.py``. A ``print`` or a direct write to
    ``sys.stdout`` or ``sys.stderr`` anywhere else in the CLI would bypass it."""
    root = Path(__file__).resolve().parents[2] / "ckpt_gui"
    sources = [root / "cli.py", *sorted((root / "commands").glob("*.py"))]
    bypasses = []
    for source in sources:
        if source.name == "output.py":
            continue
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            printing = isinstance(node, ast.Name) and node.id == "print"
            stream = isinstance(node, ast.Attribute) and node.attr in ("stdout", "stderr")
            if printing or stream:
                bypasses.append(f"{source.name}:{node.lineno}")
    assert len(sources) > 5 and bypasses == []
