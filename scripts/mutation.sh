#!/usr/bin/env bash
# Mutation testing (mutmut, settings in pyproject.toml [tool.mutmut]; docs/mutation-testing.md).
#   bash scripts/mutation.sh                       # the core modules: memory/retrieval, learning/gate, learning/update
#   bash scripts/mutation.sh memory/retrieval      # modules under src/ilearn, with or without .py
#   bash scripts/mutation.sh --again memory/retrieval   # only the mutants the last run did not kill (after new
#                                                        # tests or edits; run it twice after an edit of the module)
# Every mutant of the named modules is tested again (the tests of its function only), then the score of each
# module is printed: (killed + timeout) / mutants, with the surviving mutants' names (`mutmut show NAME`).
# One worker by default (MUTATION_WORKERS=n for more); mutmut's copies, results and log are in mutants/.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
again=0
if [ "${1:-}" = "--again" ]; then again=1; shift; fi
modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=(memory/retrieval learning/gate learning/update)
names=()
for m in "${modules[@]}"; do
  m=${m#src/}; m=${m#ilearn/}; m=${m%.py}
  if [ ! -f "src/ilearn/$m.py" ]; then
    echo "no module src/ilearn/$m.py" >&2
    exit 2
  fi
  names+=("ilearn.${m//\//.}.*")
done
mkdir -p mutants
if [ $again = 1 ]; then
  # the names of the mutants not killed last time (mutmut tests again every mutant it is given by name)
  mapfile -t names < <(python - "${modules[@]}" <<'EOF'
import json
import sys

from mutmut.stats import status_by_exit_code

for module in sys.argv[1:]:
    path = module.removeprefix("src/").removeprefix("ilearn/").removesuffix(".py")
    with open(f"mutants/src/ilearn/{path}.py.meta") as fh:
        codes = json.load(fh)["exit_code_by_key"]
    for name, code in codes.items():
        if status_by_exit_code[code] not in ("killed", "timeout"):
            print(name)
EOF
)
  [ ${#names[@]} -gt 0 ] || { echo "every mutant was killed last time"; exit 0; }
fi
mutmut run --max-children "${MUTATION_WORKERS:-1}" "${names[@]}" > mutants/run.log 2>&1 \
  || { tail -n 40 mutants/run.log; exit 1; }
python - "${modules[@]}" <<'EOF'
import json
import sys
from collections import Counter

from mutmut.stats import status_by_exit_code

for module in sys.argv[1:]:
    path = module.removeprefix("src/").removeprefix("ilearn/").removesuffix(".py")
    with open(f"mutants/src/ilearn/{path}.py.meta") as fh:
        codes = json.load(fh)["exit_code_by_key"]
    status = {name: status_by_exit_code[code] for name, code in codes.items()}
    counts = Counter(status.values())
    caught = counts["killed"] + counts["timeout"]
    other = {k: v for k, v in counts.items() if k not in ("killed", "timeout", "survived")}
    print(f"{path}: {caught}/{len(codes)} = {100 * caught / max(len(codes), 1):.1f}% "
          f"(killed {counts['killed']}, timeout {counts['timeout']}, survived {counts['survived']}"
          + "".join(f", {k} {v}" for k, v in sorted(other.items())) + ")")
    for name in sorted(n for n, s in status.items() if s != "killed" and s != "timeout"):
        print(f"    {status[name]}: {name}")
EOF
