"""Shared machinery for greenrt's fuzz targets (not a target itself).

Loaded by path (``fuzz/`` is not a package) from ``fuzz/run_bounded.py`` and from
``tests/test_fuzz_corpora.py``. It finds the targets, reads their seed corpora and
produces *seeded* random mutations of them, so a run without atheris is still a
real (if dumb) fuzzer and is exactly reproducible from its seed.

Nothing here may read ambient randomness: every mutation comes from a
``random.Random(seed)`` the caller owns.
"""

from __future__ import annotations

import importlib.util
import pathlib
import random
import sys
from collections.abc import Iterator
from types import ModuleType

FUZZ_DIR = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent

# Byte strings that tend to matter to parsers: lengths at the edges of limits,
# streamed markers, CRLF variants, integer edges.
INTERESTING = [
    b"-1", b"0", b"1", b"?", b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"9223372036854775807",
    b"9223372036854775808", b"-9223372036854775808", b"4294967296", b"65536", b"65535",
    b"99999999999999999999", b"inf", b"-inf", b"nan", b"1e308", b"1e309", b".", b";0",
    b"*?", b"$?", b"%?", b"~?", b">?", b"|1",
]


def targets() -> list[pathlib.Path]:
    """Every ``fuzz/fuzz_*.py`` target, sorted by name."""
    return sorted(FUZZ_DIR.glob("fuzz_*.py"))


def load_target(path: pathlib.Path) -> ModuleType:
    """Import a target module by path (with the repository root importable)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    name = f"_fuzz_target_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for attr in ("TestOneInput", "EXPECTED_ERRORS", "CORPUS"):
        if not hasattr(mod, attr):
            raise AttributeError(f"fuzz target {path.name} does not define {attr}")
    return mod


def corpus_dir(mod: ModuleType) -> pathlib.Path:
    return FUZZ_DIR / mod.CORPUS


def read_corpus(mod: ModuleType) -> list[tuple[str, bytes]]:
    d = corpus_dir(mod)
    if not d.is_dir():
        return []
    return [(p.name, p.read_bytes()) for p in sorted(d.iterdir()) if p.is_file()]


REGRESSIONS_DIR = FUZZ_DIR / "regressions"


def regressions_dir(path_or_stem) -> pathlib.Path:
    """Where crashes found for a target are kept: ``fuzz/regressions/<target>/``.
    ``run_bounded.py`` writes a finding there; once the bug is fixed the file is
    committed and every later suite run replays it (``tests/test_fuzz_corpora.py``)."""
    stem = getattr(path_or_stem, "stem", path_or_stem)
    return REGRESSIONS_DIR / stem


def read_regressions(path_or_stem) -> list[tuple[str, bytes]]:
    d = regressions_dir(path_or_stem)
    if not d.is_dir():
        return []
    return [(f"regression/{p.name}", p.read_bytes()) for p in sorted(d.iterdir())
            if p.is_file() and not p.name.startswith(".")]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    """One to four random edits of ``data`` (flip, insert, delete, duplicate, splice
    with another corpus entry, overwrite with an interesting token)."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        n = len(b)
        if op == 0 and n:
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b.insert(rng.randint(0, n), rng.randrange(256))
        elif op == 2 and n:
            i = rng.randrange(n)
            del b[i:i + rng.randint(1, 8)]
        elif op == 3 and n:
            i = rng.randrange(n)
            j = min(n, i + rng.randint(1, 32))
            b[i:i] = b[i:j] * rng.randint(1, 4)
        elif op == 4 and pool:
            other = rng.choice(pool)
            if other:
                i = rng.randrange(len(other))
                b[rng.randint(0, n):rng.randint(0, n)] = other[i:i + rng.randint(1, 64)]
        elif op == 5:
            tok = rng.choice(INTERESTING)
            i = rng.randint(0, n)
            b[i:i + rng.randint(0, len(tok))] = tok
        elif op == 6 and n:
            b[rng.randrange(n)] = rng.choice(b"+-:$*_#,(!=%~|>;.\r\n0123456789?")
        elif op == 7 and n:
            i = rng.randrange(n)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    return bytes(b[:1 << 16])


def inputs(mod: ModuleType, seed: int, mutations: int) -> Iterator[tuple[str, bytes]]:
    """The corpus entries, then ``mutations`` seeded mutations of them."""
    corpus = read_corpus(mod)
    yield from corpus
    pool = [d for _, d in corpus] or [b""]
    rng = random.Random(seed)
    for i in range(mutations):
        yield f"mutation#{i}(seed={seed})", mutate(rng.choice(pool), rng, pool)


def run_one(mod: ModuleType, data: bytes) -> None:
    """Run one input. ``TestOneInput`` swallows the target's documented errors
    itself, so anything that escapes is a finding."""
    mod.TestOneInput(data)
