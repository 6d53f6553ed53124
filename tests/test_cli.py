"""End-to-end: the real `ilearn` command on the tiny model (random weights, built locally)."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from helpers import make_png
from ilearn.cli import _split_image, main, run_chat
from ilearn.config import Config


@pytest.fixture
def photos(tmp_path):
    red, blue = tmp_path / "red bottle.png", tmp_path / "blue.png"
    red.write_bytes(make_png((200, 20, 20)))
    blue.write_bytes(make_png((20, 20, 200), shape="square"))
    return red, blue


def test_split_image(photos):
    red, _ = photos
    assert _split_image(f'"{red}" what is this?') == (str(red), "what is this?")
    assert _split_image("what is this?") == (None, "what is this?")
    assert _split_image("/no/such/file.png hi") == (None, "/no/such/file.png hi")


def test_chat_end_to_end_on_tiny_then_events(tmp_path, photos, capsys):
    red, blue = photos
    home = tmp_path / "home"
    script = "\n".join([
        f'"{red}" What is this?',
        "its name please",
        "No, that's ibuprofen.",
        "/close",
        f"{blue} What is the dose of this?",
        "thanks!",
        "/quit",
    ]) + "\n"
    from ilearn.assistant import Assistant

    # random weights cannot judge reactions: the lexical decoder reads them here
    config = Config(home=str(home)).override(model={"backend": "tiny"}, feedback={"method": "lexical"})
    assistant = Assistant.from_config(config)
    out = io.StringIO()
    assert run_chat(assistant, "ana", io.StringIO(script), out) == 0
    text = out.getvalue()
    assert "Do you want to know its name" in text  # Chain of Question
    assert "I'll remember: ibuprofen" in text  # the correction was understood
    assert "[dialogue closed; 1 event(s) learned]" in text
    assert text.count("assistant>") == 5

    # the stored events are listed and exported by the CLI
    assert main(["events", "list", "--home", str(home), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    fixed = [r for r in rows if r["answer"] == "ibuprofen"]
    assert fixed and fixed[0]["question"] == "What is this called?" and fixed[0]["user_id"] == "ana"
    assert main(["events", "export", "--home", str(home), "--out", str(tmp_path / "ds")]) == 0
    assert (tmp_path / "ds" / "sft.jsonl").read_text().count("ibuprofen") >= 1
    assert json.loads((tmp_path / "ds" / "snapshot.json").read_text())["event_ids"]

    assert main(["events", "forget", "--home", str(home), "--user", "ana"]) == 0
    assert main(["events", "list", "--home", str(home), "--user", "ana"]) == 2  # unknown user now
    assert "unknown user" in capsys.readouterr().err


def test_chat_reports_bad_input_and_goes_on(tmp_path, photos):
    from ilearn.assistant import Assistant

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assistant = Assistant.from_config(Config(home=str(tmp_path / "h")).override(model={"backend": "tiny"}))
    out = io.StringIO()
    run_chat(assistant, "ana", io.StringIO(f"{bad} what is this?\n{'x' * 5000}\n/quit\n"), out)
    assert out.getvalue().count("[error]") == 2 and "cannot be decoded" in out.getvalue()


def test_console_script_runs_chat_from_stdin(tmp_path, photos):
    red, _ = photos
    proc = subprocess.run(
        [sys.executable, "-m", "ilearn.cli", "chat", "--model", "tiny", "--home", str(tmp_path / "h")],
        input=f'"{red}" What is this medicine called?\n/quit\n', capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "assistant>" in proc.stdout and "[dialogue closed; 0 event(s) learned]" in proc.stdout
    assert "INFO" not in proc.stderr and "faiss" not in proc.stderr  # no library logs unless asked (-v)


def test_the_package_exports_the_assistant_and_its_settings():
    import ilearn
    from ilearn import Assistant, Config

    assert Assistant.__module__ == "ilearn.assistant" and Config.__module__ == "ilearn.config"
    assert set(ilearn.__all__) >= {"Assistant", "Config", "build_runtime"}
    with pytest.raises(AttributeError):
        ilearn.Nothing  # noqa: B018


def test_no_command_is_advertised_that_does_not_exist(capsys):
    from ilearn.cli import build_parser

    parser = build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)
    assert "serve" not in commands or callable(parser.parse_args(["serve"]).func)
    helptext = parser.format_help()
    assert all(name in commands for name in ("chat", "demo", "experiment", "learn", "events", "models"))
    assert "serve" not in helptext or "serve" in commands
