#!/usr/bin/env bash
# Bad input at the command line: `verolux detect` given broken models and
# images must fail cleanly: exactly one line on stderr that names the file
# and says what is wrong, a non-zero exit status below 128 (no signal), and
# no sanitizer report.  Also the exit status of --help and of an unknown
# command.
#
#   tests/test_cli_errors.sh PATH/TO/verolux
#
# The broken models are cut from the real NanoDet model in $VEROLUX_CACHE
# (default ~/.cache/verolux); the test fails when it is missing.
set -uo pipefail

verolux=${1:?usage: test_cli_errors.sh PATH/TO/verolux}
cache=${VEROLUX_CACHE:-$HOME/.cache/verolux}
model_dir=$cache/models/nanodet
image=$cache/samples/dog.jpg

failures=0
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

for f in "$model_dir/nanodet.json" "$model_dir/nanodet.bin" "$image"; do
    if [[ ! -f $f ]]; then
        echo "FAIL: $f is missing (run scripts/setup, or set VEROLUX_CACHE)" >&2
        exit 1
    fi
done
[[ -x $verolux ]] || { echo "FAIL: $verolux is not an executable" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/verolux-cli-errors.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# expect_error NAME FILE PATTERN -- ARGS...: runs verolux ARGS; it must fail
# with one stderr line containing FILE and matching PATTERN (extended regex,
# case-insensitive).
expect_error() {
    local name=$1 file=$2 pattern=$3
    shift 4
    local out=$tmp/out err=$tmp/err rc before=$failures
    "$verolux" "$@" >"$out" 2>"$err"
    rc=$?
    local lines
    lines=$(wc -l <"$err")
    if ((rc == 0)); then
        fail "$name: exit status 0, expected a failure"
    elif ((rc >= 128)); then
        fail "$name: killed by signal $((rc - 128))"
    fi
    if grep -qE 'Sanitizer|runtime error:|LeakSanitizer' "$err"; then
        fail "$name: sanitizer report"
    fi
    if ((lines != 1)); then
        fail "$name: $lines lines on stderr, expected exactly 1"
    elif ! grep -qF -- "$file" "$err"; then
        fail "$name: the message does not name $file"
    elif ! grep -qiE -- "$pattern" "$err"; then
        fail "$name: the message does not say /$pattern/"
    fi
    if ((failures > before)); then
        echo "  command: verolux $*" >&2
        sed 's/^/  stderr: /' "$err" | head -n 20 >&2
    else
        echo "ok: $name: $(head -n 1 "$err")"
    fi
}

# expect_status NAME STATUS -- ARGS...
expect_status() {
    local name=$1 want=$2
    shift 3
    "$verolux" "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if ((rc != want)); then
        fail "$name: exit status $rc, expected $want"
        sed 's/^/  stderr: /' "$tmp/err" | head -n 20 >&2
    elif grep -qE 'Sanitizer|runtime error:' "$tmp/err"; then
        fail "$name: sanitizer report"
        sed 's/^/  stderr: /' "$tmp/err" | head -n 20 >&2
    else
        echo "ok: $name: exit status $rc"
    fi
}

# ---- broken models (the image is fine) ------------------------------------

json=$model_dir/nanodet.json
bin=$model_dir/nanodet.bin
json_size=$(stat -c %s "$json")
bin_size=$(stat -c %s "$bin")

missing_model=$tmp/no-such-dir/nanodet.json
expect_error "missing model" "$missing_model" "cannot open|no such file" \
    -- detect --model "$missing_model" "$image"

# The weights stay beside each JSON so only the JSON is wrong.
mkdir "$tmp/truncated-json"
head -c $((json_size / 2)) "$json" >"$tmp/truncated-json/nanodet.json"
cp "$bin" "$tmp/truncated-json/nanodet.bin"
expect_error "truncated model JSON" "$tmp/truncated-json/nanodet.json" "JSON|end of input" \
    -- detect --model "$tmp/truncated-json/nanodet.json" "$image"

# Fixed pseudo-random bytes (not /dev/urandom) so that a failure reproduces.
garbage() { LC_ALL=C awk -v n="$1" 'BEGIN { srand(42); for (i = 0; i < n; i++) printf "%c", int(rand() * 255) + 1 }'; }

mkdir "$tmp/garbage-json"
garbage 4096 >"$tmp/garbage-json/nanodet.json"
cp "$bin" "$tmp/garbage-json/nanodet.bin"
expect_error "model JSON of garbage bytes" "$tmp/garbage-json/nanodet.json" "JSON|format" \
    -- detect --model "$tmp/garbage-json/nanodet.json" "$image"

mkdir "$tmp/corrupt-json"
{
    head -c $((json_size / 2)) "$json"
    garbage 256
    tail -c +$((json_size / 2 + 257)) "$json"
} >"$tmp/corrupt-json/nanodet.json"
cp "$bin" "$tmp/corrupt-json/nanodet.bin"
expect_error "model JSON with garbage inside" "$tmp/corrupt-json/nanodet.json" "JSON" \
    -- detect --model "$tmp/corrupt-json/nanodet.json" "$image"

mkdir "$tmp/no-bin"
cp "$json" "$tmp/no-bin/nanodet.json"
expect_error "model without its .bin" "$tmp/no-bin/nanodet.bin" "cannot open|no such file" \
    -- detect --model "$tmp/no-bin/nanodet.json" "$image"

mkdir "$tmp/half-bin"
cp "$json" "$tmp/half-bin/nanodet.json"
head -c $((bin_size / 2)) "$bin" >"$tmp/half-bin/nanodet.bin"
expect_error "truncated .bin" "$tmp/half-bin/nanodet.json" "weight.*bytes|truncated|short" \
    -- detect --model "$tmp/half-bin/nanodet.json" "$image"

# ---- broken images (default model from VEROLUX_CACHE) ----------------------

export VEROLUX_CACHE=$cache
unset MODEL_PATH

printf 'this is a text file, not a picture\n' >"$tmp/text.jpg"
expect_error "text file as image" "$tmp/text.jpg" "not an image|invalid|unsupported" \
    -- detect "$tmp/text.jpg"

: >"$tmp/empty.jpg"
expect_error "zero-byte image" "$tmp/empty.jpg" "empty|not an image|invalid" \
    -- detect "$tmp/empty.jpg"

mkdir "$tmp/a-directory.jpg"
expect_error "directory as image" "$tmp/a-directory.jpg" "directory" \
    -- detect "$tmp/a-directory.jpg"

expect_error "missing image" "$tmp/missing.jpg" "cannot open|no such file" \
    -- detect "$tmp/missing.jpg"

# ---- help and usage ---------------------------------------------------------

expect_status "verolux --help" 0 -- --help
expect_status "verolux detect --help" 0 -- detect --help
expect_status "verolux bench --help" 0 -- bench --help
expect_status "unknown command" 2 -- no-such-command

if ((failures)); then
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
