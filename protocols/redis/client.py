"""The blocking-style Redis client: ``Redis``, pipelines and MULTI/EXEC transactions.

Every command method is a plain blocking call and a *checkpoint*: it can be
cancelled, and it runs within the caller's deadline and budgets. Under the hood a
call checks a connection out of the pool (a ``lease`` obligation), writes the command,
reads the reply and hands the connection back.

Cancel-safety contract
----------------------
1. **No reply ever reaches the wrong caller.** A command cancelled (by ``cancel()``,
   a deadline, a budget, a lost race) after it was sent and before its reply was read
   leaves its connection *owing* a reply. Such a connection is never handed to
   another caller: it is closed, or — when the pool has a ``drain_timeout`` and the
   command is not a blocking one — its owed replies are read and dropped within that
   budget (inside the cancelled task's cleanup) and only then is it returned. A
   connection whose state is unknown (partial write, protocol error, EOF, an error in
   the middle of a pipeline) is closed, never reused. The invariant lives in
   ``Connection.pending`` and ``Lease.release`` (see ``connection.py``/``pool.py``),
   not in callers' care: this is the bug class of CVE-2023-28858/28859.
2. **A command that is not safe to repeat is never sent twice.** After a connection
   failure, only read-only commands (``commands.READ_ONLY``) are retried (once, on a
   fresh connection). A write whose outcome is unknown raises ``OutcomeUnknown``; a
   ``MOVED``/``ASK``/``NOSCRIPT`` reply means "not executed" and is safe to follow.
3. **Transactions are obligations.** ``tx.multi()`` reserves an obligation of kind
   ``transaction``; ``tx.exec()`` commits it (EXEC), ``tx.discard()``, an exception or
   a cancellation aborts it (DISCARD: the queued commands never run). Commands are
   queued on the client and written as one ``MULTI ... EXEC`` batch, so a transaction
   cut short never leaves a half-queued MULTI on a connection that is reused; if the
   connection breaks while the batch is being written it is closed, which makes the
   server discard the MULTI state.
4. **Blocking commands stay cancellable.** ``BLPOP``, ``XREAD BLOCK`` ... wait on the
   server; cancelling such a call closes its connection (the server notices and
   unblocks). An element the server popped for a caller that was cancelled in that
   instant is lost with the connection: use ``BLMOVE`` into a processing list where
   that matters.

Decoding: replies are ``bytes`` by default; ``decode_responses=True`` turns every
bulk/simple string (including map keys and set members) into ``str`` with
``encoding``/``encoding_errors``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import greenrt

from .commands import READ_ONLY, Commands
from .connection import Connection, ConnectionConfig
from .errors import (
    ExecAbortError,
    OutcomeUnknown,
    RedisConnectionError,
    ReplyError,
    WatchError,
)
from .pool import ConnectionPool, Lease
from .resp import Limits, encode_command

__all__ = ["Pipeline", "Redis", "Script", "Transaction", "parse_url"]


def parse_url(url: str) -> dict:
    """Parse ``redis://[[user]:password@]host[:port][/db][?opts]``, ``rediss://...``
    (TLS) or ``unix://[[user]:password@]/path[?db=N]`` into ``Redis`` keyword
    arguments. Query options: ``db``, ``protocol``, ``client_name``, ``decode_responses``,
    ``max_connections``, ``connect_timeout``, ``acquire_timeout``; for ``rediss://``
    also ``ssl_ca_certs`` (CA file) and ``ssl_cert_reqs=none`` (no verification)."""
    u = urlsplit(url)
    kw: dict[str, Any] = {}
    if u.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {u.scheme!r} (redis, rediss, unix)")
    if u.username:
        kw["username"] = unquote(u.username)
    if u.password is not None:
        kw["password"] = unquote(u.password)
    if u.scheme == "unix":
        kw["path"] = unquote(u.path)
    else:
        kw["host"] = u.hostname or "127.0.0.1"
        kw["port"] = u.port or 6379
        if u.path and u.path != "/":
            try:
                kw["db"] = int(u.path.lstrip("/"))
            except ValueError:
                raise ValueError(f"invalid database number in {url!r}") from None
        if u.scheme == "rediss":
            kw["tls"] = True
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    ints = ("db", "protocol", "max_connections")
    floats = ("connect_timeout", "acquire_timeout")
    for k, v in q.items():
        if k in ints:
            kw[k] = int(v)
        elif k in floats:
            kw[k] = float(v)
        elif k == "decode_responses":
            kw[k] = v.lower() in ("1", "true", "yes", "on")
        elif k == "client_name":
            kw[k] = v
        elif k == "ssl_ca_certs" and u.scheme == "rediss":
            kw["tls"] = {**(kw["tls"] if isinstance(kw["tls"], dict) else {}), "cafile": v}
        elif k == "ssl_cert_reqs" and u.scheme == "rediss":
            verify = v.lower() not in ("none", "optional")
            kw["tls"] = {**(kw["tls"] if isinstance(kw["tls"], dict) else {}), "verify": verify}
        else:
            raise ValueError(f"unknown Redis URL option {k!r}")
    return kw


class _Decoding:
    """bytes -> str conversion of replies (``decode_responses``)."""

    __slots__ = ("encoding", "errors")

    def __init__(self, encoding: str, errors: str):
        self.encoding = encoding
        self.errors = errors

    def __call__(self, v):
        t = type(v)
        if t is bytes or isinstance(v, bytes):
            return v.decode(self.encoding, self.errors)
        if t is list or t is tuple:
            return [self(x) for x in v]
        if t is dict:
            return {self._key(k): self(x) for k, x in v.items()}
        if t is set:
            return {self._key(x) for x in v}
        return v

    def _key(self, k):
        if isinstance(k, bytes):
            return k.decode(self.encoding, self.errors)
        if isinstance(k, tuple):
            return tuple(self._key(x) for x in k)
        return k


def _is_error(reply) -> bool:
    return isinstance(reply, ReplyError)


class Redis(Commands):
    """A Redis client over a bounded pool (see the module docstring).

    ``Redis(host, port, ...)`` or ``Redis.from_url(url)``. Use it from any number of
    tasks of one hub at once. ``close()`` (or ``with``) closes the pool.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, *, path: str | None = None,
                 db: int = 0, username: str | None = None, password: str | None = None,
                 client_name: str | None = None, protocol: int = 3,
                 decode_responses: bool = False, encoding: str = "utf-8",
                 encoding_errors: str = "strict", tls: Any = None,
                 server_hostname: str | None = None, max_connections: int = 50,
                 acquire_timeout: float | None = None, connect_timeout: float | None = 10.0,
                 health_check_interval: float | None = 30.0,
                 max_lifetime: float | None = None, drain_timeout: float = 0.0,
                 retries: int = 1, limits: Limits | None = None,
                 pool: ConnectionPool | None = None):
        if tls is True:
            tls = _default_tls_config()
        elif isinstance(tls, dict):  # from a rediss:// URL's query options
            tls = _default_tls_config(**tls)
        self.config = ConnectionConfig(
            host=host, port=port, path=path, username=username, password=password, db=db,
            client_name=client_name, protocol=protocol, connect_timeout=connect_timeout,
            tls=tls, server_hostname=server_hostname, limits=limits or Limits())
        self.pool = pool or ConnectionPool(
            self.config, max_connections=max_connections, acquire_timeout=acquire_timeout,
            health_check_interval=health_check_interval, max_lifetime=max_lifetime,
            drain_timeout=drain_timeout)
        self.retries = retries
        self.decode_responses = decode_responses
        self._decode = _Decoding(encoding, encoding_errors) if decode_responses else None

    @classmethod
    def from_url(cls, url: str, **overrides) -> Redis:
        """Build a client from ``redis://``, ``rediss://`` or ``unix://`` URL."""
        kw = parse_url(url)
        kw.update(overrides)
        return cls(**kw)

    # -- running commands -----------------------------------------------------------------

    def execute(self, *args, idempotent: bool | None = None, blocking: bool = False) -> Any:
        """Run any command; return its reply (error replies are raised as
        ``ReplyError`` subclasses). A checkpoint. ``idempotent`` overrides whether
        the command may be retried after a connection failure (default: read-only
        commands only); ``blocking`` marks server-side blocking commands."""
        return self._run(list(args), None, blocking, idempotent)

    def execute_command(self, *args, **options) -> Any:
        """redis-py's name for :meth:`execute` (``r.execute_command("SET", "k", 1)``).
        A checkpoint. redis-py's per-call options are not supported: passing any
        raises ``TypeError`` naming :meth:`execute`'s ``idempotent``/``blocking``."""
        if options:
            raise TypeError(f"execute_command() takes no options ({', '.join(options)}); "
                            "use Redis.execute(*args, idempotent=..., blocking=...)")
        return self._run(list(args), None, False, None)

    def _command(self, args, callback=None, blocking: bool = False):
        return self._run(args, callback, blocking, None)

    def _run(self, args, callback, blocking, idempotent):
        data = encode_command(args)  # DataError before anything is checked out
        attempt = 0
        while True:
            lease = self.pool.acquire(_stacklevel=3)
            conn = lease.conn
            try:
                conn.send(data, 1)
                reply = conn.read_reply()
            except RedisConnectionError as e:
                lease.release()
                if not self._may_retry(args, idempotent, blocking, attempt):
                    if _is_write(args, idempotent):
                        raise OutcomeUnknown(
                            f"{_name(args)}: connection lost after the command was sent; it "
                            f"may or may not have run, and is not retried ({e})",
                            _name(args)) from e
                    raise
                attempt += 1
                continue
            except BaseException:
                self._release_after_interrupt(lease, blocking)
                raise
            lease.release()
            break
        if _is_error(reply):
            raise reply
        if self._decode is not None:
            reply = self._decode(reply)
        return reply if callback is None else callback(reply)

    def _may_retry(self, args, idempotent, blocking, attempt) -> bool:
        if blocking or attempt >= self.retries:
            return False
        if idempotent is not None:
            return idempotent
        return _name_bytes(args) in READ_ONLY

    def _release_after_interrupt(self, lease: Lease, blocking: bool) -> None:
        """The caller was interrupted (cancelled, timed out, failed) with the lease out.
        Drain owed replies if allowed, then release (which closes an unusable
        connection). Runs inside the caller's cancellation cleanup."""
        conn = lease.conn
        t = self.pool.drain_timeout
        if conn.pending and t > 0 and not blocking and not conn.dead:
            if conn.drain(t):
                self.pool.count("drained")
        lease.release()

    # -- pipelines and transactions -------------------------------------------------------

    def pipeline(self, *, transaction: bool = False) -> Pipeline:
        """A batch of commands sent in one write and read back in order
        (``transaction=True`` wraps it in MULTI/EXEC)."""
        if transaction:
            return Transaction(self)
        return Pipeline(self)

    def transaction(self, *watch_keys, value_from_callable: bool = False,
                    watch_delay: float | None = None, shard_hint=None):
        """A MULTI/EXEC transaction on a pinned connection, optionally WATCHing keys:

            with r.transaction("counter") as tx:
                n = int(tx.get("counter") or 0)   # runs now (the key is watched)
                tx.multi()                         # reserve the transaction obligation
                tx.set("counter", n + 1)           # queued
                tx.exec()                          # commit; WatchError on a conflict

        redis-py's form works too: ``r.transaction(fn, "k1", "k2")`` runs ``fn(tx)``
        until it commits without a WATCH conflict (retrying, ``watch_delay`` seconds
        apart) and returns ``exec``'s results — or ``fn``'s value with
        ``value_from_callable=True`` (see :meth:`transact`). A checkpoint.
        """
        if watch_keys and callable(watch_keys[0]):
            fn, keys = watch_keys[0], watch_keys[1:]
            return self.transact(fn, *keys, value_from_callable=value_from_callable,
                                 watch_delay=watch_delay)
        tx = Transaction(self)
        if watch_keys:
            tx.watch(*watch_keys)
        return tx

    def transact(self, fn, *watch_keys, retries: int = 10, value_from_callable: bool = False,
                 watch_delay: float | None = None):
        """Run ``fn(tx)`` in a WATCH transaction until it commits without a conflict
        (at most ``retries`` attempts, ``watch_delay`` seconds apart; the last
        ``WatchError`` is raised). ``fn`` calls ``tx.multi()`` and queues commands;
        ``transact`` calls ``exec``. Returns ``exec``'s results, or ``fn``'s return
        value with ``value_from_callable=True``. A checkpoint."""
        for attempt in range(retries):
            with self.transaction(*watch_keys) as tx:
                value = fn(tx)
                try:
                    results = tx.exec()
                except WatchError:
                    if attempt == retries - 1:
                        raise
                    if watch_delay:
                        greenrt.sleep(watch_delay)
                    continue
                return value if value_from_callable else results

    def pubsub(self, **kw):
        """A :class:`~protocols.redis.pubsub.PubSub` on its own connection."""
        from .pubsub import PubSub

        return PubSub(self, **kw)

    def register_script(self, script) -> Script:
        return Script(self, script)

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the pool. Not a checkpoint."""
        self.pool.close()

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Redis {self.config.address()} db={self.config.db}>"


def _name(args) -> str:
    a = args[0]
    return (a.decode("ascii", "replace") if isinstance(a, bytes) else str(a)).upper()


def _name_bytes(args) -> bytes:
    a = args[0]
    return (a if isinstance(a, bytes) else str(a).encode()).upper()


def _is_write(args, idempotent) -> bool:
    if idempotent is not None:
        return not idempotent
    return _name_bytes(args) not in READ_ONLY


def _default_tls_config(cafile: str | None = None, verify: bool = True):
    from greenrt.protocols import tls as _tls

    return _tls.client_context(cafile=cafile, verify=verify)


class Pipeline(Commands):
    """Commands queued locally and sent in one write; replies read back in order.

    Helpers return the pipeline (chainable); ``execute()`` runs the batch and returns
    one result per command (converted like the client's). Error replies are per
    command: with ``raise_on_error=True`` (default) the first one is raised after
    every reply was read (the connection stays clean), otherwise they are returned
    in place. A pipeline is never retried (it may contain writes); a cancellation or
    failure in the middle closes (or drains) the connection like a single command.
    """

    def __init__(self, client: Redis):
        self.client = client
        self._queue: list[tuple[list, Any, bool]] = []

    def _command(self, args, callback=None, blocking: bool = False):
        self._queue.append((args, callback, blocking))
        return self

    def execute_command(self, *args) -> Pipeline:
        """Queue any command."""
        return self._command(list(args))

    def __len__(self) -> int:
        return len(self._queue)

    def execute(self, *, raise_on_error: bool = True) -> list:
        """Send the batch, read every reply. A checkpoint."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        data = b"".join([encode_command(a) for a, _, _ in queue])
        blocking = any(b for _, _, b in queue)
        client = self.client
        lease = client.pool.acquire(_stacklevel=2)
        conn = lease.conn
        try:
            conn.send(data, len(queue))
            replies = [conn.read_reply() for _ in queue]
        except RedisConnectionError as e:
            lease.release()
            raise OutcomeUnknown(f"pipeline of {len(queue)} commands: connection lost ({e})",
                                 "PIPELINE") from e
        except BaseException:
            client._release_after_interrupt(lease, blocking)
            raise
        lease.release()
        return _convert_all(client, queue, replies, raise_on_error)

    def reset(self) -> None:
        self._queue = []

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.reset()


def _convert_all(client: Redis, queue, replies, raise_on_error: bool) -> list:
    out = []
    first_error = None
    dec = client._decode
    for (_, cb, _), r in zip(queue, replies, strict=True):
        if _is_error(r):
            first_error = first_error or r
            out.append(r)
            continue
        if dec is not None:
            r = dec(r)
        out.append(cb(r) if cb is not None else r)
    if first_error is not None and raise_on_error:
        raise first_error
    return out


class Transaction(Commands):
    """MULTI/EXEC with optional WATCH, on one pinned connection (see the module
    docstring, point 3). Before ``multi()`` helpers run at once (reads of watched
    keys); after it they are queued and return the transaction.
    """

    def __init__(self, client: Redis):
        self.client = client
        self._lease: Lease | None = None
        self._queue: list[tuple[list, Any, bool]] = []
        self._ob: greenrt.Obligation | None = None
        self._watching = False
        self._done = False

    # pinned connection ----------------------------------------------------------------

    def _conn(self) -> Connection:
        if self._lease is None:
            self._lease = self.client.pool.acquire(_stacklevel=4)
        return self._lease.conn

    def _immediate(self, args, callback=None, blocking=False):
        conn = self._conn()
        try:
            reply = conn.call(args)
        except BaseException:
            self._fail()
            raise
        if _is_error(reply):
            raise reply
        dec = self.client._decode
        if dec is not None:
            reply = dec(reply)
        return reply if callback is None else callback(reply)

    def _fail(self) -> None:
        """Give up the pinned connection after an interruption: it is closed (its
        WATCH state and any owed reply die with it)."""
        ob, self._ob = self._ob, None
        if ob is not None and ob.state == "reserved":
            ob.abort("transaction interrupted")
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.discard("transaction interrupted")
        self._done = True

    # API ------------------------------------------------------------------------------

    def watch(self, *keys) -> None:
        """WATCH keys (before ``multi``). A checkpoint."""
        if self._ob is not None:
            raise greenrt.InvalidStateError("WATCH inside MULTI")
        self._immediate(["WATCH", *keys])
        self._watching = True
        self._lease.conn.watching = True

    def unwatch(self) -> None:
        self._immediate(["UNWATCH"])
        self._watching = False
        self._lease.conn.watching = False

    def multi(self) -> Transaction:
        """Start queueing; reserves the ``transaction`` obligation. Not a checkpoint."""
        if self._ob is not None:
            raise greenrt.InvalidStateError("MULTI called twice")
        if self._done:
            raise greenrt.InvalidStateError("transaction already finished")
        self._ob = greenrt.reserve("transaction", name="redis MULTI/EXEC", stacklevel=2)
        return self

    def _command(self, args, callback=None, blocking: bool = False):
        if self._ob is None:
            if self._watching:
                return self._immediate(args, callback, blocking)
            self.multi()  # pipeline(transaction=True): queue from the start
        self._queue.append((args, callback, blocking))
        return self

    def execute_command(self, *args):
        return self._command(list(args))

    def exec(self, *, raise_on_error: bool = True) -> list:
        """Commit: send ``MULTI``, the queued commands and ``EXEC`` in one write and
        return one result per queued command. A checkpoint.

        Raises ``WatchError`` if a watched key changed (nothing ran),
        ``ExecAbortError`` if the server rejected a queued command (nothing ran),
        ``OutcomeUnknown`` if the connection broke after the batch was sent. The
        obligation is committed once the whole batch (EXEC last) has been written;
        a cancellation or failure before that aborts it (nothing ran: an incomplete
        write never delivers EXEC, and the connection is closed). Errors of individual commands inside a successful EXEC are raised
        (first one) after all results are read, or returned with
        ``raise_on_error=False``.
        """
        if self._ob is None:
            self.multi()
        if self._done:
            raise greenrt.InvalidStateError("transaction already finished")
        queue, self._queue = self._queue, []
        data = b"".join([encode_command(["MULTI"])] + [encode_command(a) for a, _, _ in queue]
                        + [encode_command(["EXEC"])])
        conn = self._conn()
        ob, self._ob = self._ob, None
        self._done = True
        try:
            conn.send(data, len(queue) + 2)
        except BaseException as e:
            # EXEC is the last command of the batch: a write that did not complete
            # never delivered a whole EXEC, so nothing ran. Abort = DISCARD (closing
            # the connection makes the server drop the MULTI queue).
            ob.abort(e)
            self._fail()
            raise
        ob.commit()  # the whole batch, EXEC included, is on the wire: it will run
        try:
            replies = [conn.read_reply() for _ in range(len(queue) + 2)]
        except RedisConnectionError as e:
            self._fail()
            raise OutcomeUnknown(f"EXEC of {len(queue)} commands: connection lost ({e})",
                                 "EXEC") from e
        except BaseException:
            self._fail()
            raise
        conn.watching = False  # EXEC always clears WATCH
        self._watching = False
        self._release()
        result = replies[-1]
        if _is_error(result):
            if isinstance(result, ExecAbortError):
                queued_errors = [r for r in replies[1:-1] if _is_error(r)]
                if queued_errors:
                    result.add_note(f"first rejected command: {queued_errors[0].message}")
            raise result
        if result is None:
            raise WatchError("watched key changed; transaction not executed")
        return _convert_all(self.client, queue, result, raise_on_error)

    execute = exec

    def discard(self) -> None:
        """Abort: drop the queued commands (DISCARD) and release WATCH. Not a
        checkpoint unless keys are watched (then UNWATCH is sent)."""
        self._queue = []
        ob, self._ob = self._ob, None
        if ob is not None and ob.state == "reserved":
            ob.abort("discarded")
        if self._watching and self._lease is not None:
            try:
                self.unwatch()
            except ReplyError:
                self._fail()
                return
        self._done = True
        self._release()

    def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, etype, exc, tb) -> None:
        if exc is not None:
            # Any exception (Cancelled included): abort; the pinned connection is
            # closed, which drops WATCH and anything owed in one step.
            self._queue = []
            self._fail()
            return
        if self._ob is not None and self._queue:
            self._queue = []
            self._fail()
            raise greenrt.InvalidStateError(
                "transaction block left with queued commands and no exec()/discard()")
        if self._ob is not None:
            ob, self._ob = self._ob, None
            ob.abort("nothing queued")
        if self._watching:
            self.discard()
        self._release()


class Script:
    """A Lua script run by EVALSHA, loading it with EVAL on ``NOSCRIPT`` (which means
    it did not run, so this is never a double execution)."""

    def __init__(self, client, script):
        import hashlib

        self.client = client
        self.script = script.encode() if isinstance(script, str) else script
        self.sha = hashlib.sha1(self.script).hexdigest()

    def __call__(self, keys=(), args=()):
        from .errors import NoScriptError

        keys, args = list(keys), list(args)
        try:
            return self.client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return self.client.eval(self.script, len(keys), *keys, *args)
