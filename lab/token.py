"""Replay tokens: a failing lab run in one short, copy-pasteable string.

A token carries everything needed to re-run one exploration run exactly:

* ``v`` — token format version (``1``), and the lab version that made it;
* ``e``/``f``/``a`` — the program entry (``module:qualname``), its file, and its
  arguments when they are plain JSON;
* ``s``/``st`` — the run's seed and strategy with parameters (``"pct:3"``,
  ``"dpor"``...), for the record; replay does not need them;
* ``c`` — the choice sequence (the index answered at every decision), run-length
  encoded;
* ``h`` — the first 16 hex digits of the *run hash* (SHA-256 over the canonical
  event records, independent of the trace header), so a replay can prove it
  reproduced the same run;
* ``o`` — run options (strict, disabled oracles, max_steps, max_time, net),
  ``i`` — an injected cancellation (checkpoint number and task filter),
  ``x`` — a fault plan, ``g`` — the failure signature the run showed.

Encoding: ``glab1.`` + base64url(zlib(canonical JSON)), no padding. Decoding is
total: every malformed token raises ``TokenError`` (a ``LabError``), and nothing is
allocated from the token before its limits are checked — at most ``MAX_TOKEN_CHARS``
characters, at most ``MAX_JSON_BYTES`` after decompression (``zlib`` is asked for no
more), at most ``MAX_CHOICES`` choices after run-length decoding, every field of the
expected type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from .errors import LabError
from .trace import canonical_json

PREFIX = "glab1."
MAX_TOKEN_CHARS = 1 << 20
MAX_JSON_BYTES = 4 << 20
MAX_CHOICES = 5_000_000


class TokenError(LabError):
    """A replay token is malformed, truncated, too large or of another version."""


@dataclass
class Token:
    entry: str
    choices: list[int]
    run_hash: str = ""
    seed: int = 0
    strategy: str = "random"
    entry_file: str | None = None
    args: list | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inject: dict[str, Any] | None = None
    faults: dict[str, Any] | None = None
    signature: list[str] = field(default_factory=list)
    lab: str = ""

    def encode(self) -> str:
        d: dict[str, Any] = {"v": 1, "l": self.lab, "e": self.entry, "c": rle(self.choices),
                             "h": self.run_hash[:16], "s": self.seed, "st": self.strategy}
        if self.entry_file:
            d["f"] = self.entry_file
        if self.args is not None:  # [] (no arguments) and None (not recorded) differ
            d["a"] = self.args
        if self.options:
            d["o"] = self.options
        if self.inject:
            d["i"] = self.inject
        if self.faults:
            d["x"] = self.faults
        if self.signature:
            d["g"] = self.signature
        raw = zlib.compress(canonical_json(d).encode("ascii"), 9)
        return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def __str__(self) -> str:
        return self.encode()


def rle(xs: list[int]) -> list:
    """Run-length encode: a run of ``k >= 3`` equal values ``v`` becomes ``[v, k]``."""
    out: list = []
    i = 0
    n = len(xs)
    while i < n:
        v = xs[i]
        j = i + 1
        while j < n and xs[j] == v:
            j += 1
        k = j - i
        if k >= 3:
            out.append([v, k])
        else:
            out.extend([v] * k)
        i = j
    return out


def unrle(items: Any) -> list[int]:
    if not isinstance(items, list):
        raise TokenError("choices must be a list")
    out: list[int] = []
    for it in items:
        if type(it) is int:
            if it < 0:
                raise TokenError("negative choice index")
            out.append(it)
        elif (isinstance(it, list) and len(it) == 2 and type(it[0]) is int
              and type(it[1]) is int and it[0] >= 0 and it[1] >= 1):
            if len(out) + it[1] > MAX_CHOICES:
                raise TokenError(f"more than {MAX_CHOICES} choices")
            out.extend([it[0]] * it[1])
        else:
            raise TokenError(f"bad choice item {it!r}")
        if len(out) > MAX_CHOICES:
            raise TokenError(f"more than {MAX_CHOICES} choices")
    return out


def decode(text: str) -> Token:
    """Parse a token; ``TokenError`` for anything malformed."""
    if not isinstance(text, str):
        raise TokenError("a token is a string")
    text = text.strip()
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenError(f"token longer than {MAX_TOKEN_CHARS} characters")
    if not text.startswith(PREFIX):
        raise TokenError(f"not a replay token (expected the prefix {PREFIX!r})")
    body = text[len(PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("token is not valid base64url") from None
    d = zlib.decompressobj()
    try:
        data = d.decompress(raw, MAX_JSON_BYTES + 1)
    except zlib.error as e:
        raise TokenError(f"token does not decompress: {e}") from None
    if len(data) > MAX_JSON_BYTES or d.unconsumed_tail:
        raise TokenError(f"token expands beyond {MAX_JSON_BYTES} bytes")
    if not d.eof:
        raise TokenError("token is truncated")
    try:
        obj = json.loads(data.decode("ascii"), parse_constant=_refuse_constant,
                         parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenError("token content is not JSON") from None
    if not isinstance(obj, dict):
        raise TokenError("token content is not an object")
    if obj.get("v") != 1:
        raise TokenError(f"unsupported token version {obj.get('v')!r}")

    def get(k: str, typ, default=None, required=False):
        if k not in obj:
            if required:
                raise TokenError(f"token lacks field {k!r}")
            return default
        v = obj[k]
        if v is None and not required:
            return default
        if not isinstance(v, typ) or isinstance(v, bool) and typ is not bool:
            raise TokenError(f"token field {k!r} has the wrong type")
        return v

    h = get("h", str, "")
    if h and (len(h) > 64 or any(ch not in "0123456789abcdef" for ch in h)):
        raise TokenError("token hash is not hex")
    return Token(entry=get("e", str, required=True), choices=unrle(get("c", list, [])),
                 run_hash=h, seed=get("s", int, 0), strategy=get("st", str, "random"),
                 entry_file=get("f", str), args=get("a", list), options=get("o", dict, {}),
                 inject=get("i", dict), faults=get("x", dict),
                 signature=[str(x) for x in get("g", list, [])], lab=get("l", str, ""))


def run_hash(records: list[dict]) -> str:
    """SHA-256 over the canonical event records of a run (not the header): equal
    for a run and its exact replay, whatever strategy produced the choices."""
    h = hashlib.sha256()
    for r in records:
        h.update(canonical_json(r).encode("ascii"))
        h.update(b"\n")
    return h.hexdigest()


def _refuse_constant(name: str):
    """``NaN``/``Infinity`` are not JSON: a token carrying one is refused (it could
    never be re-encoded: canonical JSON forbids them)."""
    raise TokenError(f"replay token contains the non-JSON number {name}")


def _finite_float(text: str) -> float:
    """A JSON number that overflows to infinity (``1e400``) is refused like ``Infinity``."""
    v = float(text)
    if v != v or v in (float("inf"), float("-inf")):
        raise TokenError(f"replay token contains the out-of-range number {text[:20]}")
    return v
