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
  mapfile -t names < <(python scripts/mutation_results.py --unkilled "${modules[@]}")
  [ ${#names[@]} -gt 0 ] || { echo "every mutant was killed last time"; exit 0; }
fi
mutmut run --max-children "${MUTATION_WORKERS:-1}" "${names[@]}" > mutants/run.log 2>&1 \
  || { tail -n 40 mutants/run.log; exit 1; }
python scripts/mutation_results.py "${modules[@]}"
