#!/usr/bin/env python3
"""End-to-end tests of the gate's storage and interfaces: `verolux serve`
with gate rules (config/gate/rules.json, copied to a temporary folder so
that POST /gate/config can rewrite it), its SQLite store in that folder, a
real mosquitto broker on a free port, and the real detector on vtest.avi.

  - /ws/gate-check messages carry decisions, stats and events; every event a
    client received has an event_id that is already in the store (read here
    with Python's sqlite3, the server still writing) and in its session
    (GET /gate/session/{id});
  - the same events reach an MQTT subscriber on verolux/<gate_id>/events
    (a small MQTT 3.1.1 client written here with the standard library);
  - REST: completions, sessions, stats, counts, resets, and the rules
    (GET/POST /gate/config, persisted with a .bak of the previous file);
  - bad input: non-JSON and huge bodies, invalid rules, self-intersecting
    zones, SQL-looking and oversized session ids, malformed query
    parameters, wrong methods -> 4xx with a JSON detail, the running rules
    and the rules file untouched, the store unchanged;
  - SIGTERM: a clean exit (no leaks under ASan).

Waiting is on things the server does (messages arriving), with deadlines.

usage: test_gate_rest_e2e.py VEROLUX_BINARY
"""

import json
import os
import pwd
import shutil
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server_e2e import HOST, WS, Server, http_get, metrics  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOSQUITTO = "/usr/sbin/mosquitto"


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- a minimal MQTT 3.1.1 subscriber ----------------------------------------------


def _mqtt_str(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _mqtt_len(n):
    out = b""
    while True:
        d, n = n % 128, n // 128
        out += bytes([d | (0x80 if n else 0)])
        if not n:
            return out


class Subscriber(threading.Thread):
    """Connects, subscribes (QoS 1) and collects (topic, payload) pairs."""

    def __init__(self, port, topic):
        super().__init__(daemon=True)
        self.sock = socket.create_connection((HOST, port), timeout=10)
        var = _mqtt_str("MQTT") + bytes([4, 0x02]) + struct.pack(">H", 60)
        payload = _mqtt_str("vx-e2e-sub-%d" % os.getpid())
        self.sock.sendall(bytes([0x10]) + _mqtt_len(len(var) + len(payload)) + var + payload)
        t, body = self._packet()
        assert t >> 4 == 2 and body[1] == 0, f"CONNACK refused: {body!r}"
        sub = struct.pack(">H", 1) + _mqtt_str(topic) + bytes([1])
        self.sock.sendall(bytes([0x82]) + _mqtt_len(len(sub)) + sub)
        t, body = self._packet()
        assert t >> 4 == 9 and body[2] in (0, 1), f"SUBACK refused: {body!r}"
        self.messages = []
        self.lock = threading.Lock()
        self.sock.settimeout(None)
        self.start()

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _packet(self):
        head = self._exact(1)[0]
        n, mult = 0, 1
        while True:
            d = self._exact(1)[0]
            n += (d & 0x7F) * mult
            mult *= 128
            if not d & 0x80:
                break
        return head, self._exact(n)

    def run(self):
        try:
            while True:
                head, body = self._packet()
                if head >> 4 != 3:
                    continue
                qos = (head >> 1) & 3
                tl = struct.unpack(">H", body[:2])[0]
                topic = body[2 : 2 + tl].decode()
                rest = body[2 + tl :]
                if qos:
                    pid, rest = rest[:2], rest[2:]
                    self.sock.sendall(bytes([0x40, 2]) + pid)
                with self.lock:
                    self.messages.append((topic, json.loads(rest)))
        except (OSError, EOFError):
            pass

    def received(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        try:
            self.sock.sendall(bytes([0xE0, 0]))
            self.sock.close()
        except OSError:
            pass


class Broker:
    def __init__(self, folder):
        self.port = free_port()
        conf = os.path.join(folder, "mosquitto.conf")
        with open(conf, "w") as f:
            # Started as root, mosquitto would switch to its own user.
            f.write(f"listener {self.port} {HOST}\nallow_anonymous true\npersistence false\n"
                    f"log_dest file {folder}/mosquitto.log\nuser {pwd.getpwuid(os.getuid()).pw_name}\n")
        if not os.access(MOSQUITTO, os.X_OK):
            raise AssertionError(f"{MOSQUITTO} not found: install the Debian package 'mosquitto'")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf])
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("mosquitto did not start")
                time.sleep(0.02)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


# ---- helpers ------------------------------------------------------------------------


def get_json(port, path, method="GET", body=None):
    status, headers, data = http_get(port, path, method=method, body=body)
    assert headers.get("content-type", "").startswith("application/json"), (path, headers)
    return status, headers, json.loads(data)


def expect_4xx(port, path, status_want, method="GET", body=None, detail=None):
    status, headers, doc = get_json(port, path, method=method, body=body)
    assert status == status_want, (path, status, doc)
    assert isinstance(doc.get("detail"), str) and doc["detail"], doc
    if detail:
        assert detail in doc["detail"], (detail, doc["detail"])
    return doc, headers


def db_rows(db, sql, args=()):
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def collect_events(port, want, deadline_s):
    """Reads /ws/gate-check until `want` events arrived (or the deadline);
    returns (events, last gate_check message)."""
    ws = WS(port, "/ws/gate-check")
    info = ws.recv_json()
    assert info["type"] == "connection_info", info
    events, last = [], None
    deadline = time.monotonic() + deadline_s
    try:
        while time.monotonic() < deadline and len(events) < want:
            m = ws.recv_json()
            if m["type"] != "gate_check":
                continue
            last = m
            for key in ("decisions", "stats", "events", "gate_id", "stream_time", "fps", "optimizations"):
                assert key in m, (key, m)
            assert set(m["decisions"]) >= {"persons", "guards", "completions"}, m["decisions"]
            assert "gate_entries" in m["stats"] and "in_gate" in m["stats"], m["stats"]
            events.extend(m["events"])
    finally:
        ws.close()
    return events, last


# ---- tests ----------------------------------------------------------------------


def test_events_stored_before_sent(ctx):
    port, db = ctx["port"], ctx["db"]
    events, last = collect_events(port, 3, 60)
    assert len(events) >= 3, f"only {len(events)} gate events in 60 s of vtest.avi"
    names = {"person_entered_gate_area", "person_left_gate_area", "guard_anchored", "guard_left_anchor",
             "contact_started", "contact_ended", "check_completed", "check_failed"}
    ids = []
    for e in events:
        assert e["type"] in names, e
        assert isinstance(e["event_id"], int) and e["event_id"] > 0, e
        assert isinstance(e["t"], (int, float)) and e["t"] >= 0, e
        ids.append(e["event_id"])
    assert len(set(ids)) == len(ids), "event ids repeat"
    # Every event the client saw is in the store already.
    rows = db_rows(db, "SELECT id, type, payload FROM events WHERE id IN (%s)" % ",".join("?" * len(ids)), ids)
    stored = {r[0]: (r[1], json.loads(r[2])) for r in rows}
    for e in events:
        assert e["event_id"] in stored, f"event {e['event_id']} sent but not stored"
        typ, payload = stored[e["event_id"]]
        assert typ == e["type"] and payload["seq"] == e["seq"], (e, payload)
    # And in its session, by id.
    with_session = [e for e in events if e.get("session_id")]
    assert with_session, events
    e = with_session[0]
    status, _, doc = get_json(port, "/gate/session/" + urllib.parse.quote(e["session_id"], safe=""))
    assert status == 200, doc
    assert doc["session"]["session_id"] == e["session_id"], doc
    assert e["event_id"] in [x["event_id"] for x in doc["events"]], doc
    assert db_rows(db, "PRAGMA journal_mode")[0][0] == "wal"
    ctx["events"] = events
    print(f"     {len(events)} events over WebSocket, all stored first; e.g. {events[0]['type']} "
          f"t={events[0]['t']}", flush=True)


def test_one_gate_per_source(ctx):
    """A client that only watches detections at full resolution
    (use_substream=false) gets a pipeline of its own that records nothing:
    no visit is stored twice.  A gate-check client asking for full
    resolution (the spec's use_substream=false) does get a gate engine on
    that stream, its rows labelled SOURCE#full."""
    port, db = ctx["port"], ctx["db"]
    full = WS(port, "/ws/detections?use_substream=false")
    try:
        info = full.recv_json()
        assert info["type"] == "connection_info" and info["use_substream"] is False, info
        before = db_rows(db, "SELECT COUNT(*) FROM sessions")[0][0]
        events, _ = collect_events(port, 2, 60)  # while the full-resolution pipeline runs
        assert any(e["type"] == "person_entered_gate_area" for e in events) or \
            db_rows(db, "SELECT COUNT(*) FROM sessions")[0][0] > before, "nobody entered the gate in 60 s"
        sources = {r[0] for r in db_rows(db, "SELECT DISTINCT source FROM sessions")}
        assert len(sources) == 1 and not any("#" in x for x in sources), f"sessions from several engines: {sources}"
        # Now a gate-check client on that same full-resolution stream.
        gc = WS(port, "/ws/gate-check?use_substream=false")
        try:
            info = gc.recv_json()
            assert info["use_substream"] is False, info
            deadline = time.monotonic() + 30
            while True:
                assert time.monotonic() < deadline, "no gate_check with decisions at full resolution in 30 s"
                m = gc.recv_json()
                if m["type"] == "gate_check" and "persons" in m["decisions"]:
                    break
        finally:
            gc.close()
    finally:
        full.close()
    print(f"     a full-resolution detections client recorded nothing ({sources.pop()} only); a full-resolution "
          f"gate-check client got decisions", flush=True)


def test_mqtt_published(ctx):
    sub, db = ctx["sub"], ctx["db"]
    # The first events were published before this test looked: wait until
    # the subscriber holds at least as many as the WebSocket client saw.
    want = len(ctx.get("events", [])) or 1
    deadline = time.monotonic() + 30
    while len([m for m in sub.received() if m[0] == "verolux/walkway/events"]) < want:
        assert time.monotonic() < deadline, f"MQTT: {len(sub.received())} messages, wanted {want} events"
        time.sleep(0.05)
    got = [p for t, p in sub.received() if t == "verolux/walkway/events"]
    ids = [p["event_id"] for p in got]
    rows = db_rows(db, "SELECT COUNT(*) FROM events WHERE id IN (%s)" % ",".join("?" * len(ids)), ids)
    assert rows[0][0] == len(set(ids)), "an event published to MQTT is not in the store"
    for p in got:
        assert p["gate_id"] == "walkway" and p["source"], p
    seen_ws = {e["event_id"] for e in ctx.get("events", [])}
    assert seen_ws <= set(ids), f"events seen on WebSocket but not over MQTT: {seen_ws - set(ids)}"
    m = metrics(ctx["port"])
    assert m["verolux_mqtt_connected"] == 1, m
    assert m['verolux_mqtt_messages_total{state="published"}'] >= len(got), m
    assert m['verolux_mqtt_messages_total{state="dropped"}'] == 0, m


def test_completions_and_stats(ctx):
    port, db = ctx["port"], ctx["db"]
    status, _, doc = get_json(port, "/gate/completions")
    assert status == 200 and set(doc) == {"count", "completions"}, doc
    assert doc["count"] == len(doc["completions"])
    n_db = db_rows(db, "SELECT COUNT(*) FROM completions")[0][0]
    assert doc["count"] == min(n_db, 100), (doc["count"], n_db)
    status, _, doc = get_json(port, "/gate/completions?limit=1&start_time=2000-01-01T00:00:00Z")
    assert status == 200 and doc["count"] <= 1, doc
    status, _, doc = get_json(port, "/gate/completions?start_time=%d" % (time.time() + 3600))
    assert status == 200 and doc["count"] == 0, doc

    status, _, st = get_json(port, "/gate/stats")
    assert status == 200, st
    keys = {"total_checks", "completed", "failed", "success_rate", "avg_score", "avg_duration", "total_events",
            "current_state"}
    assert set(st) == keys, st
    assert st["total_checks"] == st["completed"] + st["failed"], st
    assert 0 <= st["success_rate"] <= 1
    total = db_rows(db, "SELECT COUNT(*) FROM events")[0][0]
    assert 0 < st["total_events"] <= total, (st["total_events"], total)
    assert st["current_state"]["gate_id"] == "walkway", st["current_state"]
    assert st["current_state"]["sources"], st["current_state"]
    # A window in the future holds nothing; ISO 8601 with an offset parses.
    status, _, st = get_json(port, "/gate/stats?start_time=2099-01-01T00:00:00%2B02:00")
    assert status == 200 and st["total_events"] == 0 and st["total_checks"] == 0, st


def test_counts_and_resets(ctx):
    port = ctx["port"]
    status, _, c = get_json(port, "/counts")
    assert status == 200, c
    for k in ("gate_entries", "gate_exits", "anchor_entries", "anchor_exits", "in_gate", "passed_through",
              "frames", "sources"):
        assert k in c, (k, c)
    assert c["frames"] > 0 and c["gate_entries"] >= 1, c
    status, _, r = get_json(port, "/counts/reset", method="POST")
    assert status == 200 and r["status"] == "ok", r
    status, _, c2 = get_json(port, "/counts")
    assert c2["frames"] < c["frames"] and c2["gate_entries"] <= c["gate_entries"], (c, c2)
    status, _, r = get_json(port, "/gate/reset", method="POST")
    assert status == 200 and r["reset"] == "gate", r
    _, headers = expect_4xx(port, "/gate/reset", 405)
    assert headers.get("allow") == "POST", headers
    _, headers = expect_4xx(port, "/counts", 405, method="POST", body=b"{}")
    assert headers.get("allow") == "GET", headers
    expect_4xx(port, "/counts/reset", 405)
    expect_4xx(port, "/gate/stats", 405, method="DELETE")


def test_bad_queries(ctx):
    port = ctx["port"]
    for q, part in (("limit=0", "limit"), ("limit=1001", "limit"), ("limit=abc", "limit"), ("limit=", "limit"),
                    ("limit=5&limit=6", "twice"), ("start_time=yesterday", "start_time"),
                    ("start_time=2026-02-30T25:00:00Z", "start_time"), ("start_time=-5", "start_time"),
                    ("start_time=1e400", "start_time")):
        expect_4xx(port, "/gate/completions?" + q, 400, detail=part)
    expect_4xx(port, "/gate/stats?start_time=100&end_time=50", 400, detail="end_time")
    expect_4xx(port, "/gate/stats?end_time=soon", 400, detail="end_time")
    expect_4xx(port, "/gate/nothing", 404)


def test_sql_looking_ids(ctx):
    port, db = ctx["port"], ctx["db"]
    before = db_rows(db, "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM sessions)")[0]
    tables = db_rows(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
    for sid in ("x' OR '1'='1", "1; DROP TABLE events; --", "\" UNION SELECT payload FROM completions --",
                "%' --", "../../etc/passwd"):
        doc, _ = expect_4xx(port, "/gate/session/" + urllib.parse.quote(sid, safe=""), 404)
        # The server normalises '..' in paths: that one is not a session URL any more.
        assert doc.get("session_id") == sid or ".." in sid, doc
    expect_4xx(port, "/gate/session/" + "a" * 300, 400, detail="too long")
    expect_4xx(port, "/gate/session/", 400)
    expect_4xx(port, "/gate/session/x", 405, method="POST", body=b"{}")
    after = db_rows(db, "SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM sessions)")[0]
    assert db_rows(db, "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name") == tables
    # Counts only grow (the pipeline keeps writing); nothing was deleted.
    assert after[0] >= before[0] and after[1] >= before[1], (before, after)


def test_config_bad_input(ctx):
    port, rules = ctx["port"], ctx["rules"]
    status, _, running = get_json(port, "/gate/config")
    assert status == 200 and running["gate_id"] == "walkway", running
    with open(rules, "rb") as f:
        on_disk = f.read()

    def unchanged():
        assert get_json(port, "/gate/config")[2] == running, "the running rules changed"
        with open(rules, "rb") as f:
            assert f.read() == on_disk, "the rules file changed"
        assert not os.path.exists(rules + ".tmp")

    doc, _ = expect_4xx(port, "/gate/config", 400, method="POST", body=b"gate_id=evil")
    assert doc["config_changed"] is False and doc["error"]["line"] == 1, doc
    unchanged()
    expect_4xx(port, "/gate/config", 400, method="POST", body=b"\xff\xfe\x00binary")
    expect_4xx(port, "/gate/config", 400, method="POST", body=b"")
    unchanged()
    # Over the 64 KiB limit: refused whole, whatever it contains.
    big = json.dumps({**running, "description": "x" * (2 << 20)}).encode()
    expect_4xx(port, "/gate/config", 413, method="POST", body=big, detail="too large")
    unchanged()
    # A chunked upload (no Content-Length) is refused up front, not waited for.
    # (One write, as a client with a small body sends it: the server answers
    # and closes without reading it.)
    body = json.dumps(running).encode()
    sock = socket.create_connection((HOST, port), timeout=20)
    sock.sendall(b"POST /gate/config HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                 b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    reply = b""
    while True:  # until the answer is complete (the connection may stay open)
        head, sep, rest = reply.partition(b"\r\n\r\n")
        if sep:
            length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if length and len(rest) >= length[0]:
                break
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the answer was complete: {reply!r}"
        reply += chunk
    sock.close()
    assert head.startswith(b"HTTP/1.1 411"), reply[:200]
    assert b"Content-Length" in rest, reply
    unchanged()
    bad = json.loads(json.dumps(running))
    bad["timers"]["session_timeout_s"] = "soon"
    doc, _ = expect_4xx(port, "/gate/config", 422, method="POST", body=json.dumps(bad, indent=1).encode())
    assert doc["error"]["key"] == "timers.session_timeout_s" and doc["error"]["line"] > 1, doc
    bow = json.loads(json.dumps(running))
    bow["zones"]["gate_area"]["polygon"] = [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]
    doc, _ = expect_4xx(port, "/gate/config", 422, method="POST", body=json.dumps(bow).encode())
    assert "intersect" in doc["detail"], doc
    evil = json.loads(json.dumps(running))
    evil["gate_id"] = "g'; DROP TABLE events; --"
    expect_4xx(port, "/gate/config", 422, method="POST", body=json.dumps(evil).encode(), detail="gate_id")
    high = json.loads(json.dumps(running))
    high["scoring"]["threshold"] = 7
    expect_4xx(port, "/gate/config", 422, method="POST", body=json.dumps(high).encode(), detail="threshold")
    for probe in ("/etc/passwd", "../../../../etc/passwd"):  # no reading files outside the rules' folder
        peek = json.loads(json.dumps(running))
        peek["zones"]["gate_area"] = probe
        doc, _ = expect_4xx(port, "/gate/config", 422, method="POST", body=json.dumps(peek).encode(),
                            detail="relative")
        assert "root:" not in json.dumps(doc), doc
    unchanged()
    ctx["running"], ctx["on_disk"] = running, on_disk


def test_config_update(ctx):
    port, rules = ctx["port"], ctx["rules"]
    running, on_disk = ctx["running"], ctx["on_disk"]
    new = json.loads(json.dumps(running))
    new["gate_id"] = "walkway-2"
    new["timers"]["person_min_dwell_s"] = 4.5
    new["unknown_key"] = True
    status, _, doc = get_json(port, "/gate/config", method="POST", body=json.dumps(new).encode())
    assert status == 200 and doc["status"] == "ok", doc
    assert doc["config"]["gate_id"] == "walkway-2", doc
    assert any(w["key"] == "unknown_key" for w in doc["warnings"]), doc["warnings"]
    assert get_json(port, "/gate/config")[2]["timers"]["person_min_dwell_s"] == 4.5
    with open(rules + ".bak", "rb") as f:
        assert f.read() == on_disk, "the backup is not the previous rules file"
    with open(rules) as f:
        saved = json.load(f)
    assert saved["gate_id"] == "walkway-2" and saved["timers"]["person_min_dwell_s"] == 4.5, saved
    # The running engine uses it: gate_check messages name the new gate.
    ws = WS(port, "/ws/gate-check")
    deadline = time.monotonic() + 30
    try:
        while True:
            assert time.monotonic() < deadline, "gate_check messages never named the new gate"
            m = ws.recv_json()
            if m["type"] == "gate_check" and m["gate_id"] == "walkway-2":
                break
    finally:
        ws.close()


def test_kill9_and_restart(binary, folder, rules):
    """kill -9 while events flow: every event a client received is in the
    store, which opens cleanly; a restarted server on the same store closes
    the sessions the dead one left open and serves the old events."""
    db = os.path.join(folder, "kill9", "gate.db")
    srv = Server(binary, ["--gate-rules", rules, "--db", db])
    events = []
    try:
        # Killed while a visitor's session is open (entered, no verdict yet).
        ws = WS(srv.port, "/ws/gate-check")
        deadline = time.monotonic() + 60
        open_ids = set()
        while not open_ids:
            assert time.monotonic() < deadline, f"no open session within 60 s: {events}"
            m = ws.recv_json()
            if m["type"] != "gate_check":
                continue
            for e in m["events"]:
                events.append(e)
                if e["type"] == "person_entered_gate_area" and e.get("session_id"):
                    open_ids.add(e["session_id"])
                if e["type"] in ("check_completed", "check_failed"):
                    open_ids.discard(e.get("session_id"))
        srv.proc.kill()  # SIGKILL
        srv.proc.wait(10)
        ws.sock.close()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait()
    os.unlink(srv.log.name)
    assert os.path.exists(db + "-wal"), "the WAL should still be there after a kill"
    ids = [e["event_id"] for e in events]
    rows = db_rows(db, "SELECT COUNT(*) FROM events WHERE id IN (%s)" % ",".join("?" * len(ids)), ids)
    assert rows[0][0] == len(ids), "an event a client received was lost"
    assert db_rows(db, "PRAGMA integrity_check")[0][0] == "ok"
    open_before = db_rows(db, "SELECT COUNT(*) FROM sessions WHERE state = 'open'")[0][0]

    srv = Server(binary, ["--gate-rules", rules, "--db", db])
    try:
        sid = next(e["session_id"] for e in events if e.get("session_id"))
        status, _, doc = get_json(srv.port, "/gate/session/" + urllib.parse.quote(sid, safe=""))
        assert status == 200, doc
        assert {e["event_id"] for e in events if e.get("session_id") == sid} <= {x["event_id"] for x in doc["events"]}
        left = db_rows(db, "SELECT COUNT(*) FROM sessions WHERE reason = 'server_restart'")[0][0]
        assert left == open_before, (left, open_before)
        assert open_before >= 1, "the session open at the kill is not in the store"
        assert "closed as abandoned" in srv.stderr(), srv.stderr()[-2000:]
    finally:
        srv.stop()
    print(f"     {len(ids)} events received before kill -9, all stored; {open_before} open sessions closed "
          f"as abandoned on restart", flush=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    binary = os.path.abspath(sys.argv[1])
    folder = tempfile.mkdtemp(prefix="vx-gate-e2e-")
    shutil.copytree(os.path.join(ROOT, "config", "gate"), os.path.join(folder, "gate"))
    rules = os.path.join(folder, "gate", "rules.json")
    db = os.path.join(folder, "data", "gate.db")
    broker = srv = sub = None
    failures = []
    try:
        broker = Broker(folder)
        sub = Subscriber(broker.port, "verolux/#")
        srv = Server(binary, ["--gate-rules", rules, "--db", db, "--mqtt-url", f"mqtt://{HOST}:{broker.port}"])
        ctx = {"port": srv.port, "db": db, "rules": rules, "sub": sub}
        tests = [test_events_stored_before_sent, test_one_gate_per_source, test_mqtt_published, test_completions_and_stats,
                 test_bad_queries, test_sql_looking_ids, test_counts_and_resets, test_config_bad_input,
                 test_config_update]
        for t in tests:
            t0 = time.monotonic()
            try:
                t(ctx)
                print(f"ok   {t.__name__} ({time.monotonic() - t0:.1f} s)", flush=True)
            except Exception:
                failures.append(t.__name__)
                print(f"FAIL {t.__name__}\n" + traceback.format_exc(), flush=True)
        try:
            srv.stop()
            print("ok   shutdown on SIGTERM", flush=True)
        except Exception:
            failures.append("shutdown")
            print("FAIL shutdown\n" + traceback.format_exc(), flush=True)
        srv = None
        # The store opens cleanly after the server is gone.
        assert db_rows(db, "PRAGMA integrity_check")[0][0] == "ok"
        try:
            test_kill9_and_restart(binary, folder, rules)
            print("ok   test_kill9_and_restart", flush=True)
        except Exception:
            failures.append("test_kill9_and_restart")
            print("FAIL test_kill9_and_restart\n" + traceback.format_exc(), flush=True)
    finally:
        if srv and srv.proc.poll() is None:
            srv.proc.kill()
            sys.stderr.write(srv.stderr()[-6000:])
        if sub:
            sub.close()
        if broker:
            broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}", flush=True)
        return 1
    print("all passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
