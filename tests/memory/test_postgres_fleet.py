"""Two assistants (two workers, each with its own home folder) on one PostgreSQL store, built from settings."""

from __future__ import annotations

import pytest

from ilearn.assistant import Assistant
from ilearn.config import Config
from ilearn.memory.feed import FleetMemory
from ilearn.memory.postgres import PostgresStore
from ilearn.types import TurnKind
from postgres_helpers import fresh_schema
from test_retrieval_loop import bottle, teach


@pytest.fixture
def url():
    yield from fresh_schema()


def worker(url: str, home) -> Assistant:
    config = Config(home=str(home), store=url).override(model={"backend": "tiny"}, feedback={"method": "lexical"})
    return Assistant.from_config(config)


def test_a_correction_taught_through_one_worker_is_reused_by_another(url, tmp_path) -> None:
    one, two = worker(url, tmp_path / "w1"), worker(url, tmp_path / "w2")
    try:
        assert isinstance(one.store, PostgresStore) and isinstance(two.memory, FleetMemory)
        teach(one, "ana", "ibuprofen", bottle())
        again = two.respond("ana", "What is this medicine called?", image=bottle(shift=3, light=10))
        assert again.kind == TurnKind.ANSWER and again.text.lower() == "ibuprofen"
        assert again.references and again.references[0].answer == "ibuprofen"
        other = two.respond("bob", "What is this medicine called?", image=bottle(shift=3, light=10))
        assert other.text.lower() != "ibuprofen"  # private to ana on every worker
        assert not (tmp_path / "w1" / "ilearn.db").exists()  # the events live in PostgreSQL only
        assert one.forget_user("ana")  # forgotten through worker one ...
        after = two.respond("ana", "What is this medicine called?", image=bottle(shift=3, light=10))
        assert after.text.lower() != "ibuprofen" and not after.references  # ... gone from worker two
        assert two.memory.index.dead == 0 and not two.store.list_events(user_id="ana")
    finally:
        one.close()
        two.close()
