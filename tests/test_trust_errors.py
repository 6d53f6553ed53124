"""Issue 20, item 6: the command line gives one clear line (no traceback, non-zero exit) for each bad case the
issue lists, and the chat survives bad input."""

from __future__ import annotations

import io
import sqlite3

import pytest

from ilearn.assistant import Assistant
from ilearn.cli import main, run_chat
from ilearn.config import Config
from ilearn.errors import InvalidInput


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Assistant.from_config(Config(home=str(home)).override(model={"backend": "tiny"})) as assistant:
        assistant.respond("ana", "hello")
    return home


def error_of(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("ilearn: error: ") and err.count("\n") == 1
    return err


def test_a_missing_or_bad_settings_file_is_named(home, tmp_path, capsys):
    assert "cannot read the settings file" in error_of(
        ["events", "list", "--home", str(home), "--config", str(tmp_path / "none.json")], capsys)
    bad = tmp_path / "bad.json"
    for text in ("{not json", "[1, 2]"):
        bad.write_text(text)
        assert "cannot read the settings file" in error_of(["events", "list", "--home", str(home), "--config",
                                                            str(bad)], capsys)


def test_an_export_to_a_path_that_cannot_be_a_folder_is_named(home, tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    err = error_of(["events", "export", "--home", str(home), "--out", str(tmp_path / "file")], capsys)
    assert f"cannot write the export to {tmp_path / 'file'}" in err


def test_an_unknown_status_is_refused_by_the_parser(home, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["events", "list", "--home", str(home), "--status", "lost"])
    assert exit_.value.code == 2 and "invalid choice: 'lost'" in capsys.readouterr().err


def test_a_damaged_schema_version_is_one_line(home, capsys):
    conn = sqlite3.connect(home / "ilearn.db")
    conn.execute("UPDATE schema_version SET version = 'x'")
    conn.commit()
    conn.close()
    assert "schema version row is damaged" in error_of(["events", "list", "--home", str(home)], capsys)


def test_the_chat_skips_undecodable_lines_and_lone_surrogates(home):
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\xfe what is it\nhello \xed\xa0\x80\nhello\n/quit\n"),
                             errors="surrogateescape")
    out = io.StringIO()
    with Assistant.from_config(Config(home=str(home)).override(model={"backend": "tiny"})) as assistant:
        assert run_chat(assistant, "ana", stdin, out) == 0
        with pytest.raises(InvalidInput, match="lone surrogate"):
            assistant.respond("ana", "hello \ud800")
    text = out.getvalue()
    assert text.count("[error] that line is not valid UTF-8 text; it was skipped") == 2
    assert "ana> hello\nassistant> " in text  # the chat goes on


def test_the_chat_starts_a_new_dialogue_when_its_user_is_forgotten_meanwhile(home):
    class Forgetting(io.StringIO):
        """The chat's input; after the first question, another thread forgets the user."""

        def __init__(self, assistant: Assistant) -> None:
            super().__init__("what is this?\nand now?\nhello again\n")
            self.assistant, self.lines = assistant, 0

        def readline(self, *args) -> str:
            self.lines += 1
            if self.lines == 2:
                self.assistant.forget("ana")
            return super().readline(*args)

    out = io.StringIO()
    with Assistant.from_config(Config(home=str(home)).override(model={"backend": "tiny"})) as assistant:
        assert run_chat(assistant, "ana", Forgetting(assistant), out) == 0
    text = out.getvalue()
    assert "the next line starts a new dialogue" in text
    assert text.count("assistant> ") == 2  # the first question and "hello again"
