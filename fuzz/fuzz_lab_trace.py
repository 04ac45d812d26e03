"""Fuzz target: the lab's trace-file parser and verifier (``lab.trace.parse``).

Trace files are read back by ``greenrt-lab verify/replay/show/diff``, so a trace
someone edited, truncated or crafted is untrusted input. Run with atheris::

    .venv/bin/python fuzz/fuzz_lab_trace.py /tmp/trace-scratch fuzz/corpus/lab_trace \
        -max_total_time=60

What one input checks, beyond "no unexpected exception":

* the parser is total: the only error is ``lab.errors.TraceError`` (with the line it
  blames, when there is one);
* a trace that verifies re-serializes to exactly the same bytes (``Trace.to_bytes``):
  nothing is accepted that the writer would not have produced, so no byte of a
  verified file can have been altered;
* an unkeyed trace is refused when a key is required.
"""

from __future__ import annotations

import sys

CORPUS = "corpus/lab_trace"

try:  # pragma: no cover - only when running under atheris
    import atheris

    with atheris.instrument_imports():
        from greenrt.lab.errors import TraceError
        from greenrt.lab.trace import parse
except ImportError:
    atheris = None
    from greenrt.lab.errors import TraceError
    from greenrt.lab.trace import parse

#: The documented error of the trace parser: nothing else may escape it.
EXPECTED_ERRORS = (TraceError,)


def TestOneInput(data: bytes) -> None:
    try:
        trace = parse(data, key=None, require_key=False)
    except TraceError:
        return
    again = trace.to_bytes()
    if again != data:
        raise AssertionError(f"verified trace does not re-serialize to its own bytes "
                             f"({len(data)} in, {len(again)} out)")
    try:
        parse(data, key=b"fuzz-key", require_key=True)
    except TraceError:
        pass
    else:
        raise AssertionError("an unkeyed trace verified with a key required")


if __name__ == "__main__":  # pragma: no cover
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
