"""The regression corpus: failing tokens saved in a directory and replayed first."""

from __future__ import annotations

import hashlib
import os

from ..errors import LabError
from ..token import Token, decode


def _load_corpus(corpus: str, entry: str) -> list[tuple[str, Token]]:
    found = []
    if not os.path.isdir(corpus):
        return found
    for name in sorted(os.listdir(corpus)):
        if not name.endswith(".token"):
            continue
        with open(os.path.join(corpus, name), encoding="ascii", errors="replace") as f:
            text = f.read(1 << 20)
        try:
            tok = decode(text)
        except LabError:
            continue
        if tok.entry == entry:
            found.append((name, tok))
    return found


def save_token(corpus: str, token: str) -> str:
    """Save ``token`` in the corpus directory (file name from its hash); the path."""
    os.makedirs(corpus, exist_ok=True)
    name = hashlib.sha256(token.encode()).hexdigest()[:16] + ".token"
    path = os.path.join(corpus, name)
    if not os.path.exists(path):
        tmp = path + f".tmp{os.getpid()}"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(token + "\n")
        os.replace(tmp, path)
    return path
