"""Programs that share state the lab cannot see (plain dicts, lists, objects and
flags; nothing declared with ``lab.shared``), each with a bug that exhaustive DFS
finds. ``dpor`` (witness-checked) must find every one; ``dpor:declared`` trusts the
missing declarations and misses some (``tests/lab/test_lab_soundness.py``)."""

from __future__ import annotations

import greenrt


def check_then_act() -> int:
    """Two tasks insert a key if it is absent, yielding between the check and the act."""
    d: dict = {}
    inserts = []

    def put(me: str) -> None:
        if "k" not in d:
            greenrt.checkpoint()
            d["k"] = me
            inserts.append(me)

    with greenrt.region() as r:
        r.spawn(put, "a")
        r.spawn(put, "b")
    assert len(inserts) == 1, inserts
    return len(inserts)


def lost_update() -> int:
    account = {"balance": 0}

    def dep(n: int) -> None:
        seen = account["balance"]
        greenrt.checkpoint()
        account["balance"] = seen + n

    with greenrt.region() as r:
        r.spawn(dep, 1)
        r.spawn(dep, 2)
    assert account["balance"] == 3, account["balance"]
    return account["balance"]


def stale_cache() -> str:
    """A writer updates the store, yields, then invalidates the cache; a reader that
    misses in between fills the cache with the old value, which then outlives it."""
    store = {"v": "old"}
    cache: dict = {}

    def writer() -> None:
        store["v"] = "new"
        greenrt.checkpoint()
        cache.pop("v", None)

    def reader() -> None:
        if "v" not in cache:
            v = store["v"]
            greenrt.checkpoint()
            cache["v"] = v

    with greenrt.region() as r:
        r.spawn(reader)
        r.spawn(writer)
    got = cache.get("v", store["v"])
    assert got == store["v"], (got, store["v"])
    return got


def publication_race() -> object:
    """The publisher sets ``ready`` before the data; the consumer trusts ``ready``."""
    box = {"ready": False, "data": None}
    seen = []

    def publisher() -> None:
        box["ready"] = True
        greenrt.checkpoint()
        box["data"] = 42

    def consumer() -> None:
        for _ in range(3):
            if box["ready"]:
                seen.append(box["data"])
                return
            greenrt.checkpoint()

    with greenrt.region() as r:
        r.spawn(consumer)
        r.spawn(publisher)
    assert None not in seen, seen
    return seen


def abba_flags() -> list:
    """Each task raises its flag, yields, and enters only if the other's is down; if
    both raise before either checks, both back off and nobody enters."""
    flags = {"a": False, "b": False}
    entered = []

    def task(me: str, other: str) -> None:
        flags[me] = True
        greenrt.checkpoint()
        if not flags[other]:
            entered.append(me)

    with greenrt.region() as r:
        r.spawn(task, "a", "b")
        r.spawn(task, "b", "a")
    assert entered, "both backed off"
    return entered


class Inventory:
    def __init__(self, n: int):
        self.stock = n
        self.sold = 0

    def take(self) -> bool:
        if self.stock > 0:
            greenrt.checkpoint()  # e.g. a payment call
            self.stock -= 1
            self.sold += 1
            return True
        return False


def oversell() -> int:
    """Check-then-act inside a method of a plain object."""
    inv = Inventory(1)
    with greenrt.region() as r:
        r.spawn(inv.take)
        r.spawn(inv.take)
    assert inv.stock >= 0 and inv.sold <= 1, (inv.stock, inv.sold)
    return inv.sold


_INSTANCES: list = []


def double_init() -> int:
    """A lazily created singleton whose constructor yields: two get created."""
    holder: dict = {}

    def get() -> object:
        if "x" not in holder:
            greenrt.checkpoint()  # slow construction
            obj = object()
            _INSTANCES.append(obj)
            holder["x"] = obj
        return holder["x"]

    got = []
    with greenrt.region() as r:
        r.spawn(lambda: got.append(get()))
        r.spawn(lambda: got.append(get()))
    assert got[0] is got[1], "two singletons"
    return len(got)


def torn_read() -> int:
    """An auditor reads two accounts across a checkpoint while a transfer moves money
    between them: it sees a total that never existed."""
    acct = {"a": 50, "b": 50}
    seen = []

    def transfer() -> None:
        acct["a"] -= 10
        greenrt.checkpoint()
        acct["b"] += 10

    def audit() -> None:
        a = acct["a"]
        greenrt.checkpoint()
        seen.append(a + acct["b"])

    with greenrt.region() as r:
        r.spawn(audit)
        r.spawn(transfer)
    assert seen == [100], seen
    return seen[0]


def ordered_log() -> list:
    """The log must show the 'open' before the 'use': nothing orders them but luck."""
    log: list = []

    def opener() -> None:
        greenrt.checkpoint()
        log.append("open")

    def user() -> None:
        greenrt.checkpoint()
        log.append("use")

    with greenrt.region() as r:
        r.spawn(opener)
        r.spawn(user)
    assert log == ["open", "use"], log
    return log


PROGRAMS = ["check_then_act", "lost_update", "stale_cache", "publication_race",
            "abba_flags", "oversell", "double_init", "torn_read", "ordered_log"]


def mixed_lock_and_dict() -> int:
    """Tasks report a greenrt Lock (so the program is not opaque) but race on a plain
    dict outside it: only the HB witness can notice the undeclared sharing."""
    lock = greenrt.Lock()
    d = {"n": 0}
    log = []

    def work(me: str) -> None:
        with lock:
            log.append(me)
        v = d["n"]
        greenrt.checkpoint()
        d["n"] = v + 1

    with greenrt.region() as r:
        r.spawn(work, "a")
        r.spawn(work, "b")
    assert d["n"] == 2, d["n"]
    return d["n"]


PROGRAMS.append("mixed_lock_and_dict")
