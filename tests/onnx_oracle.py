#!/usr/bin/env python3
"""ONNX import checked against ONNX Runtime, the numerical oracle.

    onnx_oracle.py VEROLUX FIXTURE_DIR [--shared MODELS_DIR] [--inputs N] [--tfjs MODEL.json]

For every fixture listed in FIXTURE_DIR/fixtures.txt (scripts/make-onnx-fixtures
writes them) and for several random inputs (uniform in [0, 1), like images
scaled by 1/255), runs `VEROLUX models run` on the cpu backend (all inputs)
and the ref backend (the first --ref-inputs) and bench/ort/ort-run.js
(onnxruntime-node) on the same .npy input, and requires for every output

    max|ours - ort| / max|ort| <= 1e-4    (and no NaN where ORT has none).

With --shared, MODELS_DIR/nanodet-g-416.onnx is checked the same way when it
exists (skipped, with a note, when it does not: tests must not depend on
../shared); with --tfjs too, the TFJS NanoDet-g and the ONNX one must give
the same raw outputs (they are the same network).

Prints one line per fixture, backend and output; exits 1 on any failure.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import onnx
except ImportError:
    sys.exit("onnx_oracle: python3 cannot import onnx: install python3-onnx (scripts/setup does)")

TOL = 1e-4
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORT_DIR = os.path.join(ROOT, "bench", "ort")


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout


def input_specs(path):
    """(name, shape) of the real inputs; a symbolic batch dim becomes 1."""
    m = onnx.load(path, load_external_data=False)
    inits = {t.name for t in m.graph.initializer}
    specs = []
    for vi in m.graph.input:
        if vi.name in inits:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim]
        specs.append((vi.name, dims))
    return specs


def load_outputs(d):
    return {f[:-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d)) if f.endswith(".npy")}


def rel_err(ours, ref):
    if ours.shape != ref.shape:
        return float("inf"), f"shape {list(ours.shape)} vs ORT {list(ref.shape)}"
    if np.isnan(ours).any() and not np.isnan(ref).any():
        return float("inf"), "NaN in ours"
    mx = float(np.abs(ref).max()) if ref.size else 0.0
    md = float(np.abs(ours.astype(np.float64) - ref).max()) if ref.size else 0.0
    return (md / mx if mx > 0 else md), f"max|diff| {md:.3g}, max|ort| {mx:.3g}"


def check_model(verolux, model, label, n_inputs, n_ref, tmp, seed, report):
    specs = input_specs(model)
    rng = np.random.default_rng(seed)
    worst = {"cpu": 0.0, "ref": 0.0}
    for k in range(n_inputs):
        case = os.path.join(tmp, f"{label}.{k}")
        os.makedirs(case, exist_ok=True)
        args = []
        for name, shape in specs:
            x = rng.random(shape, dtype=np.float32)
            f = os.path.join(case, f"in_{len(args)}.npy")
            np.save(f, x)
            args += ["--input", f"{name}={f}" if len(specs) > 1 else f]
        run(["node", os.path.join(ORT_DIR, "ort-run.js"), model, *args, "--out", os.path.join(case, "ort")])
        ort = load_outputs(os.path.join(case, "ort"))
        for backend in ("cpu", "ref") if k < n_ref else ("cpu",):
            out = os.path.join(case, backend)
            run([verolux, "models", "run", model, *args, "--out", out, "--backend", backend, "--threads", "2"])
            ours = load_outputs(out)
            if set(ours) != set(ort):
                report.append((False, f"{label} {backend}: outputs {sorted(ours)} vs ORT {sorted(ort)}"))
                continue
            for name in ort:
                e, detail = rel_err(ours[name], ort[name])
                worst[backend] = max(worst[backend], e)
                if e > TOL or k == 0:
                    report.append((e <= TOL, f"{label} input {k} {backend:3s} {name}: rel {e:.2e} ({detail})"))
    for backend, e in worst.items():
        n = n_inputs if backend == "cpu" else min(n_ref, n_inputs)
        report.append((e <= TOL, f"{label}: worst relative error {backend} vs ORT over {n} inputs: {e:.2e}"))
    return worst


def check_nanodet_tfjs(verolux, onnx_model, tfjs_model, tmp, report):
    """Same network, two files: same raw outputs (matched by shape)."""
    rng = np.random.default_rng(7)
    f = os.path.join(tmp, "nanodet_x.npy")
    np.save(f, rng.random((1, 3, 416, 416), dtype=np.float32) * 4 - 2)
    a, b = os.path.join(tmp, "nd_onnx"), os.path.join(tmp, "nd_tfjs")
    run([verolux, "models", "run", onnx_model, "--input", f, "--out", a, "--backend", "cpu"])
    run([verolux, "models", "run", tfjs_model, "--input", f, "--out", b, "--backend", "cpu"])
    oa, ob = load_outputs(a), load_outputs(b)
    by_shape = {v.shape: v for v in ob.values()}
    ok = len(by_shape) == len(ob) == len(oa)
    worst = 0.0
    for name, v in oa.items():
        if v.shape not in by_shape:
            ok = False
            report.append((False, f"nanodet onnx vs tfjs: no TFJS output of shape {list(v.shape)}"))
            continue
        e, _ = rel_err(by_shape[v.shape], v)
        worst = max(worst, e)
    report.append((ok and worst <= TOL, f"nanodet-g: ONNX vs TFJS raw outputs, worst relative difference {worst:.2e}"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("verolux")
    ap.add_argument("fixtures")
    ap.add_argument("--shared", help="folder that may hold nanodet-g-416.onnx")
    ap.add_argument("--tfjs", help="the TFJS NanoDet-g model.json")
    ap.add_argument("--inputs", type=int, default=3, help="random inputs per model (cpu backend)")
    ap.add_argument("--ref-inputs", type=int, default=1,
                    help="how many of them also run on the ref backend (slow: plain C, one thread)")
    ap.add_argument("--only", help="comma-separated fixture names")
    a = ap.parse_args()
    if not os.path.isdir(os.path.join(ORT_DIR, "node_modules", "onnxruntime-node")):
        sys.exit(f"onnx_oracle: ONNX Runtime is not installed: run (cd {ORT_DIR} && npm ci --ignore-scripts), "
                 "or scripts/setup")
    with open(os.path.join(a.fixtures, "fixtures.txt")) as fh:
        names = [l.strip() for l in fh if l.strip() and not l.startswith("#")]
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    report = []
    with tempfile.TemporaryDirectory(prefix="vx-oracle-") as tmp:
        for i, name in enumerate(names):
            try:
                check_model(a.verolux, os.path.join(a.fixtures, name + ".onnx"), name, a.inputs, a.ref_inputs, tmp,
                            100 + i, report)
            except RuntimeError as e:
                report.append((False, f"{name}: {e}"))
        nd = os.path.join(a.shared, "nanodet-g-416.onnx") if a.shared else None
        if nd and os.path.exists(nd):
            try:
                check_model(a.verolux, nd, "nanodet-g-416", a.inputs, a.ref_inputs, tmp, 99, report)
                if a.tfjs and os.path.exists(a.tfjs):
                    check_nanodet_tfjs(a.verolux, nd, a.tfjs, tmp, report)
                elif a.tfjs:
                    report.append((False, f"nanodet onnx vs tfjs: {a.tfjs} is missing (scripts/fetch-models)"))
            except RuntimeError as e:
                report.append((False, f"nanodet-g-416: {e}"))
        elif nd:
            print(f"note: {nd} is absent: the NanoDet ONNX checks are skipped")
    fails = 0
    for ok, line in report:
        print(("ok   " if ok else "FAIL ") + line)
        fails += not ok
    print(f"{fails} failure(s)")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
