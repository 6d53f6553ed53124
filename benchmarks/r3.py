"""Round 3 of the pharmacy experiment on its own: fine-tune on a finished run's teaching events, score new views.

    ilearn experiment pharmacy --report reports/pharmacy         # once: the teaching events (R1-R2)
    python benchmarks/r3.py reports/pharmacy                     # the experiment's R3 settings
    python benchmarks/r3.py reports/pharmacy --set learning_rate_instance=6e-3 --set max_steps=200
    python benchmarks/r3.py reports/pharmacy --set 'trainable=["vision","projector","language"]'  # the ablation
    python benchmarks/r3.py reports/pharmacy --recipe kto --set learning_rate_instance=0   # another recipe

Trains `ilearn.learning.recipes.train` (the code `ilearn learn` and the experiment use) on the rows of
`--recipe` (sft by default) from the run's teaching store (`REPORT/work/teach`), repeated and mixed with replayed general examples as
`update.training_set` does, with the settings of `runner_fact.r3_settings` and R3's trainable parts (vision
encoder frozen) unless `--set` changes them, then asks the precise question of every taught (bottle, fact)
pair on the scenario's held-out test views (greedy, `contains_answer`), re-asks the training rows that teach an
answer (any recipe's) and up to `--general` of the replayed general rows on their own images (a general set that
falls while the replayed rows stay right is memorised, not kept), and measures the general set (easy-vqa) with the trained model, with its instance path zeroed, and with
the instance path alone trained on the base model (what the instance offset costs the general skills). Much
faster to iterate on than the whole experiment; one thread.
Writes benchmarks/results/training/r3_<tag>.json.
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
    parser.add_argument("report", type=Path, help="the --report folder of a finished pharmacy run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a LearnConfig field")
    parser.add_argument("--general", type=int, default=100, help="easy-vqa test questions")
    parser.add_argument("--tag", default="default")
    parser.add_argument("--recipe", default="sft", help="the recipe R3 trains with (runner_fact.r3_settings' own "
                        "settings for it)")
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    from ilearn.config import Config, ModelConfig
    from ilearn.evaluation.runner_common import Deployment
    from ilearn.evaluation.runner_fact import DEFAULT, TRAINABLE, r3_settings
    from ilearn.evaluation.scenarios.base import precise_question
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario
    from ilearn.learning import recipes
    from ilearn.learning.registry import served_file
    from ilearn.learning.update import training_set
    from ilearn.models import load_model
    from ilearn.models.base import Message
    from ilearn.text import contains_answer

    report = json.loads((args.report / "report.json").read_text())
    taught = sorted({tuple(t) for r in report["rounds"] for t in r.get("taught", [])})
    scenario = pharmacy_scenario(seed=report["seed"], n_teach=DEFAULT.teach_views, n_test=DEFAULT.test_views)
    probes = [(view, precise_question(intent), scenario.item(item).facts[intent], f"{item}/{intent}")
              for item, intent in taught for view in scenario.item(item).test_views]
    vlm = load_model(ModelConfig(backend=report["model"], threads=1, max_new_tokens=24))
    settings = r3_settings(Config().learn, recipe=args.recipe, trainable=TRAINABLE["novision"],
                           steps=DEFAULT.train_steps, batch_size=DEFAULT.batch_size, seed=report["seed"])
    settings = with_sets(settings, args.set)
    dep = Deployment.open(args.report / "work" / "teach", Config().override(model={"backend": report["model"]}), vlm)
    rows = dep.rows(settings)
    dep.close()

    def ask(image, question: str) -> str:
        return vlm.generate([Message(role="user", content=question, image=image)]).text

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = recipes.train(vlm, training_set(rows, settings), settings, Path(tmp) / "v")
        train_s = time.perf_counter() - start
        served = served_file(vlm, Path(result.path))
        vlm.set_weights(served, version="r3")
        replies = [(name, answer, ask(img, q)) for img, q, answer, name in probes]
        misses = [{"probe": name, "answer": answer, "reply": reply} for name, answer, reply in replies
                  if not contains_answer(reply, answer)]
        hits = len(probes) - len(misses)
        def reask(train_rows: list[dict]) -> tuple[int, list[dict]]:
            """(how many of the rows' right answers the model gives on their own images, the misses)."""
            asked = [qa for qa in map(question_answer, train_rows) if qa is not None]
            missed = []
            for r, (question, answer) in zip([r for r in train_rows if question_answer(r)], asked, strict=True):
                reply = ask(r["images"][0], question)
                if not contains_answer(reply, answer):
                    missed.append({"question": question, "answer": answer, "reply": reply})
            return len(asked) - len(missed), missed

        own, row_misses = reask(rows)
        replayed = [r for r in training_set([], settings)][: args.general]  # the same seeded sample trained on
        replay_own, replay_misses = reask(replayed)
        trained = general_set(vlm, args.general)
        general = trained["accuracy"]
        zeroed = alone = None
        if getattr(vlm.model.projector, "instance", None) is not None:
            with torch.no_grad():
                vlm.model.projector.zero_instance_output()
            zeroed = general_set(vlm, args.general)["accuracy"]
            instance_path = Path(tmp) / "instance-path.safetensors"
            save_file({k: v.contiguous() for k, v in load_file(str(served)).items() if ".instance." in k},
                      instance_path)
            vlm.set_weights(instance_path, version="r3-instance-path")
            alone = general_set(vlm, args.general)["accuracy"]
    vlm.reset()
    base = general_set(vlm, args.general)["accuracy"]
    out = {"report": str(args.report), "settings": asdict(settings),
           "rows": len(rows), "steps": result.steps, "train_s": round(train_s), "loss": result.train_loss,
           "taught_test_views": f"{hits}/{len(probes)}", "taught_test_accuracy": hits / max(len(probes), 1),
           "taught_test_misses": misses,
           "train_rows_right": f"{own}/{sum(question_answer(r) is not None for r in rows)}",
           "train_rows_missed": row_misses,
           "replayed_rows_right": f"{replay_own}/{len(replayed)}", "replayed_rows_missed": replay_misses[:20],
           "general_base": base, "general": general,
           "general_instance_path_zeroed": zeroed, "general_instance_path_alone": alone,
           "general_by_kind": trained["by_kind"], "general_examples": trained["examples"]}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"r3_{args.tag}.json").write_text(json.dumps(out, indent=1, default=str))
    print(json.dumps(out, indent=1, default=str))


def question_answer(row: dict) -> tuple[str, str] | None:
    """(question, right answer) of a training row in any recipe's format; None for a row that teaches no answer
    (kto's undesirable rows, reinforce's unrewarded ones)."""
    if "messages" in row:  # sft
        return row["messages"][0]["content"][-1]["text"], row["messages"][-1]["content"][0]["text"]
    good = row.get("chosen") or (row.get("completion") if row.get("label", True) and row.get("reward", 1) > 0
                                 else None)
    if not good:
        return None
    return row["prompt"][0]["content"][-1]["text"], good[0]["content"][0]["text"]


if __name__ == "__main__":
    main()
