#!/usr/bin/env bash
# Run the whole test suite in the project's virtualenv. Extra arguments go to pytest.
# pytest's exit code 5 ("no tests collected") is an error here: a suite that runs
# nothing must not look green.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
rc=$?
if [[ $rc -eq 5 ]]; then
  echo "test: pytest collected no tests" >&2
  exit 1
fi
exit $rc
