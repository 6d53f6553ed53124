"""What the last mutmut run found for modules under src/ilearn (called by scripts/mutation.sh).

    python scripts/mutation_results.py memory/retrieval learning/gate       # each module's score and survivors
    python scripts/mutation_results.py --unkilled memory/retrieval          # the names of the mutants not killed

The score is (killed + timeout) / mutants; "no tests", "not checked" and survivors count against it.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from mutmut.stats import status_by_exit_code

CAUGHT = ("killed", "timeout")


def statuses(module: str) -> dict[str, str]:
    """Mutant name -> status ("killed", "survived", "not checked"...) of `module` (e.g. "memory/retrieval")."""
    path = module.removeprefix("src/").removeprefix("ilearn/").removesuffix(".py")
    with open(f"mutants/src/ilearn/{path}.py.meta") as fh:
        codes = json.load(fh)["exit_code_by_key"]
    return {name: status_by_exit_code[code] for name, code in codes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="+")
    parser.add_argument("--unkilled", action="store_true", help="print only the names of the mutants not killed")
    args = parser.parse_args()
    for module in args.modules:
        status = statuses(module)
        left = sorted(n for n, s in status.items() if s not in CAUGHT)
        if args.unkilled:
            for name in left:
                print(name)
            continue
        counts = Counter(status.values())
        caught = counts["killed"] + counts["timeout"]
        other = {k: v for k, v in counts.items() if k not in (*CAUGHT, "survived")}
        print(f"{module}: {caught}/{len(status)} = {100 * caught / max(len(status), 1):.1f}% "
              f"(killed {counts['killed']}, timeout {counts['timeout']}, survived {counts['survived']}"
              + "".join(f", {k} {v}" for k, v in sorted(other.items())) + ")")
        for name in left:
            print(f"    {status[name]}: {name}")


if __name__ == "__main__":
    main()
