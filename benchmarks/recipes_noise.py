"""How each learning recipe degrades when the feedback decoder errs as it did on real people (issue 19, item 4).

Runs the pharmacy experiment (`ilearn experiment pharmacy`) once per recipe with the deployment's decoder as built
and once with it wrapped in `NoisyDecoder(decoder, ISSUE19_CONFUSION, seed)`: the labels then carry the error
rates the pre-issue rules had on 228 real replies (positive read as neutral 45% / negative 8%, neutral read as
negative 28%, negative read as neutral 15%; see `ilearn.dialogue.feedback.ISSUE19_CONFUSION`). The wrapping is
done here, by replacing `ilearn.runtime.make_decoder` for the run, so the experiment code is unchanged. Prints,
per recipe and noise setting, each round's accuracy on taught facts and decoder precision from report.json, and
the ratio noisy / clean of the last round's accuracy on taught facts.

    PYTHONPATH=src .venv/bin/python benchmarks/recipes_noise.py --quick                     # sft, kto, reinforce
    PYTHONPATH=src .venv/bin/python benchmarks/recipes_noise.py --recipes sft --out /tmp/noise
    PYTHONPATH=src .venv/bin/python benchmarks/recipes_noise.py --recipes kto --labels noisy --out /tmp/noise  # one half

`--labels` runs one setting only (two processes can run the halves side by side); the other's report.json, when
a run left one in the same --out, is read for the ratio. A report folder resumes, so running both again after
the halves only loads their rounds.

One quick run takes about 10-20 minutes on two shared cores; a full run (without --quick) about 10 minutes per
recipe on an idle machine of this kind, times two settings.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ilearn import runtime
from ilearn.dialogue.feedback import ISSUE19_CONFUSION, NoisyDecoder


def run(recipe: str, noisy: bool, out: Path, quick: bool, seed: int) -> dict:
    """One experiment run; returns its report.json."""
    from ilearn.cli import main as cli_main

    original = runtime.make_decoder

    def noisy_make_decoder(*args, **kwargs):
        return NoisyDecoder(original(*args, **kwargs), ISSUE19_CONFUSION, seed=seed)

    report = out / f"{recipe}-{'noisy' if noisy else 'clean'}"
    # --sequential: everything in this process, where the decoder is replaced
    argv = ["experiment", "pharmacy", "--report", str(report), "--methods", recipe, "--sequential", "--no-progress"]
    if quick:
        argv.append("--quick")
    runtime.make_decoder = noisy_make_decoder if noisy else original
    try:
        code = cli_main(argv)
    finally:
        runtime.make_decoder = original
    if code:
        raise SystemExit(f"experiment {recipe} ({'noisy' if noisy else 'clean'}) exited with {code}")
    return json.loads((report / "report.json").read_text(encoding="utf-8"))


def rounds(report: dict) -> list[tuple[str, object, object]]:
    """(round, accuracy on taught facts, decoder precision) for each round of report.json's "rounds" list."""
    return [(r.get("name", "?"), r.get("accuracy_taught"), r.get("decoder_precision"))
            for r in report.get("rounds", []) if isinstance(r, dict)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="sft,kto,reinforce")
    parser.add_argument("--out", type=Path, default=Path("reports/recipes-noise"))
    parser.add_argument("--quick", action="store_true", help="the experiment's --quick setting")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected noise")
    parser.add_argument("--labels", choices=("clean", "noisy", "both"), default="both",
                        help="which setting to run (the other is read from --out if there)")
    args = parser.parse_args()
    for recipe in args.recipes.split(","):
        results = {}
        for noisy in (False, True):
            if args.labels in ("both", "noisy" if noisy else "clean"):
                results[noisy] = run(recipe, noisy, args.out, args.quick, args.seed)
            elif (done := args.out / f"{recipe}-{'noisy' if noisy else 'clean'}" / "report.json").exists():
                results[noisy] = json.loads(done.read_text(encoding="utf-8"))
        for noisy, report in results.items():
            for name, taught, precision in rounds(report):
                print(f"{recipe:10s} {'noisy' if noisy else 'clean':6s} {name:12s} taught accuracy {taught} "
                      f"decoder precision {precision}")
        last = [rounds(results[n])[-1][1] if rounds(results.get(n, {})) else None for n in (False, True)]
        if all(isinstance(v, (int, float)) for v in last) and last[0]:
            print(f"{recipe:10s} last round taught accuracy noisy / clean = {last[1] / last[0]:.2f}")


if __name__ == "__main__":
    main()
