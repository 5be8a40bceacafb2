#!/usr/bin/env python3
"""End-to-end tests of `verolux serve`: the real binary on a free loopback
port, real sockets, real video (vtest.avi from $VEROLUX_CACHE/samples) and
the real detector.

The WebSocket client is written here from the RFC 6455 framing rules with
the standard library only (no pip on the test machines).  Waiting is always
on something the server does (a message arriving, a socket closing); where
a condition can only be seen in /metrics, the test reads it again after each
message of a live WebSocket client, so the video's own frame rate paces the
polling and every wait has a deadline.

usage: test_server_e2e.py VEROLUX_BINARY [TEST_NAME...]
"""

import base64
import hashlib
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOST = "127.0.0.1"


class Closed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed by the server: {code} {reason!r}")
        self.code = code
        self.reason = reason


class HandshakeRefused(Exception):
    pass


class WS:
    """A minimal WebSocket client (text, binary, ping/pong, close)."""

    def __init__(self, port, path, timeout=20.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            try:
                chunk = self.sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self.sock.close()
                raise HandshakeRefused(buf.decode(errors="replace"))
            buf += chunk
        head, self.buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode(errors="replace").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 101"):
            self.sock.close()
            raise HandshakeRefused(lines[0])
        headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        want = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == want, "bad Sec-WebSocket-Accept"

    def _exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Closed(1006, "connection dropped")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _frame(self):
        b0, b1 = self._exact(2)
        fin, op, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
        assert not (b1 & 0x80), "server frames must not be masked"
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        return fin, op, self._exact(n)

    def recv(self):
        """(opcode, payload) of the next data message; answers pings."""
        parts, first_op = [], None
        while True:
            fin, op, data = self._frame()
            if op == 8:
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
                try:
                    self.send(data[:2], opcode=8)
                except OSError:
                    pass
                raise Closed(code, data[2:].decode(errors="replace"))
            if op == 9:
                self.send(data, opcode=10)
                continue
            if op == 10:
                continue
            if op != 0:
                first_op = op
            parts.append(data)
            if fin:
                return first_op, b"".join(parts)

    def recv_json(self):
        op, data = self.recv()
        assert op == 1, f"expected a text message, got opcode {op}"
        return json.loads(data)

    def send(self, payload, opcode=1, fin=True):
        if isinstance(payload, str):
            payload = payload.encode()
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([(0x80 if fin else 0) | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def close(self):
        try:
            self.send(struct.pack(">H", 1000), opcode=8)
        except OSError:
            pass
        self.sock.close()


def http_get(port, path, method="GET", body=None, timeout=20):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    c.request(method, path, body=body)
    r = c.getresponse()
    data = r.read()
    headers = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, headers, data


def metrics(port):
    status, headers, data = http_get(port, "/metrics")
    assert status == 200, status
    out = {}
    for line in data.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def metric(m, name, source=None):
    if source is None:
        return m.get(name, 0.0)
    return m.get(f'{name}{{source="{source}"}}', 0.0)


class Server:
    def __init__(self, binary, args, env=None):
        self.log = tempfile.NamedTemporaryFile(prefix="verolux-serve-", suffix=".log", delete=False)
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([binary, "serve", "--port", "0", *args], stdout=subprocess.PIPE,
                                     stderr=self.log, env=e)
        line = self._readline(120)
        m = re.match(r"listening on http://[^:]+:(\d+)", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r}\n{self.stderr()}")
        self.port = int(m.group(1))

    def _readline(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                ch = os.read(self.proc.stdout.fileno(), 1)
                if not ch:
                    break
                buf += ch
        return buf.decode(errors="replace")

    def stderr(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self, timeout=60):
        """SIGTERM; the server must exit 0 (under ASan: no leaks) in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("server did not stop within %d s of SIGTERM\n%s" % (timeout, self.stderr()[-4000:]))
        err = self.stderr()
        os.unlink(self.log.name)
        assert "Sanitizer" not in err and "runtime error" not in err, err[-8000:]
        assert rc == 0, f"server exited with {rc}\n{err[-4000:]}"


def expect_error_close(port, path, pattern, timeout=30):
    """The server answers with {"type":"error"} matching pattern, then closes."""
    ws = WS(port, path, timeout=timeout)
    msg = ws.recv_json()
    while msg.get("type") in ("connection_info", "heartbeat"):
        msg = ws.recv_json()
    assert msg.get("type") == "error", msg
    assert re.search(pattern, msg["message"]), f"{msg['message']!r} !~ {pattern!r}"
    try:
        while True:
            m = ws.recv_json()
            assert m.get("type") != "detections", "detections after an error"
    except Closed as c:
        ws.sock.close()
        return msg, c.code
    raise AssertionError("no close")


# ---- tests ----------------------------------------------------------------------


def check_detections(msg, w=768, h=576):
    assert msg["type"] == "detections", msg
    assert isinstance(msg["ts"], float) and abs(msg["ts"] - time.time()) < 60, msg["ts"]
    assert isinstance(msg["frame_id"], int) and msg["frame_id"] > 0
    assert isinstance(msg["fps"], (float, int))
    assert msg["frame_size"] == [w, h], msg["frame_size"]
    for d in msg["detections"]:
        assert set(d) == {"cls", "cls_id", "conf", "bbox"}, d
        assert isinstance(d["cls"], str) and isinstance(d["cls_id"], int)
        assert 0.35 <= d["conf"] <= 1.0, d
        x1, y1, x2, y2 = d["bbox"]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1, d["bbox"]


def test_http_endpoints(ctx):
    port = ctx.srv.port
    st, hd, body = http_get(port, "/health")
    assert st == 200 and hd["content-type"].startswith("application/json"), (st, hd)
    h = json.loads(body)
    assert h["status"] in ("ok", "degraded") and h["uptime_seconds"] > 0, h
    assert h["model_loaded"] is True and h["model"]["family"] == "nanodet", h
    srcs = [s for s in h["sources"] if s["default"]]
    assert len(srcs) == 1 and srcs[0]["source"].endswith("vtest.avi"), h["sources"]
    assert srcs[0]["health"] in ("starting", "healthy"), srcs[0]

    st, _, body = http_get(port, "/info")
    info = json.loads(body)
    assert st == 200 and info["framework"] == "verolux" and info["device"] == "cpu", info
    assert info["model"] == "nanodet", info

    st, _, body = http_get(port, "/model-status")
    ms = json.loads(body)
    assert st == 200 and ms["model_loaded"] is True and ms["input_size"] == [416, 416], ms

    st, hd, body = http_get(port, "/metrics")
    assert st == 200 and hd["content-type"].startswith("text/plain"), hd
    text = body.decode()
    for name in ("verolux_pipelines_running", "verolux_capture_fps", "verolux_stage_seconds_bucket",
                 "verolux_glass_to_message_seconds_count", "verolux_queue_drops_total"):
        assert name in text, name
    assert re.search(r'verolux_stage_seconds_bucket\{source="[^"]*vtest.avi",stage="inference",le="\+Inf"\}', text)

    for path in ("/nope", "/", "/health/x", "/ws", "/metrics?x=1/../../etc/passwd"):
        st, hd, body = http_get(port, path)
        if path.startswith("/metrics?"):
            assert st == 200, (path, st)
            continue
        assert st == 404 and hd["content-type"] == "application/json", (path, st, hd)
        assert "detail" in json.loads(body), body

    for method, body in (("POST", b"x" * 1000), ("DELETE", None), ("PUT", b"{}"), ("HEAD", None)):
        st, hd, data = http_get(port, "/health", method=method, body=body)
        assert st == 405, (method, st)
        assert hd.get("allow") == "GET", hd
        if method != "HEAD":
            assert "detail" in json.loads(data)
    st, _, body = http_get(port, "/ws/detections")
    assert st == 400 and "WebSocket" in json.loads(body)["detail"], body

    # Keep-alive: several requests on one connection.
    c = http.client.HTTPConnection(HOST, port, timeout=20)
    for path in ("/info", "/nope", "/health", "/metrics"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.status in (200, 404)
    c.close()


def test_ws_detections(ctx):
    """vtest.avi: persons on most frames, boxes normalised, fps sane."""
    ws = WS(ctx.srv.port, "/ws/detections")
    info = ws.recv_json()
    assert info["type"] == "connection_info", info
    assert info["framework"] == "verolux" and info["model_loaded"] is True and info["device"] == "cpu", info
    assert info["source"].endswith("vtest.avi"), info
    frames, with_person, last_id = 0, 0, 0
    while frames < 40:
        msg = ws.recv_json()
        if msg["type"] == "heartbeat":
            continue
        check_detections(msg)
        assert msg["frame_id"] > last_id, (msg["frame_id"], last_id)
        last_id = msg["frame_id"]
        frames += 1
        if any(d["cls"] == "person" and d["cls_id"] == 0 for d in msg["detections"]):
            with_person += 1
    ws.close()
    assert with_person >= 0.8 * frames, f"persons on {with_person} of {frames} frames"
    ctx.note(f"persons on {with_person}/{frames} frames")


def test_ws_gate_check(ctx):
    ws = WS(ctx.srv.port, "/ws/gate-check?source=vtest.avi&use_substream=true")
    info = ws.recv_json()
    assert info["type"] == "connection_info" and info["use_substream"] is True, info
    pairs = 0
    while pairs < 10:
        msg = ws.recv_json()
        if msg["type"] == "heartbeat":
            continue
        check_detections(msg)
        gate = ws.recv_json()
        assert gate["type"] == "gate_check", gate
        assert set(gate) == {"type", "fps", "frame_count", "optimizations", "decisions", "stats"}, gate
        assert gate["fps"]["inference"] > 0 and gate["fps"]["capture"] >= 0, gate
        assert isinstance(gate["frame_count"], int) and gate["frame_count"] > 0
        o = gate["optimizations"]
        assert set(o) == {"dual_stream", "async_grabber", "batch_inference", "precision", "substream_scale"}, o
        assert o["async_grabber"] is True and o["dual_stream"] is True and o["batch_inference"] is False, o
        # What the load priority chose (PRECISION=auto): the same everywhere.
        assert o["precision"] == info["precision"] in ("FP32", "BF16", "INT8") and \
            abs(o["substream_scale"] - 0.6) < 1e-9, (o, info)
        assert gate["decisions"] == {} and gate["stats"] == {}, gate
        pairs += 1
    ws.close()
    ws = WS(ctx.srv.port, "/ws/gate-check?use_substream=false")
    assert ws.recv_json()["use_substream"] is False
    ws.close()


def test_heartbeat(ctx):
    ws = WS(ctx.srv.port, "/ws/detections")
    assert ws.recv_json()["type"] == "connection_info"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = ws.recv_json()
        if msg["type"] == "heartbeat":
            assert msg["uptime_s"] > 0, msg
            ws.close()
            return
    raise AssertionError("no heartbeat within 10 s (heartbeat period 1 s)")


def test_same_file_shares_pipeline(ctx):
    """The default file named by relative, absolute and file: paths is one pipeline."""
    port = ctx.srv.port
    before = metrics(port)
    names = ["vtest.avi", ctx.vtest, "file:" + ctx.vtest, ""]
    socks = []
    for n in names:
        ws = WS(port, "/ws/detections" + (f"?source={n}" if n else ""))
        assert ws.recv_json()["type"] == "connection_info"
        check_detections(ws.recv_json())
        socks.append(ws)
    after = metrics(port)
    assert metric(after, "verolux_pipelines_started_total") == metric(before, "verolux_pipelines_started_total")
    for ws in socks:
        ws.close()


def test_twenty_clients_one_pipeline(ctx):
    """20 clients on one (client-started) source: one pipeline, one decoder."""
    port = ctx.srv.port
    before = metrics(port)
    clients = []
    for i in range(20):
        ws = WS(port, "/ws/detections?source=copy.avi")
        info = ws.recv_json()
        assert info["type"] == "connection_info" and info["source"] == "copy.avi", info
        clients.append(ws)
    ids = []
    for ws in clients:
        msg = ws.recv_json()
        while msg["type"] == "heartbeat":
            msg = ws.recv_json()
        check_detections(msg)
        ids.append(msg["frame_id"])
    # Every client keeps receiving (they read in turn; their queues absorb
    # the wait), for a few seconds of video.
    for _ in range(3):
        for ws in clients:
            while ws.recv_json()["type"] != "detections":
                pass
    m = metrics(port)
    health = json.loads(http_get(port, "/health")[2])
    src = [s for s in health["sources"] if s["source"] == "copy.avi"][0]
    assert metric(m, "verolux_pipelines_started_total") == metric(before, "verolux_pipelines_started_total") + 1
    assert metric(m, "verolux_pipelines_running") == 2, m.get("verolux_pipelines_running")
    assert metric(m, "verolux_decoders_running") == 2
    assert metric(m, "verolux_source_clients", "copy.avi") == 20
    decoded = metric(m, "verolux_frames_decoded_total", "copy.avi")
    processed = metric(m, "verolux_frames_processed_total", "copy.avi")
    # One decode for all: the frames decoded follow the video's clock (10 fps
    # since the pipeline started), not 20 times that.
    assert 0 < decoded <= 10 * src["uptime_s"] + 5, (decoded, src["uptime_s"])
    assert processed <= decoded, (decoded, processed)
    for ws in clients:
        ws.close()
    # Stopped idle_stop_s (0.5 s) after the last client left; the default
    # source's messages pace the polling.
    clock = WS(port, "/ws/detections")
    clock.recv_json()
    for _ in range(100):
        clock.recv_json()
        m = metrics(port)
        if metric(m, "verolux_pipelines_stopped_total") > metric(before, "verolux_pipelines_stopped_total"):
            break
    else:
        raise AssertionError("the idle pipeline was not stopped")
    assert metric(m, "verolux_pipelines_running") == 1
    clock.close()
    ctx.note(f"20 clients: 1 pipeline, {int(decoded)} frames decoded, {int(processed)} processed")


def test_refused_sources(ctx):
    port = ctx.srv.port
    before = metrics(port)
    cases = [
        ("rtsp://10.255.255.1/stream", r"refused.*allow-source"),
        ("http://example.com/video.mjpg", r"refused"),
        ("/etc/passwd", r"refused: not a video file inside the server's media folders"),
        ("../../../../etc/passwd", r"refused"),
        ("file:///etc/hostname", r"refused"),
        ("escape.avi", r"refused"),  # a symbolic link out of the media folder
        ("/does/not/exist.avi", r"refused"),
    ]
    for src, pat in cases:
        msg, code = expect_error_close(port, "/ws/detections?source=" + quote(src), pat)
        assert code == 1008, (src, code)
    for src, pat in [("ftp://x/y", r"accepted forms"), ("webcm:0", r"accepted forms"),
                     ("rtsp://", r"host"), ("webcam:x", r"webcam:N")]:
        msg, code = expect_error_close(port, "/ws/gate-check?source=" + quote(src), pat)
        assert code == 1008, (src, code)
    m = metrics(port)
    refused = metric(m, 'verolux_source_refusals_total{reason="denied"}') - metric(
        before, 'verolux_source_refusals_total{reason="denied"}')
    malformed = metric(m, 'verolux_source_refusals_total{reason="malformed"}') - metric(
        before, 'verolux_source_refusals_total{reason="malformed"}')
    assert refused == 7 and malformed == 4, (refused, malformed)
    # MJPEG refusals are HTTP statuses.
    st, _, body = http_get(port, "/stream?source=" + quote("/etc/passwd"))
    assert st == 403 and "refused" in json.loads(body)["detail"], (st, body)
    st, _, body = http_get(port, "/stream?source=" + quote("ftp://x"))
    assert st == 400, st


def test_unopenable_sources(ctx):
    """Allowed but unopenable: error + close, the server lives on."""
    port = ctx.srv.port
    for src in ("notvideo.avi", "webcam:63", "empty.mp4"):
        t0 = time.monotonic()
        msg, code = expect_error_close(port, "/ws/detections?source=" + quote(src), r"cannot open source", 60)
        assert code == 1011, (src, code)
        ctx.note(f"{src}: {msg['message']} ({time.monotonic() - t0:.1f} s)")
        assert "verolux-media" not in msg["message"], "the server's own paths leak to clients"
    # A second client on the still-failing source is told at once.
    msg, code = expect_error_close(port, "/ws/detections?source=notvideo.avi", r"cannot open source", 60)
    st, _, _ = http_get(port, "/health")
    assert st == 200


def test_damaged_files(ctx):
    """Garbage in the middle of a video and a cut-off video: detections go on."""
    port = ctx.srv.port
    for name, count in (("corrupt.avi", 60), ("truncated.avi", 80)):
        ws = WS(port, "/ws/detections?source=" + name, timeout=30)
        assert ws.recv_json()["type"] == "connection_info"
        n, last = 0, 0
        while n < count:
            msg = ws.recv_json()
            if msg["type"] == "heartbeat":
                continue
            check_detections(msg)
            assert msg["frame_id"] > last
            last = msg["frame_id"]
            n += 1
        ws.close()
        m = metrics(port)
        errors = metric(m, "verolux_decode_errors_total", name)
        failures = metric(m, "verolux_source_failures_total", name)
        ctx.note(f"{name}: {n} results, {int(errors)} decode errors, {int(failures)} failures")
        if name == "corrupt.avi":
            # The results went past the damage (3 s in), not just up to it.
            assert errors + failures >= 1, "the damaged part was never reached"


def test_malformed_queries(ctx):
    port = ctx.srv.port
    for q, pat in [("source", r"malformed"), ("=x", r"malformed"), ("use_substream=maybe", r"true or false"),
                   ("source=a&source=b", r"twice"), ("source=", r"empty"),
                   ("use_substream=1&use_substream=0", r"twice")]:
        msg, code = expect_error_close(port, "/ws/gate-check?" + q, pat)
        assert code == 1008, (q, code)
    st, _, body = http_get(port, "/stream?overlay=perhaps")
    assert st == 400 and "true or false" in json.loads(body)["detail"], body
    # Bytes that are not valid percent-encoding or far too long: refused one
    # way or another, never a crash.
    for path in ("/ws/detections?source=%zz%", "/ws/detections?source=" + "a" * 20000,
                 "/ws/detections?" + "&".join(f"p{i}=1" for i in range(100))):
        try:
            ws = WS(port, path, timeout=20)
            msg = ws.recv_json()
            if msg["type"] == "connection_info":
                msg = ws.recv_json()
            ws.close()
        except (HandshakeRefused, Closed, ConnectionError):
            pass
    for path in ("/health?%%%", "/health?" + "x" * 20000):
        try:
            http_get(port, path)
        except (http.client.HTTPException, ConnectionError):
            pass
    st, _, _ = http_get(port, "/health")
    assert st == 200
    # Unknown WebSocket paths are refused at the handshake.
    try:
        WS(port, "/ws/unknown")
        raise AssertionError("upgrade to /ws/unknown accepted")
    except (HandshakeRefused, ConnectionError):
        pass


def test_client_messages(ctx):
    port = ctx.srv.port
    ws = WS(port, "/ws/detections")
    assert ws.recv_json()["type"] == "connection_info"
    ws.send('{"type":"ping"}')
    while (m := ws.recv_json())["type"] != "pong":
        assert m["type"] in ("detections", "heartbeat"), m
    ws.send("this is not json")
    while (m := ws.recv_json())["type"] != "error":
        assert m["type"] in ("detections", "heartbeat"), m
    assert "parse" in m["message"], m
    ws.send('{"type":"subscribe","x":1}')  # unknown types are ignored
    ws.send('{"type":', fin=False)        # a fragmented message
    ws.send('"ping"}', opcode=0)
    while (m := ws.recv_json())["type"] != "pong":
        assert m["type"] in ("detections", "heartbeat"), m
    ws.close()

    m0 = metrics(port)
    ws = WS(port, "/ws/detections")
    ws.recv_json()
    ws.send(b"\x00\x01\x02binary", opcode=2)
    try:
        while (m := ws.recv_json())["type"] != "error":
            pass
        assert "binary" in m["message"], m
        while True:
            ws.recv_json()
    except Closed as c:
        assert c.code == 1003, c.code
    ws.sock.close()

    ws = WS(port, "/ws/gate-check")
    ws.recv_json()
    ws.send("x" * 100000)
    try:
        while (m := ws.recv_json())["type"] != "error":
            pass
        assert "too large" in m["message"], m
        while True:
            ws.recv_json()
    except Closed as c:
        assert c.code == 1009, c.code
    ws.sock.close()
    m1 = metrics(port)
    for r in ("binary", "oversized", "malformed"):
        k = f'verolux_client_messages_rejected_total{{reason="{r}"}}'
        assert m1[k] == m0[k] + (0 if r == "malformed" else 1), (r, m0[k], m1[k])


def jpeg_size(data):
    """(width, height) from a JPEG's SOF marker."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a JPEG"
    i = 2
    while i < len(data):
        assert data[i] == 0xFF
        marker, seglen = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + seglen
    raise AssertionError("no SOF marker")


def read_mjpeg_parts(sock, count, buf=b""):
    """Reads an MJPEG response: headers, then `count` JPEG parts."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "stream closed"
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    hd = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    ctype = hd["content-type"]
    m = re.match(r"multipart/x-mixed-replace; boundary=(\S+)", ctype)
    assert m, ctype
    boundary = m.group(1).encode()
    parts = []
    while len(parts) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "stream closed"
            buf += chunk
        phead, buf = buf.split(b"\r\n\r\n", 1)
        plines = phead.decode().split("\r\n")
        assert plines[0] == b"--".decode() + boundary.decode(), plines[0]
        ph = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in plines[1:]}
        assert ph["content-type"] == "image/jpeg", ph
        n = int(ph["content-length"])
        while len(buf) < n + 2:
            chunk = sock.recv(65536)
            assert chunk, "stream closed"
            buf += chunk
        parts.append(buf[:n])
        assert buf[n:n + 2] == b"\r\n"
        buf = buf[n + 2:]
    return parts


def test_mjpeg(ctx):
    port = ctx.srv.port
    for q in ("?overlay=true", "", "?source=vtest.avi&overlay=false"):
        s = socket.create_connection((HOST, port), timeout=30)
        s.sendall(f"GET /stream{q} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        parts = read_mjpeg_parts(s, 3)
        for p in parts:
            assert jpeg_size(p) == (768, 576), jpeg_size(p)
        s.close()
    m = metrics(port)
    assert metric(m, "verolux_jpeg_frames_total", ctx.vtest) >= 6


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def gate_results(ws, count, size):
    """`count` (detections, gate_check) pairs at frame size `size`; earlier
    ones (a substream pipeline before the main stream's first frame) are
    skipped."""
    out, skipped = [], 0
    while len(out) < count:
        msg = ws.recv_json()
        if msg["type"] != "detections":
            continue
        gate = ws.recv_json()
        assert gate["type"] == "gate_check", gate
        if msg["frame_size"] != size:
            skipped += 1
            assert skipped < 50, f"frame_size stays {msg['frame_size']}, expected {size}"
            continue
        check_detections(msg, *size)
        out.append((msg, gate))
    return out


def test_dual_stream(ctx):
    """One still scene at 1536x1152 with a 384x288 substream: detection on the
    substream, on a SUBSTREAM_SCALE copy and at full resolution finds the same
    people, boxes in full-resolution coordinates; /health shows what each
    detected on."""
    port = ctx.srv.port
    full_size = [1536, 1152]
    runs = {}
    for name, query, dual in (("full", "source=still&use_substream=false", False),
                              ("substream", "source=still&use_substream=true", True),
                              ("scaled", "source=plain", True)):
        ws = WS(port, "/ws/gate-check?" + query, timeout=30)
        info = ws.recv_json()
        assert info["type"] == "connection_info", info
        results = gate_results(ws, 4, full_size)
        for msg, gate in results:
            assert gate["optimizations"]["dual_stream"] is dual, (name, gate["optimizations"])
        runs[name] = results[-1][0]["detections"]
        if name != "full":
            # Still connected: the pipeline shows in /health.
            h = json.loads(http_get(port, "/health")[2])
            runs[name + "_health"] = [s for s in h["sources"] if s["source"] in ("still", "plain")]
        else:
            h = json.loads(http_get(port, "/health")[2])
            runs["full_health"] = [s for s in h["sources"] if s["source"] == "still"]
        ws.close()

    # What each pipeline detected on.
    sizes = {(s["source"], tuple(s["detection_size"])) for k in ("full_health", "substream_health", "scaled_health")
             for s in runs[k]}
    # SUBSTREAM_SCALE 0.6: 1536 x 0.6 = 921.6, rounded up to 16-pixel blocks.
    scaled = (928, 696)
    for want in (("still", (1536, 1152)), ("still", (384, 288)), ("plain", scaled)):
        assert want in sizes, (want, sizes)
    for s in runs["full_health"] + runs["substream_health"] + runs["scaled_health"]:
        assert s["frame_size"] == full_size, s

    ref = [d for d in runs["full"] if d["cls"] == "person"]
    assert len(ref) >= 3, f"only {len(ref)} persons at full resolution: {runs['full']}"
    for name in ("substream", "scaled"):
        got = [d for d in runs[name] if d["cls"] == "person"]
        worst, errs = 1.0, []
        for r in (d for d in ref if d["conf"] >= 0.5):
            best = max(got, key=lambda d: iou(d["bbox"], r["bbox"]), default=None)
            assert best is not None, f"{name}: no persons at all"
            v = iou(best["bbox"], r["bbox"])
            worst = min(worst, v)
            # Corner error in full-resolution pixels.
            errs += [abs(a - b) * full_size[i % 2] for i, (a, b) in enumerate(zip(best["bbox"], r["bbox"]))]
            assert v >= 0.7, f"{name}: person {r} best match {best} IoU {v:.2f}"
        assert abs(len(got) - len(ref)) <= max(1, len(ref) // 4), (name, len(got), len(ref))
        ctx.note(f"{name}: {len(got)} persons vs {len(ref)} at full resolution, worst IoU {worst:.2f}, "
                 f"median corner error {sorted(errs)[len(errs) // 2]:.1f} px of 1536x1152")


def test_slow_clients(ctx):
    """Clients that never read lose their oldest messages; others keep the pace."""
    port = ctx.srv.port
    before = metrics(port)
    slow = []
    for path in ("/ws/detections", "/ws/gate-check"):
        ws = WS(port, path, rcvbuf=4096)
        slow.append(ws.sock)  # never read again
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((HOST, port))
    s.sendall(b"GET /stream?overlay=true HTTP/1.1\r\nHost: x\r\n\r\n")
    slow.append(s)
    fast = WS(port, "/ws/detections")
    fast.recv_json()
    t0, first_id, n = time.monotonic(), None, 0
    drops = 0
    while time.monotonic() - t0 < 90:
        msg = fast.recv_json()
        if msg["type"] != "detections":
            continue
        first_id = first_id or msg["frame_id"]
        n += 1
        if n % 5 == 0:
            drops = metric(metrics(port), "verolux_queue_drops_total", ctx.vtest) - metric(
                before, "verolux_queue_drops_total", ctx.vtest)
            if drops >= 20 and n >= 50:
                break
    elapsed = time.monotonic() - t0
    assert drops >= 20, f"only {drops} drops counted in {elapsed:.0f} s"
    # The fast client kept getting fresh results at the processing rate.
    rate = n / elapsed
    m = metrics(port)
    processed = metric(m, "verolux_processed_fps", ctx.vtest)
    assert rate > 0.5 * min(processed, 10) and rate > 2, (rate, processed)
    fast.close()
    for sk in slow:
        sk.close()
    ctx.note(f"slow clients: {int(drops)} drops; fast client {rate:.1f} msg/s")


def test_connect_cycles(ctx):
    """1000 connect/disconnect cycles (bounded to 240 s)."""
    port = ctx.srv.port
    before = metrics(port)
    t0, n = time.monotonic(), 0
    paths = ["/ws/detections", "/ws/gate-check?source=vtest.avi"]
    while n < 1000 and time.monotonic() - t0 < 240:
        ws = WS(port, paths[n % 2], timeout=30)
        assert ws.recv_json()["type"] == "connection_info"
        if n % 3:
            ws.close()
        else:
            ws.sock.close()  # abrupt
        n += 1
        if n % 100 == 0:
            st, _, _ = http_get(port, "/info")  # HTTP in between
            assert st == 200
    elapsed = time.monotonic() - t0
    assert n >= 300, f"only {n} cycles in {elapsed:.0f} s"
    # All gone: wait (paced by a live client) until the server saw every close.
    clock = WS(port, "/ws/detections")
    clock.recv_json()
    for _ in range(200):
        clock.recv_json()
        m = metrics(port)
        if metric(m, 'verolux_clients{kind="websocket"}') == 1:
            break
    else:
        raise AssertionError("clients still counted: %s" % metric(m, 'verolux_clients{kind="websocket"}'))
    clock.close()
    assert metric(m, "verolux_subscriptions_total") >= metric(before, "verolux_subscriptions_total") + n
    ctx.note(f"{n} connect/disconnect cycles in {elapsed:.1f} s")


def quote(s):
    from urllib.parse import quote as q
    return q(s, safe="")


# ---- the command line -------------------------------------------------------------


def test_cli(binary):
    r = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "--allow-source" in r.stdout and "PORT" in r.stdout, r
    for args, env, pat in [(["--port", "http"], {}, r"--port=http: expected a whole number"),
                           (["--bogus"], {}, r"unknown option '--bogus'"),
                           ([], {"PORT": "99999"}, r"PORT=99999 \(environment\)"),
                           ([], {"SUBSTREAM_SCALE": "0"}, r"SUBSTREAM_SCALE"),
                           ([], {"PRECISION": "int4"}, r"PRECISION=int4 \(environment\): expected one of auto"),
                           (["--allow-source", "10.0.0.1"], {}, r"with a scheme"),
                           (["--camera", "no equals"], {}, r"NAME=URL")]:
        e = dict(os.environ)
        e.update(env)
        r = subprocess.run([binary, "serve", *args], capture_output=True, text=True, timeout=30, env=e)
        assert r.returncode == 2 and re.search(pat, r.stderr), (args, env, r.returncode, r.stderr)
    r = subprocess.run([binary, "serve", "--media-dir", "/nonexistent-dir"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "media folder /nonexistent-dir" in r.stderr, r.stderr
    r = subprocess.run([binary, "serve", "--source", "/nonexistent/video.avi"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1 and "default source /nonexistent/video.avi: No such file" in r.stderr, r.stderr


def test_port_in_use(binary, port):
    r = subprocess.run([binary, "serve", "--port", str(port)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"cannot listen on 127.0.0.1 port {port}" in r.stderr, r.stderr[-2000:]


class Ctx:
    def __init__(self):
        self.notes = []
        self.t_copy_start = None

    def note(self, s):
        self.notes.append(s)
        print(f"    {s}", flush=True)


def sample_video():
    """The cached vtest.avi (real path), or None after saying how to get it."""
    cache = os.environ.get("VEROLUX_CACHE") or os.path.join(os.environ["HOME"], ".cache", "verolux")
    vtest = os.path.join(cache, "samples", "vtest.avi")
    if not os.path.exists(vtest):
        print(f"FAIL: {vtest} missing: run scripts/fetch-samples", flush=True)
        return None
    return os.path.realpath(vtest)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    only = set(sys.argv[2:])
    vtest = sample_video()
    if not vtest:
        return 1

    media = tempfile.mkdtemp(prefix="verolux-media-")
    shutil.copy(vtest, os.path.join(media, "copy.avi"))
    with open(os.path.join(media, "notvideo.avi"), "w") as f:
        f.write("this is not a video\n" * 100)
    open(os.path.join(media, "empty.mp4"), "w").close()
    with open(vtest, "rb") as f:
        data = f.read()
    # The first 5 s only, index missing: it loops at the cut ...
    with open(os.path.join(media, "truncated.avi"), "wb") as f:
        f.write(data[:500000])
    # ... and 3 s in, 50 kB of noise (fixed seed: the same damage every run).
    noise = random.Random(1).randbytes(50000)
    with open(os.path.join(media, "corrupt.avi"), "wb") as f:
        f.write(data[:300000] + noise + data[350000:])
    os.symlink("/etc/hostname", os.path.join(media, "escape.avi"))
    # Dual stream: one frame of vtest.avi (6 s in, several people) as a
    # 3 s still video at 1536x1152 (the main stream) and 384x288 (its
    # substream), intra-only so that every frame is the same picture.
    if not shutil.which("ffmpeg"):
        print("FAIL: ffmpeg (the command) missing: run scripts/setup", flush=True)
        return 1
    still = os.path.join(media, "still.png")
    for args in (["-ss", "6", "-i", vtest, "-frames:v", "1", still],
                 ["-loop", "1", "-framerate", "10", "-t", "3", "-i", still, "-vf", "scale=1536:1152", "-c:v", "mjpeg",
                  "-q:v", "2", os.path.join(media, "still-main.avi")],
                 ["-loop", "1", "-framerate", "10", "-t", "3", "-i", still, "-vf", "scale=384:288", "-c:v", "mjpeg",
                  "-q:v", "2", os.path.join(media, "still-sub.avi")]):
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True, timeout=120)

    ctx = Ctx()
    ctx.vtest = vtest
    failures = []
    tests = [test_http_endpoints, test_ws_detections, test_ws_gate_check, test_heartbeat,
             test_same_file_shares_pipeline, test_twenty_clients_one_pipeline, test_refused_sources,
             test_unopenable_sources, test_damaged_files, test_malformed_queries, test_client_messages, test_mjpeg,
             test_dual_stream, test_slow_clients,
             test_connect_cycles]
    srv = None
    try:
        if not only or "test_cli" in only:
            t0 = time.monotonic()
            try:
                test_cli(binary)
                print(f"ok   test_cli ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception:
                failures.append("test_cli")
                print("FAIL test_cli\n" + traceback.format_exc(), flush=True)
        srv = Server(binary, ["--media-dir", os.path.dirname(vtest), "--media-dir", media, "--heartbeat", "1",
                              "--idle-stop", "0.5", "--client-queue", "4",
                              "--camera", "still=" + os.path.join(media, "still-main.avi"),
                              "--camera-substream", "still=" + os.path.join(media, "still-sub.avi"),
                              "--camera", "plain=file:" + os.path.join(media, "still-main.avi")],
                     env={"VIDEO_SOURCE": vtest, "DEVICE": "cpu"})
        ctx.srv = srv
        for t in tests:
            if only and t.__name__ not in only:
                continue
            t0 = time.monotonic()
            try:
                t(ctx)
                print(f"ok   {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception:
                failures.append(t.__name__)
                print(f"FAIL {t.__name__}\n" + traceback.format_exc(), flush=True)
        if not only or "test_port_in_use" in only:
            try:
                test_port_in_use(binary, srv.port)
                print("ok   test_port_in_use", flush=True)
            except Exception:
                failures.append("test_port_in_use")
                print("FAIL test_port_in_use\n" + traceback.format_exc(), flush=True)
        t0 = time.monotonic()
        try:
            srv.stop()
            print(f"ok   shutdown on SIGTERM ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception:
            failures.append("shutdown")
            print("FAIL shutdown\n" + traceback.format_exc(), flush=True)
        srv = None
    finally:
        if srv and srv.proc.poll() is None:
            srv.proc.kill()
            sys.stderr.write(srv.stderr()[-6000:])
        shutil.rmtree(media, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}", flush=True)
        return 1
    print("all passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
