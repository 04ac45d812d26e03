"""Redis Cluster: slot map, key hashing with hash tags, bounded MOVED/ASK handling,
pipelines split per node.

Job: route each command to the primary that owns its keys' hash slot
(``CRC16(key) mod 16384``, hashing only the ``{tag}`` part when the key has one), keep
the slot map current, and follow the cluster's redirects without ever executing a
command twice.

* **Slot map.** Loaded from ``CLUSTER SHARDS`` (Redis 7), falling back to ``CLUSTER
  SLOTS``, from any reachable known node. A ``MOVED`` reply updates the slot at once
  and schedules a full reload before the next command (topology change: nodes that
  left are closed, new ones get a pool).
* **Redirects are safe to follow.** ``MOVED`` and ``ASK`` mean "not executed here",
  so re-sending the command to the named node is not a repetition. ``ASK`` is
  followed once by ``ASKING`` + the command on one connection of the target (a
  two-command pipeline) and does not change the map. At most ``max_redirects``
  redirects per command (``TooManyRedirects``). ``TRYAGAIN`` (multi-key command during
  a migration) is retried after a short, bounded back-off.
* **Connection failures** follow the single-node rules (``client.py``): only
  read-only commands are retried, a write whose outcome is unknown raises
  ``OutcomeUnknown``; the slot map is reloaded either way.
* **Multi-key commands** must hash to one slot (``CrossSlotError`` before anything is
  sent). Keyless commands go to one primary, except ``FLUSHDB``/``FLUSHALL``/
  ``DBSIZE``/``KEYS``/``SCRIPT LOAD``/``SCRIPT FLUSH``, which run on every primary.
* **Pipelines** are split per node; the per-node batches run concurrently in a
  region (one task per node), results are put back in the caller's order, and
  commands answered with ``MOVED``/``ASK`` are re-routed individually.

Each node is an ordinary :class:`~protocols.redis.client.Redis` with its own bounded
pool, so the cancel-safety contract holds per node unchanged.
"""

from __future__ import annotations

from typing import Any

import greenrt

from .client import Pipeline, Redis, _name_bytes
from .commands import READ_ONLY, Commands
from .errors import (
    AskError,
    ClusterDownError,
    ClusterError,
    CrossSlotError,
    MovedError,
    OutcomeUnknown,
    RedisConnectionError,
    ReplyError,
    SlotNotCovered,
    TooManyRedirects,
    TryAgainError,
)

SLOTS = 16384

_CRC16_TABLE = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else (_c << 1)
    _CRC16_TABLE.append(_c & 0xFFFF)
del _i, _c


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), as Redis Cluster uses."""
    crc = 0
    tab = _CRC16_TABLE
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ tab[((crc >> 8) ^ b) & 0xFF]
    return crc


def _kbytes(key) -> bytes:
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    return str(key).encode()


def key_slot(key) -> int:
    """The hash slot of ``key``: only the part inside the first ``{...}`` is hashed when
    it is non-empty (hash tags put related keys in one slot)."""
    k = _kbytes(key)
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    return crc16(k) % SLOTS


_ALL_KEYS = frozenset(b"""MGET DEL EXISTS UNLINK TOUCH SINTER SUNION SDIFF SINTERSTORE
    SUNIONSTORE SDIFFSTORE WATCH PFCOUNT PFMERGE""".split())
_TWO_KEYS = frozenset(b"RENAME RENAMENX SMOVE LMOVE BLMOVE RPOPLPUSH BRPOPLPUSH COPY".split())
_BLOCKING_LAST = frozenset(b"BLPOP BRPOP BZPOPMIN BZPOPMAX".split())
_NO_KEYS = frozenset(b"""PING ECHO INFO DBSIZE FLUSHDB FLUSHALL KEYS SCAN TIME CLUSTER
    COMMAND CONFIG CLIENT SCRIPT PUBLISH RANDOMKEY WAIT MULTI EXEC DISCARD UNWATCH
    ASKING READONLY READWRITE""".split())
_FANOUT = frozenset(b"FLUSHDB FLUSHALL DBSIZE KEYS".split())


def command_keys(args) -> list:
    """The keys of a command (by a table of key positions; first argument otherwise)."""
    name = _name_bytes(args)
    if name in _NO_KEYS:
        return []
    if name in _ALL_KEYS:
        return list(args[1:])
    if name in (b"MSET", b"MSETNX"):
        return list(args[1::2])
    if name in (b"EVAL", b"EVALSHA", b"FCALL", b"FCALL_RO", b"EVAL_RO", b"EVALSHA_RO"):
        n = int(args[2])
        return list(args[3:3 + n])
    if name in (b"XREAD", b"XREADGROUP"):
        up = [_kbytes(a).upper() for a in args]
        i = up.index(b"STREAMS")
        rest = args[i + 1:]
        return list(rest[:len(rest) // 2])
    if name in _BLOCKING_LAST:
        return list(args[1:-1])
    if name in _TWO_KEYS:
        return list(args[1:3])
    return [args[1]] if len(args) > 1 else []


def command_slot(args) -> int | None:
    """The one slot a command's keys live in, ``None`` if it has no keys;
    ``CrossSlotError`` if they span several slots."""
    keys = command_keys(args)
    if not keys:
        return None
    slot = key_slot(keys[0])
    for k in keys[1:]:
        if key_slot(k) != slot:
            raise CrossSlotError(f"{_name_bytes(args).decode()}: keys in different slots")
    return slot


def _field(node, name: bytes):
    """A field of a CLUSTER SHARDS node description (RESP3 map or RESP2 flat list)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if _kbytes(k) == name:
                return v
        return None
    it = iter(node)
    for k, v in zip(it, it, strict=False):
        if _kbytes(k) == name:
            return v
    return None


class RedisCluster(Commands):
    """A Redis Cluster client (see the module docstring).

    ``startup_nodes``: ``[(host, port), ...]``; any one reachable node suffices.
    Other keyword arguments (``password``, ``protocol``, ``decode_responses``,
    ``max_connections`` per node, ``drain_timeout``...) are passed to each node's
    :class:`Redis`.
    """

    def __init__(self, startup_nodes, *, max_redirects: int = 5, tryagain_attempts: int = 5,
                 **node_kwargs):
        self.startup_nodes = [(h, int(p)) for h, p in startup_nodes]
        if not self.startup_nodes:
            raise ValueError("at least one startup node is needed")
        self.max_redirects = max_redirects
        self.tryagain_attempts = tryagain_attempts
        self.node_kwargs = node_kwargs
        self._nodes: dict[tuple[str, int], Redis] = {}
        self._slots: list[tuple[str, int] | None] = [None] * SLOTS
        self._loaded = False
        self._refresh_needed = True
        self._decode = None
        self.stats = {"moved": 0, "ask": 0, "tryagain": 0, "refreshes": 0}

    # -- nodes and the slot map -------------------------------------------------------------

    def node(self, host: str, port: int) -> Redis:
        """The client of one node (created on first use)."""
        key = (host, int(port))
        c = self._nodes.get(key)
        if c is None:
            c = self._nodes[key] = Redis(host, int(port), **self.node_kwargs)
            self._decode = c._decode
        return c

    @property
    def primaries(self) -> list[tuple[str, int]]:
        """The primaries of the current slot map, in slot order."""
        seen: dict = {}
        for n in self._slots:
            if n is not None:
                seen.setdefault(n, None)
        return list(seen)

    def refresh(self) -> None:
        """Reload the slot map from any reachable node. A checkpoint."""
        self.stats["refreshes"] += 1
        candidates = list(dict.fromkeys(self.primaries + list(self._nodes) + self.startup_nodes))
        last: BaseException | None = None
        for host, port in candidates:
            client = self.node(host, port)
            try:
                slots = self._load_from(client, host)
            except (RedisConnectionError, ReplyError) as e:
                last = e
                continue
            self._slots = slots
            self._loaded = True
            self._refresh_needed = False
            live = set(self.primaries)
            for key in list(self._nodes):
                if key not in live and key not in self.startup_nodes:
                    self._nodes.pop(key).close()
            return
        raise ClusterError(f"cannot load the slot map from any node ({last})") from last

    def _load_from(self, client: Redis, seed_host: str) -> list:
        slots: list = [None] * SLOTS
        try:
            shards = client.execute("CLUSTER", "SHARDS")
        except ReplyError:
            shards = None
        if shards is not None:
            for shard in shards:
                ranges = _field(shard, b"slots") or []
                owner = None
                for n in _field(shard, b"nodes") or []:
                    role = _kbytes(_field(n, b"role") or b"")
                    health = _kbytes(_field(n, b"health") or b"online")
                    if role == b"master" and health == b"online":
                        host = _field(n, b"endpoint") or _field(n, b"ip")
                        host = _kbytes(host).decode()
                        if host in ("?", ""):
                            host = seed_host
                        owner = (host, int(_field(n, b"port")))
                        break
                if owner is None:
                    continue
                for i in range(0, len(ranges) - 1, 2):
                    for s in range(int(ranges[i]), int(ranges[i + 1]) + 1):
                        slots[s] = owner
            return slots
        for entry in client.execute("CLUSTER", "SLOTS"):
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _kbytes(primary[0]).decode() or seed_host
            for s in range(start, end + 1):
                slots[s] = (host, int(primary[1]))
        return slots

    def _ensure_map(self) -> None:
        if self._refresh_needed or not self._loaded:
            self.refresh()

    def node_for_slot(self, slot: int) -> Redis:
        self._ensure_map()
        owner = self._slots[slot]
        if owner is None:
            raise SlotNotCovered(f"slot {slot} is not served by any node")
        return self.node(*owner)

    def node_for_key(self, key) -> Redis:
        return self.node_for_slot(key_slot(key))

    def _any_node(self) -> Redis:
        self._ensure_map()
        ps = self.primaries
        if not ps:
            raise SlotNotCovered("the slot map is empty")
        return self.node(*ps[0])

    # -- commands -----------------------------------------------------------------------------

    def execute(self, *args, idempotent: bool | None = None, blocking: bool = False):
        """Run any command on the node that owns its keys. A checkpoint."""
        return self._route(list(args), None, blocking, idempotent)

    def _command(self, args, callback=None, blocking: bool = False):
        return self._route(args, callback, blocking, None)

    def _route(self, args, callback, blocking, idempotent):
        name = _name_bytes(args)
        if name in _FANOUT or (name == b"SCRIPT" and len(args) > 1
                               and _name_bytes(args[1:]) in (b"LOAD", b"FLUSH")):
            return self._fanout(name, args, callback)
        slot = command_slot(args)
        client = self._any_node() if slot is None else self.node_for_slot(slot)
        redirects = 0
        tryagain = 0
        asking = False
        while True:
            try:
                if asking:
                    return self._ask(client, args, callback, blocking)
                return client._run(args, callback, blocking, idempotent)
            except MovedError as e:
                self.stats["moved"] += 1
                redirects += 1
                if redirects > self.max_redirects:
                    raise TooManyRedirects(f"{name.decode()}: more than {self.max_redirects} "
                                           f"redirects (last: {e.message})") from e
                if 0 <= e.slot < SLOTS:
                    self._slots[e.slot] = (e.host, e.port)
                self._refresh_needed = True
                client = self.node(e.host, e.port)
                asking = False
            except AskError as e:
                self.stats["ask"] += 1
                redirects += 1
                if redirects > self.max_redirects:
                    raise TooManyRedirects(f"{name.decode()}: more than {self.max_redirects} "
                                           f"redirects (last: {e.message})") from e
                client = self.node(e.host, e.port)
                asking = True
            except TryAgainError:
                self.stats["tryagain"] += 1
                tryagain += 1
                if tryagain > self.tryagain_attempts:
                    raise
                greenrt.sleep(0.01 * tryagain)
            except ClusterDownError:
                self._refresh_needed = True
                raise
            except OutcomeUnknown:
                self._refresh_needed = True
                raise
            except RedisConnectionError:
                # not sent, or a read-only command that already failed its retry
                self._refresh_needed = True
                raise

    def _ask(self, client: Redis, args, callback, blocking):
        p = client.pipeline()
        p.execute_command("ASKING")
        p._command(args, callback, blocking)
        _, result = p.execute(raise_on_error=False)
        if isinstance(result, ReplyError):
            raise result
        return result

    def _fanout(self, name: bytes, args, callback):
        self._ensure_map()
        results = [self.node(*n)._run(args, None, False, None) for n in self.primaries]
        if name == b"DBSIZE":
            return sum(results)
        if name == b"KEYS":
            return [k for r in results for k in r]
        r = results[0] if results else None
        return callback(r) if callback is not None else r

    # -- pipelines, transactions, pub/sub -----------------------------------------------------

    def pipeline(self) -> ClusterPipeline:
        return ClusterPipeline(self)

    def transaction(self, *watch_keys):
        """A MULTI/EXEC transaction on the node owning ``watch_keys[0]`` (every key the
        transaction touches must be in that slot; the server refuses others)."""
        if not watch_keys:
            raise ClusterError("a cluster transaction needs at least one key to route by")
        slots = {key_slot(k) for k in watch_keys}
        if len(slots) > 1:
            raise CrossSlotError("watched keys are in different slots")
        return self.node_for_slot(slots.pop()).transaction(*watch_keys)

    def pubsub(self, **kw):
        """A PubSub on one primary (classic pub/sub messages reach every node)."""
        return self._any_node().pubsub(**kw)

    def close(self) -> None:
        for c in self._nodes.values():
            c.close()
        self._nodes.clear()

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ClusterPipeline(Commands):
    """Commands grouped by node and sent as one pipeline per node, concurrently.
    ``execute()`` returns results in the caller's order; commands answered with
    ``MOVED``/``ASK`` are re-routed one by one (they did not run)."""

    def __init__(self, cluster: RedisCluster):
        self.cluster = cluster
        self._queue: list[tuple[list, Any, bool]] = []

    def _command(self, args, callback=None, blocking: bool = False):
        command_slot(args)  # CrossSlotError now, not at execute
        self._queue.append((args, callback, blocking))
        return self

    def execute_command(self, *args):
        return self._command(list(args))

    def __len__(self) -> int:
        return len(self._queue)

    def execute(self, *, raise_on_error: bool = True) -> list:
        """Run every queued command. A checkpoint."""
        queue, self._queue = self._queue, []
        if not queue:
            return []
        cl = self.cluster
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (args, _, _) in enumerate(queue):
            slot = command_slot(args)
            client = cl._any_node() if slot is None else cl.node_for_slot(slot)
            groups.setdefault((client.config.host, client.config.port), []).append(i)
        results: list = [None] * len(queue)

        def run_group(node, idxs):
            p = Pipeline(cl.node(*node))
            for i in idxs:
                p._queue.append(queue[i])
            for i, r in zip(idxs, p.execute(raise_on_error=False), strict=True):
                results[i] = r

        if len(groups) == 1:
            (node, idxs), = groups.items()
            run_group(node, idxs)
        else:
            with greenrt.region(name="redis-cluster-pipeline") as r:
                for node, idxs in groups.items():
                    r.spawn(run_group, node, idxs)
        first_error = None
        for i, res in enumerate(results):
            if isinstance(res, (MovedError, AskError)):
                args, cb, blocking = queue[i]
                if isinstance(res, MovedError):
                    cl._slots[res.slot] = (res.host, res.port)
                    cl._refresh_needed = True
                try:
                    res = cl._route(args, cb, blocking, None)
                except ReplyError as e:
                    res = e
                results[i] = res
            if isinstance(res, ReplyError) and first_error is None:
                first_error = res
        if first_error is not None and raise_on_error:
            raise first_error
        return results


__all__ = ["READ_ONLY", "ClusterPipeline", "RedisCluster", "command_keys", "command_slot",
           "crc16", "key_slot"]
