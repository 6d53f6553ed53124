"""``ilearn experiment SCENARIO --report DIR``: the multi-round protocol with simulated users (see protocol.py).

Registered on the main parser by `add_experiment_parser(subparsers)`; prints the rounds table at the end.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ilearn.cli_settings import add_set_option, add_setting, apply, overrides

logger = logging.getLogger(__name__)

EPILOG = """examples:
  ilearn experiment pharmacy --report reports/pharmacy --quick
  ilearn experiment reference-game --report reports/game --methods sft,kto --rounds 2
  ilearn experiment objects --objects my_photos/ --report reports/mine
  ilearn experiment personal --report reports/personal --quick
A rerun with the same settings resumes: finished rounds are loaded from DIR/rounds/."""


def _methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise argparse.ArgumentTypeError("give at least one method, e.g. sft,reinforce,kto")
    return methods


def add_experiment_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `experiment` subcommand on the main parser's subparsers; returns its parser."""
    parser = subparsers.add_parser(
        "experiment", help="multi-round learning experiment with simulated users; writes a report folder",
        description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["pharmacy", "reference-game", "objects", "personal"], help="which scenario")
    parser.add_argument("--report", required=True, help="report folder (report.json, report.md, PNG plots)")
    parser.add_argument("--quick", action="store_true", help="a small run (about 3 minutes on the small model)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="pharmacy/objects: 1 = R1, 2 = R1-R2, 3+ = all; personal: 1 = R1, 2 = R1-R2 (three prompt "
                             "styles), 3+ = all; reference-game: training rounds")
    parser.add_argument("--users", type=int, default=None, help="teaching personas (default: all 22)")
    parser.add_argument("--seed", type=int, default=0, help="seed of scenario, users and training")
    add_setting(parser, "model.backend", "--model")
    parser.add_argument("--objects", default=None, help="objects scenario: folder with one subfolder per object")
    parser.add_argument("--methods", type=_methods, default=None,
                        help="comma-separated recipes: reference-game default sft,reinforce,kto; pharmacy sft")
    parser.add_argument("--home", default=None, help="where the deployments live (default REPORT/work)")
    add_setting(parser, "model.threads", "--threads")
    parser.add_argument("--sequential", action="store_true",
                        help="pharmacy/objects: train the vision-encoder ablation after R3, not beside it in a "
                             "second process (the default when the CPU has cores for both)")
    parser.add_argument("--config", default=None, help="JSON settings file for the assistant (see ilearn.config)")
    add_set_option(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: iLearn's progress logs; -vv: debug logs of every library")
    parser.set_defaults(func=cmd_experiment)
    return parser


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run the experiment the arguments describe and print its table."""
    from ilearn.config import Config
    from ilearn.evaluation.protocol import EXPERIMENT_DEFAULTS, run_experiment
    from ilearn.evaluation.report import format_table, guess_lines, headline, together_lines

    given = overrides(args)
    model, threads = given.pop("model.backend", "small"), given.pop("model.threads", 1)
    config = Config.load(args.config) if args.config else None
    if given:  # --set: on the settings file, or on the experiment's own defaults
        config = apply(config or Config().override(**EXPERIMENT_DEFAULTS), given)
    report = run_experiment(args.scenario, model=model, rounds=args.rounds, users=args.users, seed=args.seed,
                            quick=args.quick, report_dir=args.report, objects_dir=args.objects, methods=args.methods,
                            progress=not args.no_progress, home=args.home, threads=threads, config=config,
                            parallel=False if args.sequential else None)
    out = sys.stdout
    print(f"{report['scenario']} ({report['model']}, seed {report['seed']}): "  # noqa: T201 - CLI output
          f"{report.get('elapsed_s', 0):.0f} s; report in {args.report}", file=out)
    for line in headline(report):
        print(line, file=out)  # noqa: T201 - CLI output
    print(format_table(report["rounds"]), file=out)  # noqa: T201 - CLI output
    for line in together_lines(report["rounds"]) + guess_lines(report["rounds"]):
        print(line, file=out)  # noqa: T201 - CLI output
    return 0


__all__ = ["add_experiment_parser", "cmd_experiment"]
