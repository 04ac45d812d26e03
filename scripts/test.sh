#!/usr/bin/env bash
# Run the whole test suite in the project's virtualenv. Extra arguments go to pytest.
# pytest's exit code 5 ("no tests collected") is an error here: a suite that runs
# nothing must not look green.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# Every fuzz target for a bounded few seconds (fuzz/README.md). It runs first so that
# pytest's summary stays the last line; a finding is saved under fuzz/regressions/
# and fails the command after the suite has run.
fuzz_rc=0
if [[ "${FUZZ_SECONDS:-3}" != "0" && $# -eq 0 ]]; then
  "$VENV/bin/python" fuzz/run_bounded.py --time "${FUZZ_SECONDS:-3}" || fuzz_rc=$?
fi

# The typed API stays typed: mypy in strict mode over the runtime package (a few
# seconds with its cache). MYPY=0 skips it. A finding fails the command after pytest.
mypy_rc=0
if [[ "${MYPY:-1}" != "0" ]]; then
  "$VENV/bin/python" -m mypy --strict greenrt || mypy_rc=$?
fi

"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
if [[ $rc -eq 0 && $mypy_rc -ne 0 ]]; then
  echo "test: mypy --strict greenrt found type errors (see above)" >&2
  exit 1
fi
if [[ $rc -eq 0 && $fuzz_rc -ne 0 ]]; then
  echo "test: a fuzz target found something (see fuzz/regressions/)" >&2
  exit 1
fi
if [[ $rc -eq 5 ]]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit $rc
