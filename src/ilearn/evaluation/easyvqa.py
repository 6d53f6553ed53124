"""easy-vqa from the command line: a model's accuracy on the gate's general set.

    python -m ilearn.evaluation.easyvqa [--limit N] [--blind] [--seed 0] [--backend small]
    python -m ilearn.evaluation.easyvqa --limit 100 --home HOME --version mdl_...   # a trained version

The model answers easy-vqa TEST questions (1,000 images, 9,673 questions, 13 answers) greedily; the reply is
normalised (lower-case first word without punctuation; if that is not one of the 13 answers, the first answer
word found in the reply) and compared with the truth. `--limit N` evaluates a seeded random subsample of N
questions (same N and seed -> same questions). `--blind` replaces every image by a blank white one. The loader
is `ilearn.data.easyvqa`, the scoring `ilearn.learning.general.evaluate_easyvqa` (what the gate runs).
"""

from __future__ import annotations

import argparse
import json
import logging

from ilearn.learning.general import evaluate_easyvqa

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="seeded random subsample of N test questions")
    parser.add_argument("--blind", action="store_true", help="only the blank-image (blind) baseline")
    parser.add_argument("--both", action="store_true", help="with the images and blind")
    parser.add_argument("--seed", type=int, default=0, help="subsample seed")
    parser.add_argument("--backend", default="small", help="model backend (small, tiny, ...)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=16, help="questions answered per batch")
    parser.add_argument("--home", default=None, help="an assistant home whose model VERSION to evaluate")
    parser.add_argument("--version", default=None, help="a model version id of --home (e.g. mdl_...)")
    args = parser.parse_args(argv)
    if (args.home is None) != (args.version is None):
        parser.error("--home and --version go together")
    from ilearn.config import Config, ModelConfig
    from ilearn.errors import NotFound
    from ilearn.runtime import open_store

    store = None
    if args.home is not None:
        try:
            store = open_store(Config(home=args.home), create=False)
        except NotFound as exc:
            parser.error(f"--home {args.home} is not an assistant home ({exc})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from ilearn.models import load_model

    vlm = load_model(ModelConfig(backend=args.backend, threads=args.threads))
    if store is not None:
        from ilearn.learning.registry import ModelRegistry

        ModelRegistry(store, args.home).apply(vlm, args.version)
        store.close()
    modes = [False, True] if args.both else [args.blind]
    for blind in modes:
        result = evaluate_easyvqa(vlm, limit=args.limit, blind=blind, seed=args.seed, batch_size=args.batch_size)
        print(json.dumps(result, indent=1))  # noqa: T201 - entry point


if __name__ == "__main__":
    main()
