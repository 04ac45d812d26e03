"""NKeys (NATS ed25519 identities) and credentials files, on ``cryptography``.

An NKey seed (``SU...`` for a user) is base32 of two prefix bytes, the 32-byte
ed25519 seed and a CRC-16/XMODEM (little-endian); a public key (``U...``) is base32 of
one prefix byte, the 32-byte public key and the CRC. The server sends a ``nonce`` in
INFO; the client proves it holds the seed by signing it (``sig``, base64url without
padding) and sends its public key (``nkey``) or its user JWT (``jwt``, from a
credentials file). Malformed seeds and files are a ``UsageError``/``AuthorizationError``
raised before connecting, never a half-sent CONNECT.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from .errors import AuthorizationError

__all__ = ["KeyPair", "encode_public", "encode_seed", "from_seed", "load_creds", "sign_nonce"]

PREFIX_SEED = 18 << 3      # 'S'
PREFIX_OPERATOR = 14 << 3  # 'O'
PREFIX_ACCOUNT = 0         # 'A'
PREFIX_USER = 20 << 3      # 'U'
_PUBLIC_PREFIXES = {PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER}


def crc16(data: bytes) -> int:
    """CRC-16/XMODEM (polynomial 0x1021, initial 0), as NATS uses."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _b32(raw: bytes) -> bytes:
    return base64.b32encode(raw).rstrip(b"=")


def _unb32(text: bytes) -> bytes:
    pad = (-len(text)) % 8
    return base64.b32decode(text + b"=" * pad)


def _with_crc(raw: bytes) -> bytes:
    return raw + crc16(raw).to_bytes(2, "little")


def encode_public(prefix: int, public: bytes) -> bytes:
    return _b32(_with_crc(bytes([prefix]) + public))


def encode_seed(prefix: int, seed: bytes) -> bytes:
    b1 = PREFIX_SEED | (prefix >> 5)
    b2 = (prefix & 31) << 3
    return _b32(_with_crc(bytes([b1, b2]) + seed))


class KeyPair:
    """An ed25519 key pair from an NKey seed."""

    def __init__(self, prefix: int, seed: bytes):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self.prefix = prefix
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self._seed = seed
        self.raw_public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_key(self) -> str:
        return encode_public(self.prefix, self.raw_public).decode()

    @property
    def seed(self) -> str:
        return encode_seed(self.prefix, self._seed).decode()

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    @classmethod
    def generate(cls, prefix: int = PREFIX_USER) -> KeyPair:
        return cls(prefix, os.urandom(32))


def from_seed(seed: str | bytes) -> KeyPair:
    """The key pair of an encoded seed (``SU...``, ``SA...``, ``SO...``); a malformed
    seed (bad base32, length, prefix or checksum) is an ``AuthorizationError``."""
    text = seed.encode() if isinstance(seed, str) else bytes(seed)
    text = text.strip()
    try:
        raw = _unb32(text)
    except (binascii.Error, ValueError):
        raise AuthorizationError("nats: NKey seed is not valid base32", code="bad_nkey") from None
    if len(raw) != 36 or crc16(raw[:-2]) != int.from_bytes(raw[-2:], "little"):
        raise AuthorizationError("nats: NKey seed has a bad length or checksum", code="bad_nkey")
    if raw[0] & 0xF8 != PREFIX_SEED:
        raise AuthorizationError("nats: not an NKey seed (prefix)", code="bad_nkey")
    prefix = ((raw[0] & 7) << 5) | ((raw[1] & 0xF8) >> 3)
    if prefix not in _PUBLIC_PREFIXES:
        raise AuthorizationError("nats: NKey seed of an unknown type", code="bad_nkey")
    return KeyPair(prefix, raw[2:34])


def sign_nonce(kp: KeyPair, nonce: str) -> str:
    """The ``sig`` field of CONNECT: base64url of the signature, no padding."""
    return base64.urlsafe_b64encode(kp.sign(nonce.encode())).rstrip(b"=").decode()


_BLOCK = re.compile(rb"-{3,}[^\n]*BEGIN[^\n]*-{3,}\s*\n\s*(\S+)\s*\n\s*-{3,}[^\n]*END[^\n]*-{3,}")


def load_creds(path: str | os.PathLike) -> tuple[str, KeyPair]:
    """``(jwt, key pair)`` from a ``.creds`` file (the user JWT block, then the user
    NKey seed block). A file without both blocks is an ``AuthorizationError``."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    blocks = _BLOCK.findall(data)
    if len(blocks) < 2:
        raise AuthorizationError(f"nats: {os.fspath(path)!r} is not a credentials file "
                                 "(needs a JWT block and an NKey seed block)", code="bad_creds")
    return blocks[0].decode("ascii", "replace"), from_seed(blocks[1])
