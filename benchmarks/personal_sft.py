"""The user-aware SFT of `ilearn experiment personal` (its R3) on its own: what it learns and what it forgets.

    python benchmarks/personal_sft.py --seed 1                       # the experiment's settings
    python benchmarks/personal_sft.py --seed 1 --set replay=512 --tag r512

Teaches the scenario's world as the experiment does (`runner_personal._teach`: caretakers' facts, the users'
introductions and bottles, seed `--seed`, the default sizes), trains R3 on its user-aware rows
(`runner_personal.training_rows`, settings `runner_personal.learn_settings(..., "sft")` with `--set` changes;
`ilearn.learning.recipes.train`, the code the experiment runs), then measures with the base weights and with R3:

- the general set (easy-vqa) on the experiment's own questions (its first `--general` of the seed's order: what
  the experiment's gate and table report) and on the first `--more` of seed 0's order (the training benchmarks'
  set), so one seed's 50 questions are not the only figure;
- each user's tagged "use" and "dose" questions on a held-out photo of their bottle: the share whose fact is right
  and ROUGE-1 F1 against the profile's reference answer (what R3 is trained for; retrieval off).

Much faster to iterate on than the whole experiment (no rounds, no DPO, no scoring through the assistant).
Writes benchmarks/results/training/personal_sft_<tag>_seed<seed>.json.
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a LearnConfig field")
    parser.add_argument("--general", type=int, default=50, help="the experiment's general questions (seed order)")
    parser.add_argument("--more", type=int, default=200, help="easy-vqa test questions of seed 0's order")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="small")
    parser.add_argument("--tag", default="default")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from ilearn.config import Config, ModelConfig
    from ilearn.evaluation.metrics import rouge1
    from ilearn.evaluation.runner_common import Deployment, RunContext
    from ilearn.evaluation.runner_personal import DEFAULT, _teach, learn_settings, training_rows
    from ilearn.evaluation.scenarios.base import precise_question
    from ilearn.evaluation.scenarios.personal import INTENTS, personal_scenario
    from ilearn.learning import recipes
    from ilearn.learning.general import evaluate_easyvqa
    from ilearn.learning.registry import served_file
    from ilearn.learning.update import training_set
    from ilearn.models import load_model
    from ilearn.models.base import Message
    from ilearn.users.fit import tagged
    from ilearn.users.references import facts_kept, reference_answer

    sizes = DEFAULT
    scenario = personal_scenario(seed=args.seed, users_per_group=sizes.users_per_group, n_teach=sizes.teach_views,
                                 n_test=sizes.test_views)
    # as `ilearn experiment personal --seed S` builds it: the model's seed is the run's (it seeds LoRA's initial
    # weights, so a training differs from one seed to another even on the same rows), 24 new tokens
    vlm = load_model(ModelConfig(backend=args.model, threads=args.threads, max_new_tokens=24, seed=args.seed))
    config = Config().override(model={"backend": args.model}, clarify={"enabled": False},
                               retrieval={"sharing": "trusted"})

    def measure() -> dict:
        probes = [(scenario.item(u.item).test_views[0], tagged(precise_question(i), u.profile),
                   scenario.item(u.item).facts[i], reference_answer(i, scenario.item(u.item).facts[i], u.profile))
                  for u in scenario.users for i in INTENTS]
        replies = [vlm.generate([Message(role="user", content=q, image=img)]).text for img, q, _, _ in probes]
        general, more = (evaluate_easyvqa(vlm, limit=args.general, seed=args.seed, batch_size=8),
                         general_set(vlm, args.more))
        return {"general": general["accuracy"], "general_more": more["accuracy"], "general_more_by_kind": more["by_kind"],
                "facts": sum(facts_kept(r, f) for r, (_, _, f, _) in zip(replies, probes, strict=True)) / len(probes),
                "rouge1_f1": rouge1(replies, [ref for *_, ref in probes])["f1"], "n_probes": len(probes),
                "examples": [{"question": q, "reference": ref, "reply": r}
                             for r, (_, q, _, ref) in list(zip(replies, probes, strict=True))[:4]]}

    out: dict = {"seed": args.seed, "model": args.model, "tag": args.tag, "sets": args.set, "base": measure()}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = RunContext(scenario="personal", seed=args.seed, vlm=vlm, config=config, home=Path(tmp), cache=None,
                         sizes=sizes, teach_personas=[], test_personas=[], methods=[], progress=False)
        dep = Deployment.open(Path(tmp) / "personal", config, vlm)
        _teach(dep, scenario)
        settings = with_sets(learn_settings(ctx, "sft"), args.set)
        rows = training_rows(dep, scenario, "sft", settings)
        dep.close()
        start = time.perf_counter()
        result = recipes.train(vlm, training_set(rows, settings), settings, Path(tmp) / "v")
        out.update(rows=len(rows), steps=settings.max_steps, train_s=round(time.perf_counter() - start),
                   loss=result.train_loss, settings=asdict(settings))
        vlm.set_weights(served_file(vlm, Path(result.path)), version="r3")
        out["r3"] = measure()
    for key in ("general", "general_more", "facts", "rouge1_f1"):
        print(f"{key:13s} base {out['base'][key]:.3f}  R3 {out['r3'][key]:.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"personal_sft_{args.tag}_seed{args.seed}.json"
    path.write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
