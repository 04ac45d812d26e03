"""Trace files: JSON Lines with a SHA-256 hash chain (optionally keyed with HMAC).

Format ``greenrt-lab-trace/1``. One record per line: the *canonical JSON* of the
record (keys sorted, no spaces, ASCII only, no NaN) with its hash appended as the last
member, ``...,"h":"<hex>"}``:

* line 1, the header: ``{"type": "header", "format", "seed", "strategy", "entry",
  "entry_file", "args", "python", "greenrt", "lab", "strict", "options", "mac"}``;
* one line per event: ``{"type": "ev", "seq", "kind", "t", "task", "region",
  "data"}`` — ``seq`` counts events from 0 and is the *step* that replay reports;
* last line, the footer: ``{"type": "footer", "records", "final", "complete",
  "outcome"}`` where ``records`` is the number of event lines and ``final`` the hash
  of the last line before the footer (the run's *final hash*).

Chain: ``h_0 = H(32 zero bytes ‖ canonical(header))`` and
``h_i = H(h_{i-1} ‖ canonical(record_i))`` where ``canonical(record)`` excludes ``h``
and ``H`` is SHA-256, or HMAC-SHA-256 with the key from the environment variable
``GREENRT_LAB_TRACE_KEY`` (header ``"mac": "hmac-sha256"``).

Verification (``verify``) is total and strict: every line must be ASCII, parse as a
JSON object, re-serialize to exactly the same bytes (so no byte can change without
changing the record), carry the right ``h``, and appear in the right place; the file
must end with the footer and a newline. So tampering with any single byte is
detected, and the error names the first bad line. Limits are checked before
anything is allocated from the file's content: ``MAX_TRACE_BYTES`` for the file and
``MAX_LINE_BYTES`` for a line.

Threats: an unkeyed chain detects corruption and naive edits, not a forger, who can
recompute every hash. With a key, forging needs the key; and when a key is
configured, ``verify`` refuses unkeyed files (a forger could otherwise strip the MAC).

Determinism: records hold only ids, virtual times, strings and numbers. Strings that
embed a memory address (``<function f at 0x7f...>``, e.g. a task named after a
``functools.partial``) are scrubbed to ``0x?`` when recorded.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import TraceError

FORMAT = "greenrt-lab-trace/1"
KEY_ENV = "GREENRT_LAB_TRACE_KEY"
MAX_TRACE_BYTES = 1 << 30
MAX_LINE_BYTES = 1 << 22
_ZERO = b"\0" * 32
_ADDR = re.compile(r" at 0x[0-9a-fA-F]+")
_HEX = re.compile(r"[0-9a-f]{64}")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                            allow_nan=False)


def canonical_json(obj: Any) -> str:
    """The one serialization the chain hashes: sorted keys, no whitespace, ASCII."""
    return _ENCODER.encode(obj)


def sealed_line(body: str, h: str) -> str:
    """A record's line: its canonical JSON with ``"h"`` appended as the last member."""
    return f'{body[:-1]},"h":"{h}"}}'


def plain(v: Any, depth: int = 0) -> Any:
    """``v`` as plain JSON data, deterministic: containers become lists/dicts with
    string keys, enums their value, unknown objects their type name, non-finite floats
    a string, and memory addresses in strings are scrubbed."""
    if v is None or v is True or v is False or type(v) is int:
        return v
    if type(v) is str:
        return _ADDR.sub(" at 0x?", v) if "0x" in v else v
    if type(v) is float:
        return v if math.isfinite(v) else repr(v)
    if depth > 32:
        return "<too deep>"
    if isinstance(v, dict):
        return {str(k): plain(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x, depth + 1) for x in v]
    if isinstance(v, enum.Enum):
        return plain(v.value, depth + 1)
    for base in (int, float, str):  # subclasses of the plain types
        if isinstance(v, base):
            return plain(base(v), depth + 1)
    if isinstance(v, bytes):
        return {"bytes": len(v)}
    return f"<{type(v).__name__}>"


def event_record(ev) -> dict[str, Any]:
    """The trace record of a ``greenrt.TraceEvent``."""
    return {"type": "ev", "seq": ev.seq, "kind": ev.kind, "t": plain(ev.time),
            "task": ev.task, "region": ev.region, "data": plain(ev.data)}


def env_key() -> bytes | None:
    """The HMAC key from ``GREENRT_LAB_TRACE_KEY``, or ``None``."""
    k = os.environ.get(KEY_ENV)
    return k.encode() if k else None


def _link(prev: bytes, body: str, key: bytes | None) -> str:
    data = prev + body.encode("ascii")
    if key is not None:
        return hmac.new(key, data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


@dataclass
class Trace:
    """A trace in memory: header, event records, footer fields. ``lines()`` gives the
    file content; ``final_hash`` the chain's hash after the last event record."""

    header: dict[str, Any]
    records: list[dict[str, Any]]
    footer: dict[str, Any] = field(default_factory=dict)
    key: bytes | None = None
    _lines: list[str] | None = field(default=None, repr=False)
    _final: str | None = field(default=None, repr=False)

    def _build(self) -> None:
        key = self.key
        header = dict(self.header)
        header["mac"] = "hmac-sha256" if key is not None else "sha256"
        lines = []
        prev = _ZERO
        h = ""
        for rec in [header, *self.records]:
            body = canonical_json(rec)
            h = _link(prev, body, key)
            lines.append(sealed_line(body, h))
            prev = bytes.fromhex(h)
        final = h
        foot = {"complete": True, "outcome": None}
        foot.update(self.footer)
        foot.update(type="footer", records=len(self.records), final=final)
        body = canonical_json(foot)
        fh = _link(prev, body, key)
        lines.append(sealed_line(body, fh))
        self._lines = lines
        self._final = final

    def lines(self) -> list[str]:
        if self._lines is None:
            self._build()
        return list(self._lines)

    @property
    def final_hash(self) -> str:
        if self._final is None:
            self._build()
        return self._final

    def to_bytes(self) -> bytes:
        return ("\n".join(self.lines()) + "\n").encode("ascii")

    def save(self, path: str | os.PathLike) -> str:
        """Write the file atomically (temporary file, then rename); return the path."""
        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        os.makedirs(d, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(self.to_bytes())
        os.replace(tmp, path)
        return path

    def choices(self) -> list[tuple[str, int, int]]:
        """The recorded choice sequence ``(what, n, index)``."""
        out = []
        for r in self.records:
            if r["kind"] == "lab.choice":
                d = r["data"]
                out.append((d["what"], d["n"], d["i"]))
        return out


@dataclass
class VerifyReport:
    records: int
    final_hash: str
    keyed: bool
    complete: bool


def _parse_line(raw: bytes, lineno: int) -> dict[str, Any]:
    if len(raw) > MAX_LINE_BYTES:
        raise TraceError(f"record longer than {MAX_LINE_BYTES} bytes", lineno)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TraceError("record is not ASCII (not canonical JSON)", lineno) from None
    try:
        rec = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise TraceError(f"record is not valid JSON: {e}", lineno) from None
    if not isinstance(rec, dict):
        raise TraceError("record is not a JSON object", lineno)
    h = rec.pop("h", None)
    if not isinstance(h, str) or not _HEX.fullmatch(h):
        raise TraceError("record has no valid hash field 'h'", lineno)
    try:
        canon = canonical_json(rec)
    except (ValueError, TypeError) as e:
        raise TraceError(f"record cannot be canonicalized: {e}", lineno) from None
    if sealed_line(canon, h) != text:
        raise TraceError("record is not in canonical form (bytes were altered)", lineno)
    rec["_body"] = canon
    rec["h"] = h
    return rec


def parse(data: bytes, key: bytes | None = None, *, require_key: bool | None = None) -> Trace:
    """Parse and verify trace file content; return the ``Trace``. Raises
    ``TraceError`` naming the first bad line. ``key`` defaults to the environment's;
    ``require_key`` (default: whether a key is configured) refuses unkeyed files."""
    if key is None:
        key = env_key()
    if require_key is None:
        require_key = key is not None
    if len(data) > MAX_TRACE_BYTES:
        raise TraceError(f"trace larger than {MAX_TRACE_BYTES} bytes")
    if not data:
        raise TraceError("empty trace file", 1)
    if not data.endswith(b"\n"):
        raise TraceError("trace does not end with a newline (truncated or altered)",
                         data.count(b"\n") + 1)
    raw_lines = data[:-1].split(b"\n")
    header = _parse_line(raw_lines[0], 1)
    if header.get("type") != "header":
        raise TraceError("first record is not a header", 1)
    if header.get("format") != FORMAT:
        raise TraceError(f"unknown trace format {header.get('format')!r}", 1)
    mac = header.get("mac")
    if mac == "hmac-sha256":
        if key is None:
            raise TraceError(f"keyed trace: set {KEY_ENV} to the key to verify it", 1)
        use_key = key
    elif mac == "sha256":
        if require_key:
            raise TraceError(f"unkeyed trace, but {KEY_ENV} is set: refusing a trace "
                             "without a MAC", 1)
        use_key = None
    else:
        raise TraceError(f"unknown mac {mac!r}", 1)
    prev = _ZERO
    prev_h = last_h = ""
    records: list[dict[str, Any]] = []
    footer = None
    for idx, raw in enumerate(raw_lines):
        lineno = idx + 1
        if footer is not None:
            raise TraceError("data after the footer", lineno)
        rec = header if idx == 0 else _parse_line(raw, lineno)
        h = rec.pop("h")
        expect = _link(prev, rec.pop("_body"), use_key)
        if not hmac.compare_digest(h, expect):
            raise TraceError("hash mismatch: the record or an earlier one was altered", lineno)
        prev_h = last_h
        last_h = h
        prev = bytes.fromhex(h)
        if idx == 0:
            continue
        typ = rec.get("type")
        if typ == "ev":
            if rec.get("seq") != len(records):
                raise TraceError(f"event seq {rec.get('seq')!r} out of order "
                                 f"(expected {len(records)})", lineno)
            if not isinstance(rec.get("kind"), str) or not isinstance(rec.get("data"), dict):
                raise TraceError("event record lacks kind/data", lineno)
            records.append(rec)
        elif typ == "footer":
            footer = rec
            footer["_h"] = h
            if footer.get("records") != len(records):
                raise TraceError(f"footer counts {footer.get('records')!r} records, "
                                 f"file has {len(records)}", lineno)
            if footer.get("final") != prev_h:
                raise TraceError("footer's final hash is not the last record's hash", lineno)
        else:
            raise TraceError(f"unknown record type {typ!r}", lineno)
    if footer is None:
        raise TraceError("no footer (truncated trace)", len(raw_lines))
    del header["mac"]
    foot = {k: v for k, v in footer.items() if k not in ("type", "_h")}
    t = Trace(header, records, foot, key=use_key)
    t._final = footer["final"]
    return t


def read(path: str | os.PathLike, key: bytes | None = None, *,
         require_key: bool | None = None) -> Trace:
    """Read and verify a trace file (see ``parse``)."""
    size = os.path.getsize(path)
    if size > MAX_TRACE_BYTES:
        raise TraceError(f"trace larger than {MAX_TRACE_BYTES} bytes")
    with open(path, "rb") as f:
        data = f.read(MAX_TRACE_BYTES + 1)
    return parse(data, key, require_key=require_key)


def verify(path: str | os.PathLike, key: bytes | None = None, *,
           require_key: bool | None = None) -> VerifyReport:
    """Verify a trace file's hash chain; raise ``TraceError`` on the first bad line."""
    t = read(path, key, require_key=require_key)
    return VerifyReport(records=len(t.records), final_hash=t.final_hash,
                        keyed=t.key is not None, complete=bool(t.footer.get("complete")))
