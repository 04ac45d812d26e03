"""Window updates in batches: the server gives back what a handler read once a
quarter of a window is due (or ahead of a control frame it answers with), not per
DATA frame; the accounting stays exact (a PING round trip finds the whole window
returned). Raw frames over a loopback socket against our server."""

from __future__ import annotations

import hyperframe.frame as hf

from .test_server import RawClient
from .test_server_gaps import REQ, read_frames, settle, upload_echo


def _updates(frames, sid):
    return [f.window_increment for f in frames
            if isinstance(f, hf.WindowUpdateFrame) and f.stream_id == sid]


def test_window_updates_are_batched_and_exact(h2_server):
    srv = h2_server(upload_echo)
    c = RawClient(srv.port)
    settle(c)
    c.h2.send_headers(1, REQ)
    parts = 40
    for _ in range(parts):  # 40 DATA frames of 1000 bytes: 40000 within the 65535 window
        c.h2.send_data(1, b"x" * 1000)
    c.h2.end_stream(1)
    c.send_raw(c.h2.data_to_send())
    frames = read_frames(c, lambda fs: any(isinstance(f, hf.DataFrame) and f.stream_id == 1
                                           and "END_STREAM" in f.flags for f in fs))
    body = b"".join(f.data for f in frames if isinstance(f, hf.DataFrame) and f.stream_id == 1)
    assert body == b"got:40000"
    conn_updates = _updates(frames, 0)
    # one per quarter window (16383 bytes) at most, not one per DATA frame
    assert 1 <= len(conn_updates) <= 40000 // 16383
    assert sum(conn_updates) < 40000
    assert len(_updates(frames, 1)) <= 40000 // 16383
    # the rest goes back ahead of the PING's ACK: nothing is lost
    c.send_raw(hf.PingFrame(0, opaque_data=b"winprobe").serialize())
    frames = read_frames(c, lambda fs: any(isinstance(f, hf.PingFrame) and "ACK" in f.flags
                                           for f in fs))
    assert sum(_updates(frames, 0)) == 40000
    c.sock.close()



def _take_complete_echo(req):
    import greenrt

    first = req.body.take_complete()  # END_STREAM not sent yet: nothing taken
    req.writer.start(200, [])
    while (body := req.body.take_complete()) is None:
        greenrt.sleep(0.001)
    assert req.body.complete and req.body.take_complete() == b""
    req.writer.write(b"first=%r;" % (first,) + body)
    req.writer.finish()


def test_take_complete_returns_the_whole_body_and_its_window(h2_server):
    srv = h2_server(_take_complete_echo)
    c = RawClient(srv.port)
    settle(c)
    c.h2.send_headers(1, REQ)
    sent = b"".join(bytes([65 + i % 26]) * 1000 for i in range(40))
    for i in range(40):  # 40 DATA frames of 1000 bytes, END_STREAM only later
        c.h2.send_data(1, sent[i * 1000:(i + 1) * 1000])
    c.send_raw(c.h2.data_to_send())
    read_frames(c, lambda fs: any(isinstance(f, hf.HeadersFrame) and f.stream_id == 1
                                  for f in fs))
    c.h2.end_stream(1)
    c.send_raw(c.h2.data_to_send())
    frames = read_frames(c, lambda fs: any(isinstance(f, hf.DataFrame) and f.stream_id == 1
                                           and "END_STREAM" in f.flags for f in fs))
    body = b"".join(f.data for f in frames if isinstance(f, hf.DataFrame) and f.stream_id == 1)
    assert body == b"first=None;" + sent
    c.send_raw(hf.PingFrame(0, opaque_data=b"winprobe").serialize())
    frames = read_frames(c, lambda fs: any(isinstance(f, hf.PingFrame) and "ACK" in f.flags
                                           for f in fs))
    assert sum(_updates(frames, 0)) == 40000
    c.sock.close()
