"""Can the model learn to pick the described figure of a reference-game board from pick events?

    PYTHONPATH=src python benchmarks/picks.py                          # the experiment's training settings
    PYTHONPATH=src python benchmarks/picks.py --set max_steps=240 --tag steps240
    PYTHONPATH=src python benchmarks/picks.py --set 'trainable=["vision","projector","language"]'
    PYTHONPATH=src python benchmarks/picks.py --run reports/game --recipe kto   # a finished run's logged events

The upper bound of what the reference game's rounds can learn, without the noise of simulated dialogues: every
target of `--games` teach games gives the event a perfectly decoded accepted pick gives (the target's panel,
`choice.PANEL_QUESTION`, the description a precise user gives: attributes in the users' order until no other
figure fits); `ilearn.learning.recipes.train` trains sft on them with `runner_game.game_settings` (changed by
`--set`), and the benchmark measures how often `choice.choose` picks the target of the held-out test games at the
first try, for the full description and the precise one, before (the base model: chance) and after training,
and the general set (easy-vqa test, `--general` questions) before and after. With `--run DIR` (the --report
folder of a finished `ilearn experiment reference-game --methods RECIPE` run) it trains `--recipe` on the events
that run logged instead (`DIR/work/game-RECIPE`: decoded feedback, no ideal labels), as the run's last round
did. One thread. Writes benchmarks/results/training/picks_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from _settings import OUT, general_set, with_sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=int, default=30, help="teach games (3 rounds of 10 in the experiment)")
    parser.add_argument("--test", type=int, default=12, help="held-out games")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a LearnConfig field")
    parser.add_argument("--run", type=Path, help="train on the events of this finished reference-game run")
    parser.add_argument("--recipe", default="sft", help="with --run: the recipe (sft, reinforce, kto, dpo)")
    parser.add_argument("--general", type=int, default=30, help="easy-vqa test questions")
    parser.add_argument("--tag", default="default")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from ilearn.config import Config, ModelConfig
    from ilearn.dialogue.choice import PANEL_QUESTION, choose, split_panels
    from ilearn.evaluation.runner_common import Deployment
    from ilearn.evaluation.runner_game import DEFAULT, game_settings
    from ilearn.evaluation.scenarios.reference_game import describe, precise_keys, reference_game_scenario
    from ilearn.learning import recipes
    from ilearn.learning.datasets import completion_messages, prompt_messages
    from ilearn.learning.registry import served_file
    from ilearn.learning.update import training_set
    from ilearn.models import load_model

    if args.run is not None:  # the run's own boards
        args.seed = json.loads((args.run / "report.json").read_text())["seed"]
    scenario = reference_game_scenario(seed=args.seed, n_teach=args.games, n_test=args.test)
    vlm = load_model(ModelConfig(threads=1))
    settings = game_settings(Config().learn, recipe=args.recipe if args.run else "sft", steps=DEFAULT.train_steps,
                             batch_size=DEFAULT.batch_size, seed=args.seed)
    settings = with_sets(settings, args.set)
    rows = []
    if args.run is not None:
        dep = Deployment.open(args.run / "work" / f"game-{args.recipe}", Config(), vlm)
        rows = dep.rows(settings)
        dep.close()
    else:
        for game in scenario.teach_games:
            panels = split_panels(game.board)
            for slot in game.targets:
                text = describe(game.figure(slot).attributes, precise_keys(game, slot))
                rows.append({"messages": prompt_messages(PANEL_QUESTION, True) + completion_messages(text),
                             "images": [panels[slot - 1]]})

    def first_try() -> dict[str, float]:
        full = precise = n = 0
        for game in scenario.test_games:
            panels = split_panels(game.board)
            for slot in game.targets:
                attributes = game.figure(slot).attributes
                full += choose(vlm, panels, describe(attributes)).slot == slot
                precise += choose(vlm, panels, describe(attributes, precise_keys(game, slot))).slot == slot
                n += 1
        return {"full": full / n, "precise": precise / n, "targets": n}

    before, general_before = first_try(), general_set(vlm, args.general)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = recipes.train(vlm, training_set(rows, settings), settings, Path(tmp) / "v")
        train_s = time.perf_counter() - start
        vlm.set_weights(served_file(vlm, Path(result.path)), version="picks")
        after, general_after = first_try(), general_set(vlm, args.general)
    out = {"settings": asdict(settings), "run": str(args.run) if args.run else None, "rows": len(rows),
           "steps": result.steps, "train_s": round(train_s), "loss": result.train_loss, "first_try_base": before,
           "first_try_trained": after, "general_base": general_before["accuracy"],
           "general": general_after["accuracy"], "general_by_kind": general_after["by_kind"],
           "general_examples": general_after["examples"]}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"picks_{args.tag}.json").write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
