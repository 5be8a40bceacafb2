#!/usr/bin/env bash
# `verolux export` end to end on NanoDet (a copy in a temporary folder) and
# the load priority that `verolux detect` / `serve` apply to its files:
#   - --format all writes NAME.engine, NAME_fp16.engine, NAME_fp32.engine and
#     prints F1 / cosine against FP32 above the product's bar;
#   - the priority: INT8 > FP16 engine > BF16 at load > FP32, PRECISION
#     overrides, and refused engines (corrupt, truncated, stale) fall back
#     to the next candidate with a log line;
#   - errors leave nothing behind: empty calibration folder, unreadable
#     calibration video, missing or unwritable output folder.
# Usage: test_export.sh VEROLUX_BINARY   (VEROLUX_CACHE must hold the model
# and samples: scripts/fetch-models, scripts/fetch-samples).
set -u
unset PRECISION MODEL_PATH
export VEROLUX_LOG=debug # detect logs what it loaded at debug level
verolux=${1:?usage: test_export.sh VEROLUX_BINARY}
cache=${VEROLUX_CACHE:-$HOME/.cache/verolux}
src=$cache/models/nanodet
image=$cache/samples/dog.jpg
for f in "$src/nanodet.json" "$src/nanodet.bin" "$image" "$cache/samples/vtest.avi"; do
    if [[ ! -r $f ]]; then
        echo "FAIL: $f is missing (scripts/fetch-models, scripts/fetch-samples)" >&2
        exit 1
    fi
done
# Small sets keep this test short; the full 200-frame check is what
# `verolux export` does by default.  Sanitizer builds set CHECK_ACCURACY=0:
# there the point is memory safety on fewer frames, too few for F1.
CALIB_FRAMES=${CALIB_FRAMES:-38}
EVAL_FRAMES=${EVAL_FRAMES:-40}
CHECK_ACCURACY=${CHECK_ACCURACY:-1}

tmp=$(mktemp -d /tmp/vx-export-test-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}
run() { # run NAME -- ARGS...: output in $tmp/NAME.out / .err, status in $status
    local name=$1
    shift 2
    "$verolux" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    status=$?
}
show() { sed 's/^/  | /' "$tmp/$1.out" "$tmp/$1.err" | head -n 60 >&2; }
# Only these files in the folder (the model's own two plus the listed ones).
expect_files() {
    local dir=$1
    shift
    local got want
    got=$(cd "$dir" && ls -A | sort | tr '\n' ' ')
    want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
    [[ $got == "$want" ]] || fail "$dir holds [$got], expected [$want]"
}

m=$tmp/m
mkdir "$m"
cp "$src/nanodet.json" "$src/nanodet.bin" "$m/"

# ---- export: all three formats --------------------------------------------
# --force: the load-priority checks below need all three files even when an
# engine misses the accuracy bar (which check_row reports as a failure).
run all -- export --model "$m/nanodet.json" --format all --calib-frames "$CALIB_FRAMES" --eval-frames "$EVAL_FRAMES" --force
if ((status != 0)); then
    fail "export --format all exited $status"
    show all
fi
expect_files "$m" nanodet.json nanodet.bin nanodet.engine nanodet_fp16.engine nanodet_fp32.engine
cat "$tmp/all.out"
# The summary rows: "nanodet.engine  INT8 ... F1 (..) cosine pass".
check_row() { # FILE LABEL MIN_F1
    local row f1 cosv
    row=$(grep -E "^  $1 " "$tmp/all.out")
    [[ -n $row ]] || { fail "no summary row for $1"; return; }
    [[ $row == *"$2"* ]] || fail "$1: expected '$2' in: $row"
    f1=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /^\(/) { print $(i - 1); exit }}' <<<"$row")
    cosv=$(awk '{for (i = 1; i <= NF; i++) if ($i ~ /\)$/ && $(i + 1) ~ /^[0-9.]+$/) { print $(i + 1); exit }}' <<<"$row")
    awk -v f="$f1" -v c="$cosv" -v min="$3" 'BEGIN { exit !(f >= min && c >= 0.99) }' ||
        fail "$1: F1 '$f1' / cosine '$cosv' below $3 / 0.99: $row"
    [[ $row == *"pass"* ]] || fail "$1: not passed: $row"
}
if ((CHECK_ACCURACY)); then
    check_row nanodet.engine INT8 0.96
    check_row nanodet_fp16.engine "BF16 (CPU" 0.98
fi
grep -qE "^calibration: [0-9]+ frames" "$tmp/all.out" || fail "no calibration line"
grep -qE "^layers of the INT8 engine: [0-9]+ convolutions" "$tmp/all.out" || fail "no per-layer line"
grep -qE "accuracy vs FP32 on [0-9]+ frames \(6 images \+ $EVAL_FRAMES of vtest.avi\)" "$tmp/all.out" ||
    fail "accuracy line missing or wrong frame count"
grep -q '#####' "$tmp/all.err" && fail "progress bar printed although stderr is not a terminal"

# ---- load priority ----------------------------------------------------------
loaded() { # NAME EXPECTED-REGEX -- detect args: the "model: loaded" log line
    local name=$1 want=$2
    shift 3
    run "$name" -- detect "$@" "$image"
    if ((status != 0)); then
        fail "$name: detect exited $status"
        show "$name"
        return
    fi
    local line
    line=$(grep "model: loaded" "$tmp/$name.err")
    [[ $line =~ $want ]] || { fail "$name: expected /$want/ in: $line"; show "$name"; }
    grep -qE "^  (dog|bicycle|truck|car)" "$tmp/$name.out" || fail "$name: no detections printed"
}
loaded prio-auto "INT8 engine .*nanodet\.engine \(engine file\) in INT8" -- --model "$m/nanodet.json"
loaded prio-folder "INT8 engine .*nanodet\.engine" -- --model "$m"
export PRECISION=fp32 # the environment, as for serve
loaded prio-fp32 "FP32 engine .*nanodet_fp32\.engine .*PRECISION=fp32" -- --model "$m/nanodet.json"
unset PRECISION
loaded prio-fp16 "nanodet_fp16\.engine \(engine file\) in BF16" -- --model "$m/nanodet.json" --precision fp16
loaded prio-explicit "nanodet_fp32\.engine .*MODEL_PATH names this engine" -- --model "$m/nanodet_fp32.engine"

# A corrupt INT8 engine: refused with a line, the FP16 engine loads.
cp "$m/nanodet.engine" "$tmp/int8.keep"
printf '\x55' | dd of="$m/nanodet.engine" bs=1 seek=100000 conv=notrunc status=none
loaded prio-corrupt "nanodet_fp16\.engine .*earlier candidates refused" -- --model "$m/nanodet.json"
grep -q "INT8 engine refused: .*checksum mismatch" "$tmp/prio-corrupt.err" || fail "no refusal line for the corrupt engine"
# Truncated FP16 engine as well: BF16 converted at load (native here) or FP32.
head -c 5000 "$m/nanodet_fp16.engine" >"$tmp/t" && mv "$tmp/t" "$m/nanodet_fp16.engine"
loaded prio-truncated "(converted to BF16 at load|FP32 engine)" -- --model "$m/nanodet.json"
grep -q "refused: .*truncated" "$tmp/prio-truncated.err" || fail "no refusal line for the truncated engine"
# Another verolux version / CPU ISA (valid checksums: the checks themselves
# refuse them), then the next candidate.
patch_engine() { # FILE OFFSET BYTES...: rewrite header bytes, reseal the header CRC
    python3 - "$@" <<'PY'
import struct, sys, zlib
path, off, data = sys.argv[1], int(sys.argv[2]), bytes(int(b, 0) for b in sys.argv[3:])
b = bytearray(open(path, "rb").read())
b[off:off + len(data)] = data
b[252:256] = struct.pack("<I", zlib.crc32(bytes(b[:252])))
open(path, "wb").write(bytes(b))
PY
}
v=$tmp/v
mkdir "$v"
cp "$m/nanodet.json" "$m/nanodet.bin" "$m/nanodet_fp32.engine" "$v/"
cp "$m/nanodet_fp32.engine" "$v/nanodet_fp16.engine" # right version, wrong precision for its name
patch_engine "$v/nanodet_fp32.engine" 16 0x39 0x2e 0x39 0x2e 0x39 0 # "9.9.9"
PRECISION=fp32 "$verolux" detect --model "$v/nanodet.json" --precision fp32 "$image" >"$tmp/ver.out" 2>"$tmp/ver.err"
grep -q "built by verolux 9.9.9, this is verolux" "$tmp/ver.err" || { fail "no version refusal"; show ver; }
grep -q "model: loaded model .*nanodet.json (source model) in FP32" "$tmp/ver.err" || { fail "no fallback after the version refusal"; show ver; }
grep -q "holds a FP32 engine where BF16 was expected" "$tmp/ver.err" && fail "fp16 engine tried with PRECISION=fp32"
cp "$m/nanodet_fp32.engine" "$v/nanodet_fp32.engine"
# dnnl_cpu_isa_t 0x7 or 0x3 (avx2 / avx in oneDNN 2.x): whichever this CPU is not
isa=$(python3 -c 'import struct,sys; print(struct.unpack_from("<I", open(sys.argv[1], "rb").read(), 52)[0])' "$v/nanodet_fp32.engine")
other=$((isa == 7 ? 3 : 7))
patch_engine "$v/nanodet_fp32.engine" 52 $other 0 0 0
"$verolux" detect --model "$v/nanodet.json" --precision fp32 "$image" >"$tmp/isa.out" 2>"$tmp/isa.err"
grep -qE "engine built for CPU ISA [a-z0-9_]+, this machine runs" "$tmp/isa.err" || { fail "no ISA refusal"; show isa; }
grep -q "model: loaded model .*nanodet.json (source model) in FP32" "$tmp/isa.err" || { fail "no fallback after the ISA refusal"; show isa; }
"$verolux" detect --model "$v/nanodet.json" "$image" >"$tmp/mis.out" 2>"$tmp/mis.err"
grep -q "holds a FP32 engine where BF16 was expected" "$tmp/mis.err" || { fail "no precision-mismatch refusal"; show mis; }
grep -q "model: loaded .*nanodet.json (source model)" "$tmp/mis.err" || { fail "no fallback after the mismatch"; show mis; }

# PRECISION=int8 with no usable INT8 engine: a clear error, not a silent FP32.
run prio-int8-bad -- detect --model "$m/nanodet.json" --precision int8 "$image"
((status == 1)) || fail "PRECISION=int8 with a corrupt engine exited $status"
grep -q "checksum mismatch" "$tmp/prio-int8-bad.err" || { fail "PRECISION=int8: no reason given"; show prio-int8-bad; }
# Stale: the source model changed after the export.
cp "$tmp/int8.keep" "$m/nanodet.engine"
printf ' ' >>"$m/nanodet.json"
loaded prio-stale "(converted to BF16 at load|model .*FP32)" -- --model "$m/nanodet.json"
grep -q "stale" "$tmp/prio-stale.err" || fail "no stale refusal"

# ---- errors leave nothing behind --------------------------------------------
e=$tmp/e
mkdir "$e" "$tmp/empty"
cp "$src/nanodet.json" "$src/nanodet.bin" "$e/"
run empty-calib -- export --model "$e/nanodet.json" --format int8 --calib "$tmp/empty"
((status == 1)) || fail "empty calibration folder: exit $status"
grep -q "no images in the folder" "$tmp/empty-calib.err" || { fail "empty calibration folder: no clear message"; show empty-calib; }
expect_files "$e" nanodet.json nanodet.bin

printf 'not a video\n' >"$tmp/broken.avi"
run bad-video -- export --model "$e/nanodet.json" --format int8 --calib "$tmp/broken.avi"
((status == 1)) || fail "unreadable calibration video: exit $status"
grep -q "broken.avi" "$tmp/bad-video.err" || { fail "unreadable calibration video: no clear message"; show bad-video; }
expect_files "$e" nanodet.json nanodet.bin

run missing-out -- export --model "$e/nanodet.json" --format fp32 --output-dir "$tmp/no-such-dir"
((status == 1)) || fail "missing output folder: exit $status"
grep -q "no-such-dir: No such file or directory" "$tmp/missing-out.err" || { fail "missing output folder: message"; show missing-out; }

ro=$tmp/ro
mkdir "$ro" && chmod 555 "$ro"
[[ -w $ro ]] && ro=/proc/self # root writes anywhere: a read-only file system then
run ro-out -- export --model "$e/nanodet.json" --format fp32 --output-dir "$ro"
((status == 1)) || fail "read-only output folder: exit $status"
grep -q "cannot create a file in $ro" "$tmp/ro-out.err" || { fail "read-only output folder: message"; show ro-out; }
expect_files "$e" nanodet.json nanodet.bin

run bad-format -- export --model "$e/nanodet.json" --format int4
((status == 2)) || fail "--format int4: exit $status, expected 2"

if ((failures)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
