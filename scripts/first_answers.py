"""The first answer to each scored picture of a fact experiment, part by part, read again offline.

    python scripts/first_answers.py REPORT_DIR VERSION [--objects DIR] [--seed N] [--r1-only] [--out FILE]

REPORT_DIR is an `ilearn experiment pharmacy|objects --report` folder (its trained versions and memory, not in
use by a running experiment); VERSION is a key of its work/teach/versions.json ("sft-novision", "sft-full") or
"base". For each test task (the scenario's test views, its precise question) it prints one JSON line: the
memory's outright answer (`reusable`), its guess (`choose_guess`, as a turn chooses it), the version's own greedy answer without
references, whether each is right, and the version's log-probabilities of its answer and of the guess. Each line
also holds the guess before any gate ("cand": the same-question match a guess would be, its similarity and
whether it would overrule the version's answer; "cand_own": the version's answer to that event's own picture,
"cand_own_ok" whether it is the event's answer; "support_sim": the most alike event about the question that
carries the version's answer), so that any gate can be scored offline; `--shares P,P,...`
first prints one line with the leave-one-out gate (`ilearn.memory.retrieval.leave_one_out_gate`) the memory's own
events give at each share. `--r1-only` keeps only what R1's teaching stored (the memory R2 was scored with).
docs/real-images.md ("Each tuned version chooses its guesses", "Which gate for a tuned version's guesses")
reads these lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report")
    parser.add_argument("version")
    parser.add_argument("--objects", help="the objects folder (objects experiments); none: the pharmacy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--r1-only", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--shares", default="", help="comma-separated shares: print their leave-one-out gates first")
    args = parser.parse_args(argv)

    import torch

    from ilearn.config import Config
    from ilearn.dialogue import prompts
    from ilearn.evaluation import protocol
    from ilearn.evaluation.runner_common import Deployment
    from ilearn.learning.guesses import choose_guess
    from ilearn.learning.update import image_loader
    from ilearn.memory.retrieval import (
        carrying,
        guess_overrules,
        guess_similarity,
        references,
        reusable,
        tentative,
    )
    from ilearn.models import load_model
    from ilearn.text import contains_answer

    torch.set_num_threads(1)
    name = "objects" if args.objects else "pharmacy"
    sizes = protocol._sizes(name, False)
    home = Path(args.report) / "work"
    base = Config().override(**protocol.EXPERIMENT_DEFAULTS).override(
        model={"backend": "small", "threads": 1, "seed": args.seed}, home=str(home))
    scenario = protocol._scenario(name, args.seed, sizes, args.objects, None)
    config = base.override(retrieval={"sharing": "trusted"}, clarify={"facets": scenario.facets})
    vlm = load_model(config.model)
    dep = Deployment.open(home / "teach", config, vlm)
    rows = []
    try:
        dep.serve(None if args.version == "base" else dep._versions()[args.version])
        rc, memory = config.retrieval, dep.memory
        image_of = image_loader(dep.store)
        on_own: dict[str, str] = {}  # event id -> the version's answer to that event's own picture and question

        def own_view(event) -> str:
            if event.id not in on_own:
                asked = prompts.answer_messages(event.question, image_of(event.image), "")
                on_own[event.id] = vlm.generate(asked, max_new_tokens=config.model.max_new_tokens).text.strip()
            return on_own[event.id]
        weight, gate = memory.guess_rule(tuned=args.version != "base")
        if args.shares:
            # the memory keeps a gate per share, chosen on one read
            gates = {share: memory.guess_rule(tuned=True, precision=float(share))[1]
                     for share in args.shares.split(",")}
            rows.append({"weight": weight, "gate": gate, "gates": gates})
        for task in scenario.tasks("test", sizes.test_tasks, seed=args.seed):
            found = memory.search(task.view, task.question, None, config.robot_id, k=rc.candidates, floor=-1.0)
            if args.r1_only:
                found = [m for m in found if m.event.user_id.startswith("R1-teach")]
            matches = references(found, rc)
            top = reusable(matches, rc.reuse_threshold, rc.reuse_margin, rc.reuse_min_text_sim)
            messages = prompts.answer_messages(task.question, task.view, "")
            own = vlm.generate(messages, max_new_tokens=config.model.max_new_tokens).text.strip()
            # as a turn chooses it: the version's gate for what it learnt, the base weights' for the rest
            guess, _ = choose_guess(found, rc, memory, args.version != "base",
                                    lambda e: e.image is None or contains_answer(own_view(e), e.answer), said=own)
            cand = tentative(found, rc.guess_threshold, rc.reuse_min_text_sim, weight, -float("inf"))
            row = {"item": task.item.id, "view": task.view_index, "intent": task.intent, "ref": task.reference,
                   "own": own, "own_ok": contains_answer(own, task.reference),
                   "top": top.event.answer if top else None, "top_score": round(top.score, 3) if top else None,
                   "top_ok": contains_answer(top.event.answer, task.reference) if top else None,
                   "guess": guess.event.answer if guess else None,
                   "guess_sim": round(guess_similarity(guess, weight), 3) if guess else None,
                   "guess_ok": contains_answer(guess.event.answer, task.reference) if guess else None,
                   "cand": cand.event.answer if cand else None,
                   "cand_sim": round(guess_similarity(cand, weight), 3) if cand else None,
                   "same_score": max((round(m.score, 3) for m in found if m.text_sim >= rc.reuse_min_text_sim),
                                     default=None),
                   "support_sim": max((round(guess_similarity(m, weight), 3) for m in
                                       carrying(own, found, rc.reuse_min_text_sim)), default=None),
                   "cand_ok": contains_answer(cand.event.answer, task.reference) if cand else None,
                   "cand_overrules": guess_overrules(own, cand, matches, found, min_text_sim=rc.reuse_min_text_sim,
                                                     margin=rc.guess_margin, weight=weight,
                                                     references_stand=rc.guess_references_stand) if cand else None,
                   "cand_own": own_view(cand.event) if cand and cand.event.image else None,
                   "cand_own_ok": contains_answer(own_view(cand.event), cand.event.answer)
                   if cand and cand.event.image else None,
                   "near": [(m.event.answer, round(m.score, 3), m.event.user_id) for m in found[:4]]}
            if guess is not None:
                row["lp_own"], row["lp_guess"] = (round(x, 2) for x in vlm.score(messages, [own, guess.event.answer]))
            rows.append(row)
    finally:
        dep.serve(None)
        dep.close()
    text = "\n".join(json.dumps(r) for r in rows)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)  # noqa: T201 - script output
    return 0


if __name__ == "__main__":
    sys.exit(main())
