"""A scripted conversation that shows the loop: clarify, answer, get corrected, remember, reuse."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TextIO

from ilearn.config import Config

logger = logging.getLogger(__name__)


def run_demo(config: Config, out: TextIO) -> int:
    """Talk to the assistant as two users about drawn medicine bottles and print the dialogue."""
    from ilearn.assistant import Assistant
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario

    # the "easy" views (plain light, small turns) keep a short demo readable; benchmarks use the default views
    scenario = pharmacy_scenario(seed=0, n_teach=1, n_test=1, views="easy")
    item = scenario.items[0]
    with tempfile.TemporaryDirectory() as tmp:
        if config.home == Config().home:  # the demo never writes into a real deployment by default
            config = config.override(home=str(Path(tmp) / "demo"))
        if not config.clarify.facets:  # a pharmacy robot asks about the name, the use or the dose
            config = config.override(clarify={"facets": scenario.facets})
        assistant = Assistant.from_config(config)
        print(f"model: {config.model.backend}; memory in {config.home}", file=out)

        def say(user: str, text: str, image=None, session=None) -> str:
            shown = " [shows a photo]" if image is not None else ""
            print(f"{user}>{shown} {text}", file=out)
            reply = assistant.respond(user, text, image=image, session_id=session)
            print(f"assistant> {reply.text}", file=out)
            for i, ref in enumerate(reply.references, 1):
                print(f"    reference [{i}]: {ref.question!r} -> {ref.answer!r} (score {ref.score:.2f})", file=out)
            return reply.session_id

        print("\n-- ana shows a bottle the robot has never seen", file=out)
        s = say("ana", "What is this?", image=item.teach_views[0])
        s = say("ana", "Its name, please.", session=s)
        s = say("ana", f"No, that's {item.facts['name']}.", session=s)
        events = assistant.close_session(s)
        print(f"[dialogue closed: {len(events)} event(s) distilled]", file=out)

        print("\n-- later, ana shows another photo of the same bottle", file=out)
        s = say("ana", "What is this medicine called?", image=item.test_views[0])
        last = assistant.get_session(s).turns[-1].text
        right = item.facts["name"].lower() in last.lower()
        say("ana", "Thanks!" if right else f"No, that's {item.facts['name']}.", session=s)
        assistant.close_session(s)

        print("\n-- bob asks about it too; ana's correction is private to her", file=out)
        s = say("bob", "What is this medicine called?", image=item.test_views[0])
        assistant.close_session(s)
        assistant.close()
    return 0
