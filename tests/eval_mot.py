#!/usr/bin/env python3
"""Scores tracker output and gate events against a scenario's ground truth.

usage: eval_mot.py TRUTH.json REPLAY.jsonl [EXPECTED_EVENTS.json]

TRUTH.json comes from scripts/make-scenarios; REPLAY.jsonl from eval_mot
(tests/eval_mot.c: the real detector and gate engine on every frame).

Tracking: CLEAR MOT (Bernardin & Stiefelhagen 2008).  Per frame, truth
boxes of actors at least half visible are counted; actors less visible
(behind an occluder, mostly out of the frame) are "don't care": a track on
them is neither a false positive nor a match, and missing them is no miss.
Hypotheses are the confirmed tracks matched to a detection in that frame
(what ByteTrack reports; coasting predictions are not outputs).  A pair
matches at IoU >= 0.5; last frame's correspondences are kept while they
still match, the rest is assigned greedily by IoU.  An id switch is a truth
actor matched to a different track id than at its previous match.
MOTA = 1 - (FN + FP + IDSW) / GT.

Detection rate: counted truth boxes with a person detection at IoU >= 0.5.

Events: each expected event (type, actor, reason) needs a reported event of
the same type, reason and actor within the tolerance (default 0.5 s); the
reported one's track is mapped to an actor by the truth box it overlapped
most over the run (its foot point, when the replay has no boxes).  Reported
events without an expected one are errors, as are expected events that are
more than two tolerances apart and arrive in the wrong order.
"""

import json
import sys

IOU_MATCH = 0.5
VIS_MIN = 0.5


def load_truth(path):
    with open(path) as f:
        return json.load(f)


def load_replay(path):
    frames, tail = [], None
    with open(path) as f:
        for line in f:
            o = json.loads(line)
            if "counts" in o:
                tail = o
            else:
                frames.append(o)
    return frames, tail


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / u if u > 0 else 0.0


def _greedy(pairs):
    """pairs: [(score, a, b)]; one-to-one, best first."""
    used_a, used_b, out = set(), set(), []
    for s, a, b in sorted(pairs, key=lambda p: (-p[0], str(p[1]), str(p[2]))):
        if a in used_a or b in used_b:
            continue
        used_a.add(a)
        used_b.add(b)
        out.append((a, b, s))
    return out


def truth_index(truth, t):
    return int(round(t * truth["fps"]))


def mot(truth, replay):
    """CLEAR MOT over the replay's frames; returns a dict of metrics."""
    tf = truth["frames"]
    gt_n = fn = fp = idsw = 0
    iou_sum, matches = 0.0, 0
    last = {}  # actor -> track id of its last match
    cover = {}  # actor -> {track id: frames}
    track_hits = {}  # track id -> {actor: frames}
    det_ok = det_n = 0
    seen = set()
    for fr in replay:
        i = truth_index(truth, fr["t"])
        if i < 0 or i >= len(tf) or i in seen:
            continue
        seen.add(i)
        actors = [a for a in tf[i]["actors"] if a["on_screen"]]
        counted = {a["id"]: a["box"] for a in actors if a["visibility"] >= VIS_MIN}
        ignored = {a["id"]: a["box"] for a in actors if a["visibility"] < VIS_MIN}
        hyps = {tr[0]: tr[1:5] for tr in fr["tracks"] if tr[5] == 0}
        gt_n += len(counted)
        # detection rate
        for aid, box in counted.items():
            det_n += 1
            if any(iou(box, d[:4]) >= IOU_MATCH for d in fr["dets"]):
                det_ok += 1
        # keep last frame's correspondences that still hold
        pairs = {}
        for aid, tid in last.items():
            if aid in counted and tid in hyps and iou(counted[aid], hyps[tid]) >= IOU_MATCH:
                pairs[aid] = tid
        rest = [(iou(counted[a], hyps[t]), a, t) for a in counted if a not in pairs for t in hyps
                if t not in pairs.values() and iou(counted[a], hyps[t]) >= IOU_MATCH]
        for a, t, _ in _greedy(rest):
            pairs[a] = t
        for a, t in pairs.items():
            if a in last and last[a] != t:
                idsw += 1
            last[a] = t
            iou_sum += iou(counted[a], hyps[t])
            matches += 1
            cover.setdefault(a, {}).setdefault(t, 0)
            cover[a][t] += 1
            track_hits.setdefault(t, {}).setdefault(a, 0)
            track_hits[t][a] += 1
        fn += len(counted) - len(pairs)
        # unmatched hypotheses on don't-care actors are not false positives
        free = [t for t in hyps if t not in pairs.values()]
        care = set()
        for s, a, t in _greedy([(iou(b, hyps[t]), a, t) for a, b in ignored.items() for t in free
                                if iou(b, hyps[t]) >= IOU_MATCH]):
            care.add(t)
            track_hits.setdefault(t, {}).setdefault(a, 0)
        fp += len([t for t in free if t not in care])
    mota = 1.0 - (fn + fp + idsw) / gt_n if gt_n else float("nan")
    return {
        "frames": len(seen),
        "gt": gt_n,
        "fn": fn,
        "fp": fp,
        "idsw": idsw,
        "mota": mota,
        "motp_iou": iou_sum / matches if matches else 0.0,
        "detection_rate": det_ok / det_n if det_n else float("nan"),
        "ids_per_actor": {a: sorted(c) for a, c in sorted(cover.items())},
        "track_to_actor": {t: max(h, key=lambda a: (h[a], a)) for t, h in track_hits.items() if h},
    }


def actor_by_foot(truth, t, x, y):
    """The on-screen actor whose truth foot point is nearest (x, y) at time t."""
    tf = truth["frames"]
    i = min(max(truth_index(truth, t), 0), len(tf) - 1)
    best, bd = None, None
    for a in tf[i]["actors"]:
        if not a["on_screen"]:
            continue
        b = a["box"]
        d = ((b[0] + b[2]) / 2 - x) ** 2 + (b[3] - y) ** 2
        if bd is None or d < bd:
            best, bd = a["id"], d
    return best


def map_tracks_by_events(truth, events):
    """track id -> actor, by majority of the events' foot points (no boxes needed)."""
    votes = {}
    for e in events:
        a = actor_by_foot(truth, e["t"], e["x"], e["y"])
        if a is not None:
            votes.setdefault(e["track_id"], {}).setdefault(a, 0)
            votes[e["track_id"]][a] += 1
    return {t: max(v, key=lambda a: (v[a], a)) for t, v in votes.items()}


def compare_events(expected, got, track_to_actor, tol):
    """Problems (strings) between expected events and reported ones; [] when they agree.

    expected: [{type, t, actor, other?, reason?}]; got: event JSON objects
    (vx_gate_event_to_json); track_to_actor maps got's track ids."""
    problems = []
    pool = []
    for k, g in enumerate(got):
        pool.append({"k": k, "type": g["type"], "t": g["t"], "actor": track_to_actor.get(g["track_id"]),
                     "reason": g.get("reason") or "", "raw": g})
    used = set()
    matched = []  # (expected, got)
    for e in expected:
        cands = [p for p in pool if p["k"] not in used and p["type"] == e["type"] and p["actor"] == e["actor"]
                 and p["reason"] == (e.get("reason") or "") and abs(p["t"] - e["t"]) <= tol]
        if not cands:
            near = [p for p in pool if p["type"] == e["type"] and p["actor"] == e["actor"]]
            hint = ", ".join(f'{p["t"]:.2f}' + (f' ({p["reason"]})' if p["reason"] else "") for p in near) or "none"
            problems.append(f'missing {e["type"]} of {e["actor"]}' + (f' ({e["reason"]})' if e.get("reason") else "")
                            + f' at {e["t"]:.2f} s +-{tol} (reported for {e["actor"]} at: {hint})')
            continue
        best = min(cands, key=lambda p: (abs(p["t"] - e["t"]), p["k"]))
        used.add(best["k"])
        matched.append((e, best))
    for p in pool:
        if p["k"] not in used:
            r = p["raw"]
            problems.append(f'unexpected {p["type"]} of track {r["track_id"]} ({p["actor"]}) at {p["t"]:.2f} s'
                            + (f' ({p["reason"]})' if p["reason"] else ""))
    for i, (e1, g1) in enumerate(matched):
        for e2, g2 in matched[i + 1:]:
            # Times alone cannot be out of order here (each is within tol of
            # its expected time); arrival order can: an engine that emits a
            # transition late, dated back, or a server that reorders.
            if e2["t"] - e1["t"] > 2 * tol and g2["k"] < g1["k"]:
                problems.append(f'order: {e1["type"]}({e1["actor"]}) arrived after {e2["type"]}({e2["actor"]})')
    return problems


def format_mot(name, m):
    return (f'{name:14s} frames {m["frames"]:4d}  GT {m["gt"]:5d}  det-rate {m["detection_rate"]:.3f}  '
            f'MOTA {m["mota"]:.3f}  MOTP(IoU) {m["motp_iou"]:.3f}  FN {m["fn"]:4d}  FP {m["fp"]:4d}  '
            f'IDSW {m["idsw"]}  ids {m["ids_per_actor"]}')


def main():
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    truth = load_truth(sys.argv[1])
    frames, _ = load_replay(sys.argv[2])
    m = mot(truth, frames)
    print(format_mot(truth["scenario"], m))
    if len(sys.argv) == 4:
        with open(sys.argv[3]) as f:
            exp = json.load(f)
        got = [e for fr in frames for e in fr["events"]]
        probs = compare_events(exp["events"], got, m["track_to_actor"], exp.get("tolerance_s", 0.5))
        for p in probs:
            print("  " + p)
        return 1 if probs else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
