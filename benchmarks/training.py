"""Training throughput of the recipes against plain TRL, and how long the `small` model takes to learn 250 events.

    PYTHONPATH=src python benchmarks/training.py [--model tiny|small] [--steps 20] [--repeats 2]
    PYTHONPATH=src python benchmarks/training.py --model small --learn-events 250

Part 1, for each recipe: the project's `train()` and plain TRL (the same trainer class, model, LoRA + full
projector, data and arguments, built by hand as a TRL user would) run alternately on the same model and data in
the same process, alternating which goes first; tokens/s = tokens the trainer saw / seconds in `trainer.train()`;
the best of `--repeats` runs of each is kept. The ratio ours / TRL is the overhead the project adds to the training loop (goal >= 0.95);
setup time (copying the base model, freezing, LoRA) is reported apart. `reinforce` is compared with plain
SFTTrainer on the same rows (TRL has no offline REINFORCE). `sft-distill` (sft with the distillation terms of
round 3 of the pharmacy experiment, every other row a replayed one) is compared with the same trainer computing
the loss the direct way: logits at every position, the teacher on the whole batch. Data: easy-vqa train
questions as events.

Part 2 (`--learn-events N`): wall time of one `sft` run with the default LearnConfig (3 epochs, batch 8,
projector + language LoRA) on N easy-vqa events, with accuracy on those events before and after.
Results are written as JSON to --out (default benchmarks/results/training-<model>.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from ilearn.config import LearnConfig, ModelConfig  # noqa: E402
from ilearn.errors import NotFound  # noqa: E402
from ilearn.learning import recipes  # noqa: E402
from ilearn.learning.gate import HeldOut, heldout_accuracy  # noqa: E402
from ilearn.learning.parts import ATTENTION_PROJECTIONS, locate_parts, make_trl_compatible  # noqa: E402

logger = logging.getLogger("benchmarks.training")


def events(n: int, seed: int = 0) -> list[tuple[Image.Image, str, str]]:
    """`n` (image, question, answer) events from easy-vqa's train split (seeded sample)."""
    from ilearn.data.easyvqa import load_split, sample

    return [(Image.open(i.image_path).convert("RGB"), i.question, i.answer) for i in sample(load_split("train"), n, seed)]


def rows(recipe: str, evts: list[tuple[Image.Image, str, str]]) -> list[dict]:
    """Rows in TRL's columns for `recipe` (rejected / undesirable answers: another event's answer)."""
    out = []
    for i, (image, q, a) in enumerate(evts):
        other = evts[(i + 1) % len(evts)][2]
        other = other if other != a else ("no" if a == "yes" else "yes")
        prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
        say = lambda text: [{"role": "assistant", "content": [{"type": "text", "text": text}]}]  # noqa: E731
        if recipe == "sft":
            out.append({"messages": prompt + say(a), "images": [image]})
        elif recipe == "dpo":
            out.append({"prompt": prompt, "chosen": say(a), "rejected": say(other), "images": [image]})
        else:
            good = i % 2 == 0
            row = {"prompt": prompt, "completion": say(a if good else other), "images": [image]}
            out.append({**row, "label": good} if recipe == "kto" else {**row, "reward": 1.0 if good else -0.1})
    return out


def plain_trl(vlm, recipe: str, data: list[dict], settings: LearnConfig, out_dir: Path) -> dict:
    """The same run written directly against TRL + PEFT, as a TRL user would."""
    import copy

    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    model = make_trl_compatible(copy.deepcopy(vlm.model))
    located = locate_parts(model)
    peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=0.0,
                             target_modules=rf"^{located['language']}\..*\.({'|'.join(ATTENTION_PROJECTIONS)})$",
                             modules_to_save=[located["projector"]])
    if recipe in ("sft", "reinforce"):
        data = [recipes.messages_to_prompt_completion(r) for r in data]
        data = [{k: v for k, v in r.items() if k in ("prompt", "completion", "images")} for r in data]
    cls, trainer_cls, extra = {"sft": (SFTConfig, SFTTrainer, {}), "reinforce": (SFTConfig, SFTTrainer, {}),
                               "dpo": (DPOConfig, DPOTrainer, {"beta": settings.beta}),
                               "kto": (KTOConfig, KTOTrainer, {"beta": settings.beta})}[recipe]
    args = recipes.trainer_args(cls, settings, out_dir, recipes.model_device(vlm), max_length=None, **extra)
    trainer = trainer_cls(model=model, args=args, train_dataset=Dataset.from_list(data),
                          processing_class=vlm.processor, peft_config=peft_config)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"tokens": trainer._total_train_tokens, "seconds": seconds}


def whole_sequence_distill(vlm, recipe: str, data: list[dict], settings: LearnConfig, out_dir: Path) -> dict:
    """The project's distilling sft with the loss computed the direct way: logits at every position (not only the
    answers'), the teacher run on the whole batch (not only the replayed rows). `recipe` is sft's."""
    from ilearn.learning.distill import REPLAY_COLUMN, answer_nll, distillation_loss, image_token_loss

    trainer, _, _ = recipes.sft_trainer(vlm, data, settings, out_dir)

    def compute_loss(model, inputs, return_outputs=False, num_items_in_batch=None):
        replay, labels = inputs.pop(REPLAY_COLUMN).bool(), inputs.pop("labels")
        outputs = model(**inputs, use_cache=False)
        log_p = outputs.logits[:, :-1].float().log_softmax(-1)
        loss, mask = answer_nll(log_p, labels[:, 1:], num_items_in_batch)
        tokens = trainer.taps[0].take() if trainer.taps else None
        if bool(replay.any()):
            with torch.no_grad():
                teacher_log_p = trainer.teacher(**inputs, use_cache=False).logits[:, :-1].float().log_softmax(-1)
            loss = loss + trainer.distill * distillation_loss(log_p, teacher_log_p, mask & replay[:, None])
            if tokens is not None:
                loss = loss + trainer.distill_image * image_token_loss(tokens, trainer.taps[1].take(), replay)
        trainer._total_train_tokens += int(inputs["attention_mask"].sum())
        return (loss, outputs) if return_outputs else loss

    trainer.compute_loss = compute_loss
    start = time.perf_counter()
    trainer.train()
    return {"tokens": trainer._total_train_tokens, "seconds": time.perf_counter() - start}


def throughput(vlm, settings: LearnConfig, n_rows: int, repeats: int,
               which: tuple[str, ...] = ("sft", "dpo", "kto", "reinforce", "sft-distill")) -> dict:
    """Part 1: tokens/s of each recipe, ours vs plain TRL, alternating runs."""
    evts = events(n_rows)
    table = {}
    for recipe in which:
        distill = recipe == "sft-distill"
        data = rows("sft" if distill else recipe, evts)
        run_settings = replace(settings, recipe="sft" if distill else recipe)
        baseline = plain_trl
        if distill:
            from ilearn.learning.distill import REPLAY_COLUMN

            data = [{**r, REPLAY_COLUMN: i % 2 == 1} for i, r in enumerate(data)]
            run_settings = replace(settings, recipe="sft", distill=5.0, distill_image=10.0)
            baseline = whole_sequence_distill
        ours, base, setup = [], [], []
        for i in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                for who in (("ours", "trl") if i % 2 == 0 else ("trl", "ours")):  # alternate who goes first
                    if who == "trl":
                        trl = baseline(vlm, recipe, data, run_settings, Path(tmp) / "trl")
                        base.append(trl["tokens"] / trl["seconds"])
                        continue
                    start = time.perf_counter()
                    result = recipes.train(vlm, data, run_settings, Path(tmp) / "ours")
                    setup.append(time.perf_counter() - start - result.seconds)
                    ours.append(result.tokens / result.seconds)
        table[recipe] = {"ours_tokens_per_s": round(max(ours), 1), "trl_tokens_per_s": round(max(base), 1),
                         "ratio": round(max(ours) / max(base), 3), "ours_setup_s": round(min(setup), 2),
                         "baseline": "whole-sequence distillation" if distill else "plain TRL",
                         "runs": repeats, "steps": settings.max_steps, "batch_size": settings.batch_size}
        logger.info("%s: %s", recipe, table[recipe])
    return table


def learn_events(vlm, n: int, settings: LearnConfig) -> dict:
    """Part 2: wall time of the default sft run on `n` events, with accuracy on them before and after."""
    from ilearn.learning.registry import served_file

    evts = events(n, seed=1)
    probe = [HeldOut(image, q, a) for image, q, a in evts[:50]]
    before = heldout_accuracy(vlm, probe)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = recipes.train(vlm, rows("sft", evts), settings, Path(tmp) / "v")
        wall = time.perf_counter() - start
        vlm.set_weights(served_file(vlm, Path(result.path)), version="trained")
        after = heldout_accuracy(vlm, probe)
        vlm.reset()
    return {"events": n, "wall_s": round(wall, 1), "train_s": round(result.seconds, 1), "steps": result.steps,
            "tokens_per_s": round(result.tokens_per_s, 1), "train_loss": round(result.train_loss, 4),
            "accuracy_before": before, "accuracy_after": after, "probe": len(probe),
            "settings": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.learning_rate}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (random weights) or small (the embedded default)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per throughput run")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of ours and TRL per recipe")
    parser.add_argument("--learn-events", type=int, default=0, help="part 2: learn this many events (e.g. 250)")
    parser.add_argument("--recipes", default="sft,dpo,kto,reinforce,sft-distill",
                        help="recipes whose throughput is measured")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for noisy in ("ilearn.learning.recipes", "ilearn.learning.parts", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)

    from ilearn.models import load_model

    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    config = ModelConfig(backend=args.model, device=args.device, dtype=dtype, threads=args.threads)
    try:
        vlm = load_model(config)
    except NotFound as exc:  # the small model's trained projector is not built yet: time it with a random one
        from ilearn.models.composed_chat import ComposedVLMChat
        from ilearn.models.small import build_small

        logger.warning("%s; using a random projector (timings hold, accuracies do not)", exc)
        vlm = ComposedVLMChat(*build_small(config, projector=None), config, name=args.model)
    report = {"model": args.model, "device": args.device, "dtype": dtype, "threads": args.threads,
              "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None}
    if not args.skip_throughput:
        settings = LearnConfig(max_steps=args.steps, batch_size=args.batch_size)
        report["throughput"] = throughput(vlm, settings, args.steps * args.batch_size, args.repeats,
                                          tuple(args.recipes.split(",")))
    if args.learn_events:
        report["learn"] = learn_events(vlm, args.learn_events, LearnConfig(batch_size=args.batch_size))
        logger.info("learn: %s", report["learn"])
    out = Path(args.out or f"benchmarks/results/training-{args.model}-{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
