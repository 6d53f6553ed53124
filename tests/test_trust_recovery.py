"""Issue 20, item 4: the rules always apply. A process killed between committing a session's events and admitting
them (the memory's rules) leaves them to the next start, which applies the same quarantine and supersede rules as
the live path; a second process on the same home is refused with a clear error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import ilearn
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.types import EventStatus
from test_retrieval_loop import bottle, teach

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL and flock")

SRC = str(Path(ilearn.__file__).resolve().parents[1])
TESTS = str(Path(__file__).resolve().parent)

# Teaches, then dies (SIGKILL) when the memory is about to admit the event of user argv[2]: the session is closed
# and its events committed, but not admitted.
CRASH = """
import os, signal, sys
from test_retrieval_loop import bottle, teach
from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.memory.retrieval import DualModalityMemory

config = Config(home=sys.argv[1]).override(model={"backend": "tiny"}, feedback={"method": "lexical"})
victim = sys.argv[2]
admit = DualModalityMemory.add
def add(self, event, image=None):
    if event.user_id == victim:
        os.kill(os.getpid(), signal.SIGKILL)
    return admit(self, event, image)
DualModalityMemory.add = add
assistant = Assistant.from_config(config)
if victim == "mallory":
    teach(assistant, "mallory", "poison", bottle(shift=-1))
else:
    r = assistant.respond("ana", "What is this medicine called?", image=bottle(shift=2, light=5))
    assert r.text.lower() == "aspirin", r.text
    assistant.respond("ana", "No, that's ibuprofen.", session_id=r.session_id)
    assistant.close_session(r.session_id)
"""


def config(home: Path) -> Config:
    return Config(home=str(home)).override(model={"backend": "tiny"}, feedback={"method": "lexical"})


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, TESTS]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def bystander(assistant: Assistant) -> str:
    return assistant.respond("dan", "What is this medicine called?", image=bottle(shift=2, light=5)).text.lower()


def test_a_contradiction_left_by_a_crash_is_quarantined_on_restart(tmp_path):
    home = tmp_path / "home"
    with Assistant.from_config(config(home)) as assistant:
        teach(assistant, "ana", "ibuprofen", bottle())
        teach(assistant, "cy", "ibuprofen", bottle(shift=1))
    crashed = run(CRASH, str(home), "mallory")
    assert crashed.returncode == -9, crashed.stderr
    with Assistant.from_config(config(home)) as again:
        [liar] = again.store.list_events(user_id="mallory")
        assert liar.status == EventStatus.QUARANTINED  # the live path's rule, applied on recovery
        assert bystander(again) == "ibuprofen"


def test_a_self_correction_left_by_a_crash_retires_the_old_answer_on_restart(tmp_path):
    home = tmp_path / "home"
    with Assistant.from_config(config(home)) as assistant:
        teach(assistant, "ana", "aspirin", bottle())
    crashed = run(CRASH, str(home), "ana")
    assert crashed.returncode == -9, crashed.stderr
    with Assistant.from_config(config(home)) as again:
        events = {e.answer: e for e in again.store.list_events(user_id="ana")}
        assert events["ibuprofen"].status == EventStatus.ACTIVE
        assert events["aspirin"].status == EventStatus.SUPERSEDED
        answer = again.respond("ana", "What is this medicine called?", image=bottle(shift=3, light=10))
        assert answer.text.lower() == "ibuprofen"


OPEN = """
import sys
from ilearn.assistant import Assistant
from ilearn.config import Config
Assistant.from_config(Config(home=sys.argv[1]).override(model={"backend": "tiny"}))
"""


def test_a_second_process_on_the_same_home_is_refused(tmp_path):
    home = tmp_path / "home"
    with Assistant.from_config(config(home)) as assistant:
        teach(assistant, "ana", "ibuprofen", bottle())
        second = run(OPEN, str(home))
        assert second.returncode != 0 and "is in use by another iLearn process" in second.stderr
        cli = run("import sys; from ilearn.cli import main; sys.exit(main(sys.argv[1:]))",
                  "events", "forget", "--home", str(home), "--user", "ana", "--model", "tiny")
        assert cli.returncode == 2 and "Traceback" not in cli.stderr
        assert f"ilearn: error: {home} is in use by another iLearn process (pid {os.getpid()})" in cli.stderr
    assert run(OPEN, str(home)).returncode == 0  # closed: the next process may open it
