"""Each auth variant against a real nats-server configured by the test: user/password
(options and URL), token, NKey (challenge signed with the seed), credentials file
(operator mode: operator, account and user JWTs issued here with ed25519), and TLS
with chain and host-name verification. Wrong credentials are an
``AuthorizationError`` at connect."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest

import greenrt
from greenrt.protocols import nats
from greenrt.protocols.nats import nkeys

pytestmark = pytest.mark.timeout(60)


def roundtrip(url, **kw):
    def main():
        with nats.connect(url, **kw) as nc:
            sub = nc.subscribe("auth.t")
            nc.flush()
            nc.publish("auth.t", b"ok")
            assert sub.next_msg(timeout=5).data == b"ok"
    greenrt.run(main)


def refused(url, **kw):
    def main():
        with pytest.raises(nats.AuthorizationError):
            with nats.connect(url, allow_reconnect=False, **kw):
                pass
    greenrt.run(main)


def test_user_password(nats_factory):
    srv = nats_factory('authorization { user: "alice", password: "s3cret" }', jetstream=False)
    roundtrip(srv.url, user="alice", password="s3cret")
    roundtrip(f"nats://alice:s3cret@127.0.0.1:{srv.port}")
    refused(srv.url, user="alice", password="wrong")
    refused(srv.url)


def test_token(nats_factory):
    srv = nats_factory('authorization { token: "tok-123" }', jetstream=False)
    roundtrip(srv.url, token="tok-123")
    roundtrip(f"nats://tok-123@127.0.0.1:{srv.port}")
    refused(srv.url, token="nope")


def test_nkey(nats_factory):
    kp = nkeys.KeyPair.generate(nkeys.PREFIX_USER)
    assert kp.public_key.startswith("U") and kp.seed.startswith("SU")
    assert nkeys.from_seed(kp.seed).public_key == kp.public_key
    srv = nats_factory(f'authorization {{ users: [ {{ nkey: "{kp.public_key}" }} ] }}',
                       jetstream=False)
    roundtrip(srv.url, nkey_seed=kp.seed)
    other = nkeys.KeyPair.generate(nkeys.PREFIX_USER)
    refused(srv.url, nkey_seed=other.seed)


def test_malformed_seed_is_refused_before_connecting():
    good = nkeys.KeyPair.generate().seed
    bad = good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1]
    for seed in (bad, "not base32 !!", "SU"):
        with pytest.raises(nats.AuthorizationError):
            nkeys.from_seed(seed)


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def issue_jwt(issuer: nkeys.KeyPair, subject: str, name: str, nats_claims: dict) -> str:
    header = {"typ": "JWT", "alg": "ed25519-nkey"}
    claims = {"iat": int(time.time()), "iss": issuer.public_key, "name": name, "sub": subject,
              "nats": nats_claims}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims).encode()).digest()) \
        .rstrip(b"=").decode()
    signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return signing + "." + _b64(issuer.sign(signing.encode()))


def test_credentials_file(nats_factory, tmp_path):
    op = nkeys.KeyPair.generate(nkeys.PREFIX_OPERATOR)
    acc = nkeys.KeyPair.generate(nkeys.PREFIX_ACCOUNT)
    user = nkeys.KeyPair.generate(nkeys.PREFIX_USER)
    op_jwt = issue_jwt(op, op.public_key, "op", {"type": "operator", "version": 2})
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
                 "wildcards": True, "conn": -1, "leaf": -1}
    acc_jwt = issue_jwt(op, acc.public_key, "acc",
                        {"type": "account", "version": 2, "limits": unlimited})
    user_jwt = issue_jwt(acc, user.public_key, "user",
                         {"type": "user", "version": 2, "subs": -1, "data": -1, "payload": -1})
    (tmp_path / "op.jwt").write_text(op_jwt)
    creds = tmp_path / "user.creds"
    creds.write_text(f"-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n"
                     "************************* IMPORTANT *************************\n\n"
                     f"-----BEGIN USER NKEY SEED-----\n{user.seed}\n------END USER NKEY SEED------\n")
    srv = nats_factory(f'operator: "{tmp_path / "op.jwt"}"\nresolver: MEMORY\n'
                       f'resolver_preload: {{ {acc.public_key}: "{acc_jwt}" }}\n', jetstream=False)
    roundtrip(srv.url, creds=str(creds))
    # the same JWT with another key's signature: refused by the server
    wrong = tmp_path / "wrong.creds"
    wrong.write_text(creds.read_text().replace(user.seed, nkeys.KeyPair.generate().seed))
    refused(srv.url, creds=str(wrong))
    junk = tmp_path / "junk.creds"
    junk.write_text("nothing here")
    refused(srv.url, creds=str(junk))


def test_tls_with_verification(nats_factory, tmp_path):
    import trustme

    from greenrt.protocols import tls

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    srv = nats_factory(f'tls {{ cert_file: "{tmp_path / "cert.pem"}", '
                       f'key_file: "{tmp_path / "key.pem"}" }}', jetstream=False)
    good = tls.client_context(cadata=ca.cert_pem.bytes())
    roundtrip(f"nats://localhost:{srv.port}", tls=good)
    # another CA: the handshake fails, typed
    other = tls.client_context(cadata=trustme.CA().cert_pem.bytes())

    def main():
        with pytest.raises(nats.NatsConnectionError, match="TLS"):
            with nats.connect(f"nats://localhost:{srv.port}", tls=other, allow_reconnect=False):
                pass
        # tls:// asks for TLS with the default context: trustme's CA is not trusted
        with pytest.raises(nats.NatsConnectionError, match="TLS"):
            with nats.connect(f"tls://localhost:{srv.port}", allow_reconnect=False):
                pass
        # a TLS-only server without tls=: a clear error, not a hang
        with pytest.raises(nats.NatsConnectionError, match="requires TLS"):
            with nats.connect(f"nats://localhost:{srv.port}", allow_reconnect=False):
                pass
    greenrt.run(main)
