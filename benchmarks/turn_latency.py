"""Time per turn of the assistant, split into clarify, feedback, retrieve, answer and store, and the share of
the turn that is not model compute (goal: under 5%).

    python benchmarks/turn_latency.py                  # embedded default model (small), 1 thread
    python benchmarks/turn_latency.py --model tiny     # the pipeline's own overhead on a tiny model
    python benchmarks/turn_latency.py --image-embedder instance   # another retrieval image embedder

Model compute is measured inside the model calls: the VLM's generate/score and the retrieval and feedback
embedders (EfficientNet-Lite0 features, MiniLM); everything else (validation, image decoding, SQLite writes,
vector search, prompt building) counts as overhead.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from ilearn.assistant import Assistant
from ilearn.config import Config


class ComputeClock:
    """Adds up the seconds spent inside model calls (the VLM and the retrieval/feedback embedders)."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, obj, name: str) -> None:
        """Time every call of `obj.name` (patched on the instance)."""
        inner = getattr(obj, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        setattr(obj, name, timed)


def images(n: int):
    from ilearn.evaluation.scenarios.pharmacy import pharmacy_scenario

    scenario = pharmacy_scenario(seed=0, n_teach=1, n_test=2)
    views = [view for item in scenario.items for view in item.test_views]
    return [views[i % len(views)] for i in range(n)]


SCRIPT = [("What is this?", True), ("its name", False), ("No, that's ibuprofen.", False),
          ("What is this medicine used for?", True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="small")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dialogues", type=int, default=8)
    parser.add_argument("--image-embedder", default="auto", help="retrieval.image_embedder (auto: the default)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as home:
        config = Config(home=str(Path(home) / "ilearn")).override(
            model={"backend": args.model, "threads": args.threads}, retrieval={"image_embedder": args.image_embedder})
        assistant = Assistant.from_config(config)
        timed = ComputeClock()
        timed.wrap(assistant.vlm, "generate")
        timed.wrap(assistant.vlm, "score")
        timed.wrap(assistant.memory.image_embedder, "embed_images")
        timed.wrap(assistant.memory.text_embedder, "embed_texts")  # shared with the feedback decoder
        assistant.respond("warmup", "What is this medicine called?", image=images(1)[0])  # load lazily built parts
        parts: dict[str, list[float]] = {}
        totals, model_s = [], []
        for d, image in enumerate(images(args.dialogues)):
            session = None
            for text, with_image in SCRIPT:
                timed.seconds = 0.0
                reply = assistant.respond(f"user{d % 3}", text, image=image if with_image else None,
                                          session_id=session)
                session = reply.session_id
                for key, ms in reply.timings_ms.items():
                    parts.setdefault(key, []).append(ms)
                totals.append(reply.timings_ms["total"])
                model_s.append(timed.seconds * 1000)
            assistant.close_session(session)
    n = len(totals)
    print(f"model={args.model} threads={args.threads} turns={n}")
    print(f"{'part':>10} {'mean ms':>9} {'p50 ms':>9} {'max ms':>9}")
    for key in ["feedback", "clarify", "retrieve", "answer", "store", "total"]:
        if key in parts:
            v = parts[key]
            print(f"{key:>10} {statistics.mean(v):9.1f} {statistics.median(v):9.1f} {max(v):9.1f}")
    overhead = (sum(totals) - sum(model_s)) / sum(totals)
    print(f"model compute {sum(model_s) / n:.1f} ms/turn of {sum(totals) / n:.1f} ms/turn; "
          f"not model compute: {overhead:.1%} (goal < 5%)")


if __name__ == "__main__":
    main()
