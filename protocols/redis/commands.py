"""Typed helpers for common Redis commands, shared by the client, pipelines and
transactions.

Every helper builds the argument list and names a *reply callback* that turns the raw
reply (RESP2 or RESP3; ``bytes`` or ``str`` after the client's decoding) into one
stable Python shape, so code does not depend on the protocol version: ``hgetall`` is
always a ``dict``, ``zrange(..., withscores=True)`` a list of ``(member, float)``,
``xread`` a ``{stream: [(id, {field: value})]}``.

The mixin calls ``self._command(args, callback, blocking=False)``: the client runs it
and returns the converted reply, a pipeline or transaction queues it and returns
itself. Commands that block on the server (``BLPOP``, ``XREAD BLOCK`` ...) pass
``blocking=True``: if such a call is cancelled, its connection is closed rather than
drained (the reply may never come).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

#: Commands that never change data: safe to send again after a connection failure.
READ_ONLY = frozenset(
    b"""GET MGET EXISTS TTL PTTL TYPE STRLEN GETRANGE HGET HMGET HGETALL HKEYS HVALS HLEN
    HEXISTS HSTRLEN LRANGE LLEN LINDEX SMEMBERS SISMEMBER SMISMEMBER SCARD SRANDMEMBER SINTER
    SUNION SDIFF ZRANGE ZRANGEBYSCORE ZREVRANGE ZREVRANGEBYSCORE ZSCORE ZMSCORE ZCARD ZRANK
    ZREVRANK ZCOUNT ZLEXCOUNT KEYS SCAN HSCAN SSCAN ZSCAN PING ECHO DBSIZE INFO TIME XRANGE
    XREVRANGE XLEN XINFO PFCOUNT GETBIT BITCOUNT BITPOS LPOS OBJECT EXPIRETIME PEXPIRETIME
    RANDOMKEY DUMP CLUSTER COMMAND""".split())


def _ok(r):
    return r == b"OK" or r == "OK"


def _bool(r):
    return bool(r)


def _ok_or_none(r):
    # SET with NX/XX: OK -> True, nil -> False; SET ... GET: the old value
    if r is None:
        return False
    return True if _ok(r) else r


def _float_or_none(r):
    return None if r is None else float(r)


def _pairs(r):
    if r is None:
        return {}
    if isinstance(r, dict):
        return r
    it = iter(r)
    return dict(zip(it, it, strict=True))


def _set(r):
    return r if isinstance(r, set) else set(r or ())


def _scored(r):
    """ZRANGE WITHSCORES: RESP2 flat [m, s, m, s], RESP3 [[m, s], ...]."""
    if not r:
        return []
    if isinstance(r[0], list):
        return [(m, float(s)) for m, s in r]
    it = iter(r)
    return [(m, float(s)) for m, s in zip(it, it, strict=True)]


def _zpop(r):
    if not r:
        return []
    if isinstance(r[0], list):
        return [(m, float(s)) for m, s in r]
    it = iter(r)
    return [(m, float(s)) for m, s in zip(it, it, strict=True)]


def _bzpop(r):
    if r is None:
        return None
    key, member, score = r
    return key, member, float(score)


def _tuple_or_none(r):
    return None if r is None else tuple(r)


def _scan(r):
    cursor, items = r
    return int(cursor), items


def _hscan(r):
    cursor, items = r
    return int(cursor), _pairs(items)


def _entries(r):
    """XRANGE-style: [[id, [f, v, ...]], ...] -> [(id, {f: v})]."""
    if not r:
        return []
    return [(e[0], _pairs(e[1])) for e in r if e is not None]


def _xread(r):
    """XREAD/XREADGROUP: RESP2 [[stream, entries], ...] or RESP3 {stream: entries}."""
    if r is None:
        return {}
    items = r.items() if isinstance(r, dict) else ((s, e) for s, e in r)
    return {s: _entries(e) for s, e in items}


def _sha(r):
    return r.decode() if isinstance(r, bytes) else r


def _info(r):
    text = r.decode("utf-8", "replace") if isinstance(r, bytes) else r
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        out[k] = v
    return out


def _bool_list(r):
    return [bool(x) for x in r]


class Commands:
    """The typed helpers. Subclasses implement ``_command(args, callback, blocking)``."""

    def _command(self, args: list, callback=None, blocking: bool = False) -> Any:
        raise NotImplementedError

    # -- connection / server -------------------------------------------------------------

    def ping(self):
        """PING -> True."""
        return self._command(["PING"], lambda r: r in (b"PONG", "PONG"))

    def echo(self, value):
        return self._command(["ECHO", value])

    def info(self, section: str | None = None) -> dict:
        """INFO -> dict of the ``key:value`` lines."""
        return self._command(["INFO"] + ([section] if section else []), _info)

    def dbsize(self) -> int:
        return self._command(["DBSIZE"])

    def flushdb(self) -> bool:
        return self._command(["FLUSHDB"], _ok)

    def flushall(self) -> bool:
        return self._command(["FLUSHALL"], _ok)

    def time(self) -> tuple[int, int]:
        return self._command(["TIME"], lambda r: (int(r[0]), int(r[1])))

    def client_id(self) -> int:
        return self._command(["CLIENT", "ID"])

    def client_getname(self):
        return self._command(["CLIENT", "GETNAME"])

    def config_get(self, pattern: str) -> dict:
        return self._command(["CONFIG", "GET", pattern], _pairs)

    def config_set(self, name: str, value) -> bool:
        return self._command(["CONFIG", "SET", name, value], _ok)

    def publish(self, channel, message) -> int:
        """PUBLISH -> number of subscribers that received it."""
        return self._command(["PUBLISH", channel, message])

    def spublish(self, channel, message) -> int:
        return self._command(["SPUBLISH", channel, message])

    # -- strings ------------------------------------------------------------------------

    def get(self, key):
        """GET -> value or None."""
        return self._command(["GET", key])

    def set(self, key, value, *, ex: float | None = None, px: int | None = None,
            nx: bool = False, xx: bool = False, keepttl: bool = False, get: bool = False):
        """SET -> True, or False when NX/XX prevented it; with ``get=True`` the old
        value (or None)."""
        args = ["SET", key, value]
        if ex is not None:
            args += ["EX", int(ex)]
        if px is not None:
            args += ["PX", int(px)]
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        if keepttl:
            args.append("KEEPTTL")
        if get:
            args.append("GET")
            return self._command(args)
        return self._command(args, _ok_or_none)

    def setnx(self, key, value) -> bool:
        return self._command(["SETNX", key, value], _bool)

    def setex(self, key, seconds: int, value) -> bool:
        return self._command(["SETEX", key, int(seconds), value], _ok)

    def mget(self, *keys) -> list:
        return self._command(["MGET", *keys])

    def mset(self, mapping: Mapping) -> bool:
        args: list = ["MSET"]
        for k, v in mapping.items():
            args += [k, v]
        return self._command(args, _ok)

    def getdel(self, key):
        return self._command(["GETDEL", key])

    def getset(self, key, value):
        return self._command(["SET", key, value, "GET"])

    def incr(self, key) -> int:
        return self._command(["INCR", key])

    def incrby(self, key, amount: int) -> int:
        return self._command(["INCRBY", key, amount])

    def incrbyfloat(self, key, amount: float) -> float:
        return self._command(["INCRBYFLOAT", key, amount], float)

    def decr(self, key) -> int:
        return self._command(["DECR", key])

    def decrby(self, key, amount: int) -> int:
        return self._command(["DECRBY", key, amount])

    def append(self, key, value) -> int:
        return self._command(["APPEND", key, value])

    def strlen(self, key) -> int:
        return self._command(["STRLEN", key])

    def getrange(self, key, start: int, end: int):
        return self._command(["GETRANGE", key, start, end])

    def setrange(self, key, offset: int, value) -> int:
        return self._command(["SETRANGE", key, offset, value])

    # -- keys ---------------------------------------------------------------------------

    def delete(self, *keys) -> int:
        return self._command(["DEL", *keys])

    def unlink(self, *keys) -> int:
        return self._command(["UNLINK", *keys])

    def exists(self, *keys) -> int:
        return self._command(["EXISTS", *keys])

    def expire(self, key, seconds: int) -> bool:
        return self._command(["EXPIRE", key, int(seconds)], _bool)

    def pexpire(self, key, ms: int) -> bool:
        return self._command(["PEXPIRE", key, int(ms)], _bool)

    def expireat(self, key, when: int) -> bool:
        return self._command(["EXPIREAT", key, int(when)], _bool)

    def persist(self, key) -> bool:
        return self._command(["PERSIST", key], _bool)

    def ttl(self, key) -> int:
        """TTL -> seconds; -1 no expiry, -2 no key."""
        return self._command(["TTL", key])

    def pttl(self, key) -> int:
        return self._command(["PTTL", key])

    def type(self, key):
        return self._command(["TYPE", key])

    def rename(self, src, dst) -> bool:
        return self._command(["RENAME", src, dst], _ok)

    def keys(self, pattern="*") -> list:
        return self._command(["KEYS", pattern])

    def scan(self, cursor: int = 0, *, match=None, count: int | None = None,
             type: str | None = None) -> tuple[int, list]:
        args: list = ["SCAN", cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        if type is not None:
            args += ["TYPE", type]
        return self._command(args, _scan)

    def scan_iter(self, *, match=None, count: int | None = None,
                  type: str | None = None) -> Iterator:
        """Iterate over every key (SCAN until the cursor is 0). Each step is a
        blocking call (a checkpoint)."""
        cursor = 0
        while True:
            cursor, keys = self.scan(cursor, match=match, count=count, type=type)
            yield from keys
            if cursor == 0:
                return

    # -- hashes -------------------------------------------------------------------------

    def hset(self, key, field=None, value=None, *, mapping: Mapping | None = None) -> int:
        args: list = ["HSET", key]
        if field is not None:
            args += [field, value]
        for f, v in (mapping or {}).items():
            args += [f, v]
        return self._command(args)

    def hsetnx(self, key, field, value) -> bool:
        return self._command(["HSETNX", key, field, value], _bool)

    def hget(self, key, field):
        return self._command(["HGET", key, field])

    def hmget(self, key, *fields) -> list:
        return self._command(["HMGET", key, *fields])

    def hgetall(self, key) -> dict:
        return self._command(["HGETALL", key], _pairs)

    def hdel(self, key, *fields) -> int:
        return self._command(["HDEL", key, *fields])

    def hexists(self, key, field) -> bool:
        return self._command(["HEXISTS", key, field], _bool)

    def hincrby(self, key, field, amount: int = 1) -> int:
        return self._command(["HINCRBY", key, field, amount])

    def hincrbyfloat(self, key, field, amount: float) -> float:
        return self._command(["HINCRBYFLOAT", key, field, amount], float)

    def hkeys(self, key) -> list:
        return self._command(["HKEYS", key])

    def hvals(self, key) -> list:
        return self._command(["HVALS", key])

    def hlen(self, key) -> int:
        return self._command(["HLEN", key])

    def hscan(self, key, cursor: int = 0, *, match=None, count: int | None = None):
        args: list = ["HSCAN", key, cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        return self._command(args, _hscan)

    # -- lists --------------------------------------------------------------------------

    def lpush(self, key, *values) -> int:
        return self._command(["LPUSH", key, *values])

    def rpush(self, key, *values) -> int:
        return self._command(["RPUSH", key, *values])

    def lpop(self, key, count: int | None = None):
        return self._command(["LPOP", key] + ([count] if count is not None else []))

    def rpop(self, key, count: int | None = None):
        return self._command(["RPOP", key] + ([count] if count is not None else []))

    def lrange(self, key, start: int, end: int) -> list:
        return self._command(["LRANGE", key, start, end])

    def llen(self, key) -> int:
        return self._command(["LLEN", key])

    def lindex(self, key, index: int):
        return self._command(["LINDEX", key, index])

    def lset(self, key, index: int, value) -> bool:
        return self._command(["LSET", key, index, value], _ok)

    def lrem(self, key, count: int, value) -> int:
        return self._command(["LREM", key, count, value])

    def ltrim(self, key, start: int, end: int) -> bool:
        return self._command(["LTRIM", key, start, end], _ok)

    def lmove(self, src, dst, wherefrom: str = "LEFT", whereto: str = "RIGHT"):
        return self._command(["LMOVE", src, dst, wherefrom, whereto])

    def blpop(self, keys, timeout: float = 0):
        """BLPOP -> (key, value) or None on server timeout. Blocks on the server; a
        cancelled call closes its connection (see the cancel-safety contract: an
        element the server popped for a cancelled caller is lost; use ``blmove``
        into a processing list when that matters)."""
        keys = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        return self._command(["BLPOP", *keys, timeout], _tuple_or_none, blocking=True)

    def brpop(self, keys, timeout: float = 0):
        keys = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        return self._command(["BRPOP", *keys, timeout], _tuple_or_none, blocking=True)

    def blmove(self, src, dst, timeout: float = 0, wherefrom: str = "LEFT",
               whereto: str = "RIGHT"):
        return self._command(["BLMOVE", src, dst, wherefrom, whereto, timeout], blocking=True)

    # -- sets ---------------------------------------------------------------------------

    def sadd(self, key, *members) -> int:
        return self._command(["SADD", key, *members])

    def srem(self, key, *members) -> int:
        return self._command(["SREM", key, *members])

    def smembers(self, key) -> set:
        return self._command(["SMEMBERS", key], _set)

    def sismember(self, key, member) -> bool:
        return self._command(["SISMEMBER", key, member], _bool)

    def smismember(self, key, *members) -> list[bool]:
        return self._command(["SMISMEMBER", key, *members], _bool_list)

    def scard(self, key) -> int:
        return self._command(["SCARD", key])

    def spop(self, key, count: int | None = None):
        if count is None:
            return self._command(["SPOP", key])
        return self._command(["SPOP", key, count], _set)

    def srandmember(self, key, count: int | None = None):
        return self._command(["SRANDMEMBER", key] + ([count] if count is not None else []))

    def sinter(self, *keys) -> set:
        return self._command(["SINTER", *keys], _set)

    def sunion(self, *keys) -> set:
        return self._command(["SUNION", *keys], _set)

    def sdiff(self, *keys) -> set:
        return self._command(["SDIFF", *keys], _set)

    def smove(self, src, dst, member) -> bool:
        return self._command(["SMOVE", src, dst, member], _bool)

    # -- sorted sets --------------------------------------------------------------------

    def zadd(self, key, mapping: Mapping, *, nx: bool = False, xx: bool = False,
             gt: bool = False, lt: bool = False, ch: bool = False) -> int:
        args: list = ["ZADD", key]
        for flag, name in ((nx, "NX"), (xx, "XX"), (gt, "GT"), (lt, "LT"), (ch, "CH")):
            if flag:
                args.append(name)
        for member, score in mapping.items():
            args += [score, member]
        return self._command(args)

    def zrem(self, key, *members) -> int:
        return self._command(["ZREM", key, *members])

    def zscore(self, key, member) -> float | None:
        return self._command(["ZSCORE", key, member], _float_or_none)

    def zincrby(self, key, amount: float, member) -> float:
        return self._command(["ZINCRBY", key, amount, member], float)

    def zcard(self, key) -> int:
        return self._command(["ZCARD", key])

    def zcount(self, key, min, max) -> int:
        return self._command(["ZCOUNT", key, min, max])

    def zrank(self, key, member) -> int | None:
        return self._command(["ZRANK", key, member])

    def zrevrank(self, key, member) -> int | None:
        return self._command(["ZREVRANK", key, member])

    def zrange(self, key, start: int, end: int, *, withscores: bool = False,
               desc: bool = False) -> list:
        args: list = ["ZRANGE", key, start, end]
        if desc:
            args.append("REV")
        if withscores:
            args.append("WITHSCORES")
            return self._command(args, _scored)
        return self._command(args)

    def zrevrange(self, key, start: int, end: int, *, withscores: bool = False) -> list:
        return self.zrange(key, start, end, withscores=withscores, desc=True)

    def zrangebyscore(self, key, min, max, *, withscores: bool = False,
                      offset: int | None = None, count: int | None = None) -> list:
        args: list = ["ZRANGEBYSCORE", key, min, max]
        if withscores:
            args.append("WITHSCORES")
        if offset is not None:
            args += ["LIMIT", offset, count if count is not None else -1]
        return self._command(args, _scored if withscores else None)

    def zremrangebyscore(self, key, min, max) -> int:
        return self._command(["ZREMRANGEBYSCORE", key, min, max])

    def zpopmin(self, key, count: int | None = None) -> list:
        return self._command(["ZPOPMIN", key] + ([count] if count else []), _zpop)

    def zpopmax(self, key, count: int | None = None) -> list:
        return self._command(["ZPOPMAX", key] + ([count] if count else []), _zpop)

    def bzpopmin(self, keys, timeout: float = 0):
        keys = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        return self._command(["BZPOPMIN", *keys, timeout], _bzpop, blocking=True)

    # -- scripting ----------------------------------------------------------------------

    def eval(self, script, numkeys: int, *keys_and_args):
        return self._command(["EVAL", script, numkeys, *keys_and_args])

    def evalsha(self, sha, numkeys: int, *keys_and_args):
        return self._command(["EVALSHA", sha, numkeys, *keys_and_args])

    def script_load(self, script) -> str:
        return self._command(["SCRIPT", "LOAD", script], _sha)

    def script_exists(self, *shas) -> list[bool]:
        return self._command(["SCRIPT", "EXISTS", *shas], _bool_list)

    def script_flush(self) -> bool:
        return self._command(["SCRIPT", "FLUSH"], _ok)

    # -- streams ------------------------------------------------------------------------

    def xadd(self, name, fields: Mapping, *, id="*", maxlen: int | None = None,
             approximate: bool = True, nomkstream: bool = False):
        args: list = ["XADD", name]
        if nomkstream:
            args.append("NOMKSTREAM")
        if maxlen is not None:
            args += ["MAXLEN"] + (["~"] if approximate else []) + [maxlen]
        args.append(id)
        for f, v in fields.items():
            args += [f, v]
        return self._command(args)

    def xlen(self, name) -> int:
        return self._command(["XLEN", name])

    def xrange(self, name, min="-", max="+", count: int | None = None) -> list:
        args: list = ["XRANGE", name, min, max]
        if count is not None:
            args += ["COUNT", count]
        return self._command(args, _entries)

    def xrevrange(self, name, max="+", min="-", count: int | None = None) -> list:
        args: list = ["XREVRANGE", name, max, min]
        if count is not None:
            args += ["COUNT", count]
        return self._command(args, _entries)

    def xdel(self, name, *ids) -> int:
        return self._command(["XDEL", name, *ids])

    def xtrim(self, name, maxlen: int, approximate: bool = True) -> int:
        return self._command(["XTRIM", name, "MAXLEN"] + (["~"] if approximate else [])
                             + [maxlen])

    def xread(self, streams: Mapping, *, count: int | None = None,
              block: int | None = None) -> dict:
        """XREAD -> {stream: [(id, {field: value})]} ({} when nothing arrived).
        With ``block`` (milliseconds; 0 = forever) it blocks on the server and stays
        cancellable: a cancelled call closes its connection."""
        args: list = ["XREAD"]
        if count is not None:
            args += ["COUNT", count]
        if block is not None:
            args += ["BLOCK", block]
        args.append("STREAMS")
        args += list(streams.keys())
        args += list(streams.values())
        return self._command(args, _xread, blocking=block is not None)

    def xgroup_create(self, name, group, id="$", *, mkstream: bool = False) -> bool:
        args: list = ["XGROUP", "CREATE", name, group, id]
        if mkstream:
            args.append("MKSTREAM")
        return self._command(args, _ok)

    def xreadgroup(self, group, consumer, streams: Mapping, *, count: int | None = None,
                   block: int | None = None, noack: bool = False) -> dict:
        args: list = ["XREADGROUP", "GROUP", group, consumer]
        if count is not None:
            args += ["COUNT", count]
        if block is not None:
            args += ["BLOCK", block]
        if noack:
            args.append("NOACK")
        args.append("STREAMS")
        args += list(streams.keys())
        args += list(streams.values())
        return self._command(args, _xread, blocking=block is not None)

    def xack(self, name, group, *ids) -> int:
        return self._command(["XACK", name, group, *ids])
