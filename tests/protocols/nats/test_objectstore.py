"""The JetStream object store against a real nats-server with -js: put/get round trips
(empty, one byte, one chunk exactly, many chunks, a file-like source), info, replace
(the old chunks are purged), delete, list; a peer that lies in the meta (size, chunk
count, digest, size above max_size, malformed JSON) or adds chunks is refused with a
typed error and no data; a cancelled put leaves no chunks; interop with nats-py."""

from __future__ import annotations

import base64
import hashlib
import importlib
import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

import greenrt
from greenrt.protocols import nats

pytestmark = pytest.mark.timeout(90)


def run(fn):
    return greenrt.run(fn)


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def digest(data: bytes) -> str:
    return "SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode()


def subject_count(js, stream: str, subject: str) -> int:
    st = js._api(f"STREAM.INFO.{stream}", {"subjects_filter": subject})["state"]
    return sum((st.get("subjects") or {}).values())


@pytest.mark.parametrize("size,chunk_size", [(0, 128 * 1024), (1, 128 * 1024), (1024, 1024),
                                             (10_000, 999), (300_000, 128 * 1024)])
def test_put_get_round_trip(nats_server, size, chunk_size):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("RT")
            data = os.urandom(size)
            info = os_.put("a/b c.bin", data, chunk_size=chunk_size, description="d")
            assert info.size == size
            assert info.chunks == -(-size // chunk_size)
            assert info.digest == digest(data)
            assert info.bucket == "RT" and info.name == "a/b c.bin" and not info.deleted
            assert os_.get("a/b c.bin") == data
            got = os_.info("a/b c.bin")
            assert (got.size, got.chunks, got.digest, got.nuid, got.description) == \
                (info.size, info.chunks, info.digest, info.nuid, "d")
            assert got.max_chunk_size == chunk_size
            buf = io.BytesIO()
            assert os_.get_into("a/b c.bin", buf).size == size
            assert buf.getvalue() == data
            assert subject_count(js, "OBJ_RT", f"$O.RT.C.{info.nuid}") == info.chunks
            js.delete_object_store("RT")
    run(main)


def test_file_like_source_replace_delete_list(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            with pytest.raises(nats.JetStreamError):
                js.object_store("FL")
            js.create_object_store("FL", description="files")
            os_ = js.object_store("FL")
            data = os.urandom(50_000)
            first = os_.put("f", io.BytesIO(data), chunk_size=4096)
            assert first.chunks == 13 and os_.get("f") == data
            # replace: the old chunks are purged once the new meta is stored
            second = os_.put("f", b"new content", chunk_size=4)
            assert second.nuid != first.nuid
            assert os_.get("f") == b"new content"
            assert subject_count(js, "OBJ_FL", f"$O.FL.C.{first.nuid}") == 0
            assert subject_count(js, "OBJ_FL", "$O.FL.C.>") == second.chunks == 3
            os_.put("g", b"g")
            os_.put("e", b"")
            assert [i.name for i in os_.list()] == ["e", "f", "g"]
            os_.delete("f")
            with pytest.raises(nats.ObjectNotFound):
                os_.info("f")
            with pytest.raises(nats.ObjectNotFound):
                os_.get("f")
            with pytest.raises(nats.ObjectNotFound):
                os_.delete("f")
            with pytest.raises(nats.ObjectNotFound):
                os_.get("never")
            assert subject_count(js, "OBJ_FL", f"$O.FL.C.{second.nuid}") == 0
            assert [i.name for i in os_.list()] == ["e", "g"]
            # a deleted name can be put again
            os_.put("f", b"again")
            assert os_.get("f") == b"again"
            assert js.delete_object_store("FL")
            with pytest.raises(nats.JetStreamError):
                js.object_store("FL")
    run(main)


def test_stream_layout(nats_server):
    """The stream nats.go and nats-py expect."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            js.create_object_store("LAYOUT", max_bytes=10**7, storage="memory", ttl=60)
            cfg = js.stream_info("OBJ_LAYOUT")["config"]
            assert cfg["subjects"] == ["$O.LAYOUT.C.>", "$O.LAYOUT.M.>"]
            assert cfg["discard"] == "new" and cfg["allow_rollup_hdrs"] is True
            assert cfg["max_bytes"] == 10**7 and cfg["storage"] == "memory"
            assert cfg["max_age"] == 60 * 10**9
            os_ = js.object_store("LAYOUT")
            os_.put("x", b"1")
            m = js._api("STREAM.MSG.GET.OBJ_LAYOUT", {"last_by_subj": meta_subject("LAYOUT", "x")})
            meta = json.loads(base64.b64decode(m["message"]["data"]))
            assert {"name", "bucket", "nuid", "size", "chunks", "mtime", "digest"} <= set(meta)
            assert base64.b64decode(m["message"]["hdrs"]).find(b"Nats-Rollup: sub") >= 0
            js.delete_object_store("LAYOUT")
    run(main)


def test_watch(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("WATCH")
            os_.put("a", b"1")
            w = os_.watch()
            try:
                first = w.next(timeout=5)
                assert (first.name, first.size, first.deleted) == ("a", 1, False)
                os_.put("b", b"22")
                os_.delete("a")
                nxt = w.next(timeout=5)
                assert (nxt.name, nxt.size) == ("b", 2)
                gone = w.next(timeout=5)
                assert (gone.name, gone.deleted) == ("a", True)
                with pytest.raises(nats.RequestTimeout):
                    w.next(timeout=0.2)
            finally:
                w.stop()
            u = os_.watch(updates_only=True)
            try:
                os_.put("c", b"333")
                assert u.next(timeout=5).name == "c"
            finally:
                u.stop()
            js.delete_object_store("WATCH")
    run(main)


# -- the peer that lies -------------------------------------------------------------------

def forge(js, bucket: str, obj: str, **changes) -> dict:
    """Rewrite object ``obj``'s meta by hand (rolled up, as a peer would)."""
    m = js._api(f"STREAM.MSG.GET.OBJ_{bucket}", {"last_by_subj": meta_subject(bucket, obj)})
    meta = json.loads(base64.b64decode(m["message"]["data"]))
    meta.update(changes)
    js.publish(meta_subject(bucket, obj), json.dumps(meta).encode(),
               headers={"Nats-Rollup": "sub"})
    return meta


LIES = {
    "size-too-small": (dict(size=9_999), "too_many_bytes"),
    "size-too-large": (dict(size=10_001), "too_few_bytes"),
    "fewer-chunks": (dict(chunks=9), "chunk_count"),
    "more-chunks": (dict(chunks=11), "chunk_count"),
    "digest": (dict(digest=digest(b"something else")), "digest"),
    "digest-not-base64": (dict(digest="SHA-256=!!!"), "bad_meta"),
    "digest-bad-padding": (dict(digest="SHA-256=a"), "bad_meta"),
    "no-chunks-size-0": (dict(size=0, chunks=0, digest=digest(b"")), "too_many_bytes"),
    "nuid-without-chunks": (dict(nuid="nothing-here"), "too_few_bytes"),
    "empty-wrong-digest": (dict(nuid="nothing-here", size=0, chunks=0, digest=digest(b"x")),
                           "digest"),
    "another-name": (dict(name="other"), "bad_meta"),
    "size-negative": (dict(size=-1), "bad_meta"),
    "size-not-int": (dict(size="10000"), "bad_meta"),
    "nuid-wildcard": (dict(nuid=">"), "bad_meta"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_meta_is_refused(nats_server, lie):
    """Each lie in the meta is an ``ObjectCorrupt`` with its reason; ``get`` returns no
    data and ``get_into`` never writes more than the declared size."""
    changes, reason = LIES[lie]

    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("LIE")
            data = os.urandom(10_000)
            os_.put("o", data, chunk_size=1000)
            forge(js, "LIE", "o", **changes)
            with pytest.raises(nats.ObjectCorrupt) as ei:
                os_.get("o")
            assert ei.value.reason == reason
            written = []
            with pytest.raises(nats.ObjectCorrupt):
                os_.get_into("o", written.append)
            declared = changes.get("size", 10_000)
            if isinstance(declared, int):
                assert sum(map(len, written)) <= max(declared, 0)
                assert len(written) <= changes.get("chunks", 10)
            js.delete_object_store("LIE")
    run(main)


def test_malformed_meta_is_a_typed_error(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("BADMETA")
            for body in (b"{not json", b"[1, 2]", b'"x"', b"{}", b'{"name": 5}',
                         b'{"name": "m", "nuid": "abc", "size": 10, "chunks": 11}',
                         b"[" * 100_000):
                js.publish(meta_subject("BADMETA", "m"), body, headers={"Nats-Rollup": "sub"})
                for call in (os_.info, os_.get):
                    with pytest.raises(nats.ObjectCorrupt) as ei:
                        call("m")
                    assert ei.value.reason == "bad_meta"
                with pytest.raises(nats.ObjectCorrupt):
                    os_.list()
            js.delete_object_store("BADMETA")
    run(main)


def test_size_above_max_size_is_refused_before_reading(nats_server):
    """A meta claiming 1 TiB is refused on its number: no chunk is read (there are
    none to read here; a reader that trusted the size would wait or allocate)."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("BIG")
            os_.put("o", b"0123456789")
            forge(js, "BIG", "o", size=2**40, chunks=2**40 // 4096)
            with pytest.raises(nats.ObjectTooLarge) as ei:
                os_.get("o")
            assert (ei.value.limit, ei.value.value, ei.value.maximum) == \
                ("max_size", 2**40, 64 * 1024 * 1024)
            assert isinstance(ei.value, greenrt.LimitExceeded)
            os_.put("p", b"x" * 100)
            with pytest.raises(nats.ObjectTooLarge):
                os_.get("p", max_size=99)
            assert os_.get("p", max_size=100) == b"x" * 100
            js.delete_object_store("BIG")
    run(main)


def test_extra_chunks_beyond_the_size_are_refused_not_buffered(nats_server):
    """Chunks published under the object's nuid after it was stored: the first byte
    past the declared size is refused, never kept."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("EXTRA")
            data = os.urandom(3000)
            info = os_.put("o", data, chunk_size=1000)
            for _ in range(20):
                js.publish(f"$O.EXTRA.C.{info.nuid}", b"z" * 1000)
            written = []
            with pytest.raises(nats.ObjectCorrupt) as ei:
                os_.get_into("o", written.append)
            assert ei.value.reason == "too_many_bytes"
            assert b"".join(written) == data  # the declared bytes only
            with pytest.raises(nats.ObjectCorrupt):
                os_.get("o")
            # and on an empty object
            empty = os_.put("e", b"")
            js.publish(f"$O.EXTRA.C.{empty.nuid}", b"z")
            with pytest.raises(nats.ObjectCorrupt) as ei:
                os_.get("e")
            assert ei.value.reason == "too_many_bytes"
            js.delete_object_store("EXTRA")
    run(main)


# -- cancellation -------------------------------------------------------------------------

def test_a_cancelled_put_leaves_no_chunks(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("CANCEL")
            os_.put("keep", b"old content")
            with greenrt.move_on_after(0.2) as sc:
                os_.put("keep", os.urandom(10_000_000), chunk_size=100)  # 100k acks
            assert sc.cancelled_caught
            deadline = greenrt.now() + 5
            while subject_count(js, "OBJ_CANCEL", "$O.CANCEL.C.>") > 1 and \
                    greenrt.now() < deadline:
                greenrt.sleep(0.05)
            # only the old object's one chunk remains, and it is still whole
            assert subject_count(js, "OBJ_CANCEL", "$O.CANCEL.C.>") == 1
            assert os_.get("keep") == b"old content"
            js.delete_object_store("CANCEL")
    run(main)


def test_a_put_failing_midway_leaves_no_chunks(nats_server):
    """The bucket fills up (``max_bytes``, ``discard: new``) during a put: the chunk
    publish fails and the chunks already stored are purged."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("FULL", max_bytes=50_000)
            with pytest.raises(nats.JetStreamError):
                os_.put("big", os.urandom(100_000), chunk_size=1000)
            deadline = greenrt.now() + 5
            while js.stream_info("OBJ_FULL")["state"]["messages"] and greenrt.now() < deadline:
                greenrt.sleep(0.05)
            assert js.stream_info("OBJ_FULL")["state"]["messages"] == 0
            with pytest.raises(nats.ObjectNotFound):
                os_.info("big")
            js.delete_object_store("FULL")
    run(main)


def test_a_cancelled_get_deletes_its_consumer(nats_server):
    """``get_into`` cancelled while its writer blocks still deletes its ephemeral
    consumer (sent without a checkpoint; the server would take its 5 s inactive
    threshold, longer than this waits)."""
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("CGET")
            os_.put("o", os.urandom(10_000), chunk_size=1000)
            with greenrt.move_on_after(0.3) as sc:
                os_.get_into("o", lambda chunk: greenrt.sleep(10))
            assert sc.cancelled_caught
            count = None
            for _ in range(30):
                count = js.stream_info("OBJ_CGET")["state"].get("consumer_count")
                if count == 0:
                    break
                greenrt.sleep(0.1)
            assert count == 0
            js.delete_object_store("CGET")
    run(main)


def test_a_large_object(nats_server):
    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("LARGE")
            data = os.urandom(24 * 1024 * 1024)
            info = os_.put("big", data)
            assert info.chunks == 192
            assert os_.get("big") == data
            with pytest.raises(nats.ObjectTooLarge):
                os_.get("big", max_size=len(data) - 1)
            js.delete_object_store("LARGE")
    run(main)


# -- interop ------------------------------------------------------------------------------

NATS_PY = textwrap.dedent("""
    import asyncio, sys, nats

    async def main(url, mode):
        nc = await nats.connect(url)
        js = nc.jetstream()
        obs = await js.object_store("INTEROP")
        if mode == "read":
            r = await obs.get("from-greenrt")
            sys.stdout.buffer.write(r.data)
        else:
            await obs.put("from-nats-py", bytes(range(256)) * 2000)
        await nc.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def test_interop_with_nats_py(nats_server):
    # nats-py is installed by `make setup` (the bench extra): missing, this fails
    importlib.import_module("nats.js.object_store")

    def nats_py(mode: str) -> bytes:
        p = subprocess.run([sys.executable, "-c", NATS_PY, nats_server.url, mode],
                           capture_output=True, timeout=30)
        assert p.returncode == 0, p.stderr.decode()
        return p.stdout

    def main():
        with nats.connect(nats_server.url) as nc:
            js = nc.jetstream()
            os_ = js.create_object_store("INTEROP")
            data = os.urandom(400_000)
            os_.put("from-greenrt", data)
            assert greenrt.to_thread(nats_py, "read") == data
            greenrt.to_thread(nats_py, "write")
            info = os_.info("from-nats-py")
            assert info.size == 512_000 and info.chunks == 4
            assert os_.get("from-nats-py") == bytes(range(256)) * 2000
            js.delete_object_store("INTEROP")
    run(main)
