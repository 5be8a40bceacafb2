#!/usr/bin/env python3
"""RTSP end to end: `verolux serve` reading vtest.avi from a real RTSP server.

The RTSP server is GStreamer's (gst-rtsp-server, through python3-gi), run
by this file itself in a child process (`--rtsp-server PORT MEDIA`).  It
serves an H.264 transcode of vtest.avi (made here with x264enc) at three
mounts that differ only in the lower transports they allow:

  /tcp  RTP interleaved in the RTSP connection only
  /udp  RTP over UDP only: the client's first try (TCP) is refused with
        461 Unsupported Transport, so it must fall back to UDP
  /any  both

The tests start the real server on a free loopback port with the RTSP
server's prefix allowed, connect real WebSocket clients, and check:

  - person detections arrive over TCP and over UDP, and the server says
    which transport it opened (its log line for the opened source);
  - killing the RTSP server (SIGKILL, no goodbye) turns the source's
    /health entry to degraded, disconnected, with the failure as its last
    error; restarting it on the same port brings detections back to the
    client that stayed connected, on new frames, and /health counts the
    reconnect.  The server runs with VEROLUX_VIDEO_BACKOFF_S=0.2 (the first
    retry delay; still doubled per failure) so the test does not sit
    through whole seconds of backoff;
  - unreachable cameras: a closed port, a host name that does not resolve
    and a server that accepts the connection and never answers each end in
    an error message and a close (the last after the open timeout, 10 s per
    transport), and the server keeps serving.

Waiting is on the server (messages arriving, sockets closing); where a
state is only visible in /health, it is read again after each message of a
live client on the always-running file source, so that source's frame rate
paces the polling and every wait has a deadline.

usage: test_rtsp_e2e.py VEROLUX_BINARY [TEST_NAME...]
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server_e2e import (WS, Closed, Server, check_detections, expect_error_close,  # noqa: E402
                             http_get, quote, sample_video)

HOST = "127.0.0.1"
# Debian's python3-gi belongs to the system python; another python3 may come
# first in PATH.
GI_PYTHON = "/usr/bin/python3"


# ---- the RTSP server (child process) ------------------------------------------------


def rtsp_server_main(port, media):
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(port))
    lower = GstRtsp.RTSPLowerTrans
    mounts = server.get_mount_points()
    for path, protocols in (("/tcp", lower.TCP), ("/udp", lower.UDP), ("/any", lower.TCP | lower.UDP)):
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(f'( filesrc location="{media}" ! qtdemux ! h264parse '
                           f'! rtph264pay name=pay0 pt=96 config-interval=1 )')
        factory.set_shared(True)
        factory.set_protocols(protocols)
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {HOST}:{port}", flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()
    return 0


def transcode_main(src, dst):
    """vtest.avi -> H.264 (baseline, no B-frames, key frame every second) in MP4."""
    import gi
    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    pipe = Gst.parse_launch(
        f'filesrc location="{src}" ! decodebin ! videoconvert ! video/x-raw,format=I420 '
        f'! x264enc speed-preset=ultrafast tune=zerolatency key-int-max=10 bframes=0 threads=1 '
        f'! video/x-h264,profile=constrained-baseline ! h264parse ! mp4mux ! filesink location="{dst}"')
    pipe.set_state(Gst.State.PLAYING)
    msg = pipe.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipe.set_state(Gst.State.NULL)
    if not msg or msg.type != Gst.MessageType.EOS:
        err = msg.parse_error() if msg else ("timed out", "")
        print(f"transcode failed: {err}", file=sys.stderr)
        return 1
    return 0


class RtspServer:
    def __init__(self, port, media):
        self.port, self.media = port, media
        self.start()

    def start(self):
        self.proc = subprocess.Popen([GI_PYTHON, os.path.abspath(__file__), "--rtsp-server", str(self.port),
                                      self.media], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)
        line = self.proc.stdout.readline().decode(errors="replace").strip() if ready else "(nothing in 60 s)"
        if line != "ready":
            self.proc.kill()
            err = self.proc.stderr.read().decode(errors="replace")
            raise AssertionError(f"RTSP server did not start: {line!r} {err[-2000:]}")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def url(self, mount):
        return f"rtsp://{HOST}:{self.port}{mount}"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- helpers ----------------------------------------------------------------------


def source_health(port, source):
    h = json.loads(http_get(port, "/health")[2])
    for s in h["sources"]:
        if s["source"] == source:
            return s
    return None


def detections(ws, count, min_id=0, timeout=60):
    """The next `count` detections messages with frame_id > min_id."""
    out, deadline = [], time.monotonic() + timeout
    while len(out) < count:
        assert time.monotonic() < deadline, f"only {len(out)} of {count} results in {timeout} s"
        msg = ws.recv_json()
        if msg["type"] == "error":
            raise AssertionError(f"error from the server: {msg['message']}")
        if msg["type"] != "detections" or msg["frame_id"] <= min_id:
            continue
        check_detections(msg)
        if out:
            assert msg["frame_id"] > out[-1]["frame_id"], (msg["frame_id"], out[-1]["frame_id"])
        out.append(msg)
    return out


def persons(msgs):
    return sum(1 for m in msgs if any(d["cls"] == "person" for d in m["detections"]))


def opened_over(ctx, url):
    """The transports named by the server's log lines for the source's opens."""
    m = re.findall(re.escape(f"source {url}: opened (") + r"[^)]*?rtsp over (tcp|udp)", ctx.srv.stderr())
    return m


class Clock:
    """Ticks at the always-running file source's frame rate (10 fps)."""

    def __init__(self, port):
        self.ws = WS(port, "/ws/detections")
        assert self.ws.recv_json()["type"] == "connection_info"

    def wait_for(self, what, cond, ticks=300):
        for _ in range(ticks):
            self.ws.recv_json()
            v = cond()
            if v:
                return v
        raise AssertionError(f"not within {ticks} frames of the clock: {what}")

    def close(self):
        self.ws.close()


# ---- tests ------------------------------------------------------------------------


def stream_test(ctx, mount, transport):
    url = ctx.rtsp.url(mount)
    ws = WS(ctx.srv.port, "/ws/detections?source=" + quote(url), timeout=30)
    info = ws.recv_json()
    assert info["type"] == "connection_info" and info["source"] == url, info
    msgs = detections(ws, 20)
    ws.close()
    with_person = persons(msgs)
    assert with_person >= 0.8 * len(msgs), f"persons on {with_person} of {len(msgs)} frames"
    assert set(opened_over(ctx, url)) == {transport}, opened_over(ctx, url)
    h = source_health(ctx.srv.port, url)
    assert h and h["kind"] == "rtsp" and h["frame_size"] == [768, 576], h
    ctx.note(f"{mount}: persons on {with_person}/{len(msgs)} frames over {transport}")


def test_tcp(ctx):
    stream_test(ctx, "/tcp", "tcp")


def test_udp_fallback(ctx):
    """The server refuses TCP: the client falls back to UDP."""
    stream_test(ctx, "/udp", "udp")


def test_reconnect(ctx):
    """Kill the RTSP server, see the source degrade, restart it, see detections resume."""
    port = ctx.srv.port
    url = ctx.rtsp.url("/any")
    ws = WS(port, "/ws/detections?source=" + quote(url), timeout=60)
    assert ws.recv_json()["type"] == "connection_info"
    before = detections(ws, 5)
    clock = Clock(port)
    assert source_health(port, url)["health"] == "healthy"

    ctx.rtsp.kill()
    t_kill = time.monotonic()
    h = clock.wait_for("the source degraded after the RTSP server died",
                       lambda: (lambda s: s if s and s["health"] == "degraded" and s["last_error"] else None)(
                           source_health(port, url)))
    assert h["connected"] is False, h
    assert url in h["last_error"], h["last_error"]
    ctx.note(f"killed: {h['health']} after {time.monotonic() - t_kill:.1f} s, last error: {h['last_error']}")
    # Every frame decoded so far has a frame_id at most this.
    decoded = source_health(port, url)["frames_decoded"]

    ctx.rtsp.start()
    t_restart = time.monotonic()
    after = detections(ws, 10, min_id=max(decoded, before[-1]["frame_id"]), timeout=60)
    resumed = time.monotonic() - t_restart
    ws.close()
    assert persons(after) >= 0.8 * len(after), f"persons on {persons(after)} of {len(after)} frames"
    h = clock.wait_for("the source healthy again",
                       lambda: (lambda s: s if s and s["health"] == "healthy" else None)(source_health(port, url)))
    clock.close()
    assert h["reconnects"] >= 1 and h["connected"] is True, h
    ctx.note(f"restarted: detections again after {resumed:.1f} s, {h['reconnects']} reconnect(s)")


def test_unreachable(ctx):
    """Closed port, unresolvable host, silent server: errors and closes, no hang."""
    port = ctx.srv.port
    results, threads = {}, []

    def one(name, url, pattern, timeout):
        t0 = time.monotonic()
        try:
            msg, code = expect_error_close(port, "/ws/detections?source=" + quote(url), pattern, timeout)
            assert code == 1011, code
            results[name] = (None, f"{msg['message']} ({time.monotonic() - t0:.1f} s)")
        except Exception:
            results[name] = (traceback.format_exc(), None)

    cases = [("closed port", f"rtsp://{HOST}:{ctx.closed_port}/stream", r"cannot open source.*refused", 60),
             ("no such host", "rtsp://camera.invalid/stream",
              r"cannot open source.*cannot resolve the host name 'camera.invalid'", 90),
             ("silent server", f"rtsp://{HOST}:{ctx.silent_port}/stream",
              r"cannot open source.*timed out over tcp.*timed out over udp", 90)]
    for c in cases:
        t = threading.Thread(target=one, args=c)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for name, _, _, _ in cases:
        err, note = results[name]
        assert not err, f"{name}:\n{err}"
        ctx.note(f"{name}: {note}")
    # The server lives on and still serves the RTSP source.
    ws = WS(port, "/ws/detections?source=" + quote(ctx.rtsp.url("/tcp")), timeout=30)
    assert ws.recv_json()["type"] == "connection_info"
    detections(ws, 2)
    ws.close()


class Ctx:
    def note(self, s):
        print(f"    {s}", flush=True)


def silent_server():
    """Accepts TCP connections and never says a word (until the process ends)."""
    s = socket.socket()
    s.bind((HOST, 0))
    s.listen(8)
    held = []

    def run():
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            held.append(c)

    threading.Thread(target=run, daemon=True).start()
    return s, held


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--rtsp-server":
        return rtsp_server_main(int(sys.argv[2]), sys.argv[3])
    if len(sys.argv) >= 2 and sys.argv[1] == "--transcode":
        return transcode_main(sys.argv[2], sys.argv[3])
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    only = set(sys.argv[2:])
    vtest = sample_video()
    if not vtest:
        return 1
    if subprocess.run([GI_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                      capture_output=True).returncode != 0:
        print(f"FAIL: {GI_PYTHON} cannot load GstRtspServer: install python3-gi and "
              "gir1.2-gst-rtsp-server-1.0 (scripts/setup)", flush=True)
        return 1

    tmp = tempfile.mkdtemp(prefix="verolux-rtsp-")
    ctx, failures, srv, rtsp = Ctx(), [], None, None
    listener, held = silent_server()
    try:
        media = os.path.join(tmp, "vtest-h264.mp4")
        t0 = time.monotonic()
        r = subprocess.run([GI_PYTHON, os.path.abspath(__file__), "--transcode", vtest, media],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        print(f"     transcoded vtest.avi to H.264 in {time.monotonic() - t0:.1f} s", flush=True)

        rtsp = RtspServer(free_port(), media)
        ctx.rtsp = rtsp
        ctx.closed_port = free_port()
        ctx.silent_port = listener.getsockname()[1]
        allow = [rtsp.url("/"), f"rtsp://{HOST}:{ctx.closed_port}/", "rtsp://camera.invalid/",
                 f"rtsp://{HOST}:{ctx.silent_port}/"]
        args = ["--heartbeat", "1", "--idle-stop", "0.5"]
        for a in allow:
            args += ["--allow-source", a]
        srv = Server(binary, args, env={"VIDEO_SOURCE": vtest, "DEVICE": "cpu", "VEROLUX_VIDEO_BACKOFF_S": "0.2",
                                        "VEROLUX_LOG": "info"})
        ctx.srv = srv
        for t in (test_tcp, test_udp_fallback, test_reconnect, test_unreachable):
            if only and t.__name__ not in only:
                continue
            t0 = time.monotonic()
            try:
                t(ctx)
                print(f"ok   {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception:
                failures.append(t.__name__)
                print(f"FAIL {t.__name__}\n" + traceback.format_exc(), flush=True)
        t0 = time.monotonic()
        try:
            srv.stop()
            print(f"ok   shutdown on SIGTERM ({time.monotonic() - t0:.1f} s)", flush=True)
        except Exception:
            failures.append("shutdown")
            print("FAIL shutdown\n" + traceback.format_exc(), flush=True)
        srv = None
    except Exception:
        failures.append("setup")
        print("FAIL setup\n" + traceback.format_exc(), flush=True)
    finally:
        if srv and srv.proc.poll() is None:
            srv.proc.kill()
            sys.stderr.write(srv.stderr()[-6000:])
        if rtsp and rtsp.proc.poll() is None:
            rtsp.kill()
        listener.close()
        for c in held:
            c.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}", flush=True)
        return 1
    print("all passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
