"""Plant the learning-path bugs that once left the suite green, one at a time, and check the tests turn red.

    python scripts/planted_bugs.py                       # the learning tests against every planted bug
    python scripts/planted_bugs.py tests/learning/test_learns.py --bug "blank images"

Each bug is a one-line edit of a copy of the committed tree (`git archive HEAD`; `--worktree` copies the working
tree instead) in a temporary folder; the working tree is never touched. The tests run there with this
interpreter. Prints one line per bug: RED (caught) or green (missed), with the
tests that failed. Exit status 1 when any bug was missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ROWS = "rows = training_rows(learn_cfg, train_events, image_fn)"
ROW_IMAGE = 'row: dict = {"images": [image_fn(event.image)] if event.image is not None else []}'
BUILD_SFT = "def build_sft(events: Iterable[Event], image_fn: ImageFn = image_path, *, with_ids: bool = False) -> list[dict]:"

# name -> (file, the line as it is, the line with the bug)
BUGS: dict[str, tuple[str, str, str]] = {
    "blank images": ("src/ilearn/learning/datasets.py", ROW_IMAGE,
                     'row: dict = {"images": [__import__("PIL.Image").Image.new("RGB", (96, 96))] '
                     "if event.image is not None else []}"),
    "first event's image for all": ("src/ilearn/learning/datasets.py", ROW_IMAGE,
                                    'global _FIRST\n    _FIRST = globals().get("_FIRST") or event.image\n'
                                    '    row: dict = {"images": [image_fn(_FIRST)] if event.image is not None else []}'),
    "held-out events trained on": ("src/ilearn/learning/update.py", TRAIN_ROWS,
                                   "rows = training_rows(learn_cfg, events, image_fn)"),
    "held-out trained on, ids dropped": ("src/ilearn/learning/update.py", TRAIN_ROWS,
                                         "rows = [dict(r, event_id=None) for r in "
                                         "training_rows(learn_cfg, events, image_fn)]"),
    "one name for everything": ("src/ilearn/learning/datasets.py", BUILD_SFT,
                                BUILD_SFT + "\n    events = list(events)\n    events = [__import__('dataclasses')"
                                ".replace(e, answer=events[0].answer) for e in events]"),
    "gate ignores false naming": ("src/ilearn/learning/gate.py", "specific = rise <= margins.specificity",
                                  "specific = True"),
}
DEFAULT_TESTS = ["tests/learning/test_learns.py", "tests/learning/test_update.py", "tests/learning/test_gate.py"]


PARTS = ("src", "tests", "pyproject.toml")
CONTROL = "no bug (control)"


def copy_tree(work: Path, worktree: bool) -> None:
    """The sources and tests, committed (HEAD) or as they are in the working tree, into `work`."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if worktree:
        for part in PARTS:
            (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, work / part)
        return
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD", *PARTS], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive.stdout, check=True)


def run_with_bug(name: str, tests: list[str], work: Path, worktree: bool = False) -> tuple[bool, list[str]]:
    """(caught, failed test ids) for the bug `name` planted in a fresh copy of the tree under `work`."""
    copy_tree(work, worktree)
    if name != CONTROL:
        path, line, bug = BUGS[name]
        text = (work / path).read_text()
        if text.count(line) != 1:
            raise SystemExit(f"{name}: the line to break is no longer in {path} once; update scripts/planted_bugs.py")
        (work / path).write_text(text.replace(line, bug))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(work / "src")}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=work,
                            capture_output=True, text=True, env=env)
    failed = [line.split(" ", 1)[1].split(" - ")[0] for line in result.stdout.splitlines()
              if line.startswith(("FAILED tests/", "ERROR tests/"))]
    return result.returncode != 0, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", nargs="*", default=DEFAULT_TESTS, help="test paths (default: the learning tests)")
    parser.add_argument("--bug", action="append", choices=sorted(BUGS), help="only these bugs (repeatable)")
    parser.add_argument("--worktree", action="store_true", help="plant in the working tree's files, not HEAD's")
    args = parser.parse_args(argv)
    missed = 0
    with tempfile.TemporaryDirectory(prefix="ilearn-bugs-") as tmp:
        for name in [CONTROL, *(args.bug or BUGS)]:
            caught, failed = run_with_bug(name, args.tests, Path(tmp) / "tree", args.worktree)
            if name == CONTROL and caught:
                raise SystemExit(f"the tests fail without any planted bug: {', '.join(failed[:4])}")
            missed += name != CONTROL and not caught
            shown = ", ".join(f.rsplit("::", 1)[-1] for f in failed[:4]) + (" ..." if len(failed) > 4 else "")
            print(f"{name:34s} {'RED  ' if caught else 'green'} {len(failed):3d} failed  {shown}", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
