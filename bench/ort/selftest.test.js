// Self-test of the bench scripts that needs neither ../shared nor a build:
//   node --test bench/
// The .npy codec (the oracle's file format) and compare-ort's plumbing, with
// the fake engine in bench/testdata. ONNX Runtime itself is exercised only
// when it is installed and the shared model exists (skipped otherwise).
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const npy = require('./npy');
const { percentile, parseArgs, UsageError } = require('./cli');

const BENCH = path.resolve(__dirname, '..');
const ROOT = path.resolve(BENCH, '..');
const SHARED_ONNX = path.resolve(ROOT, '..', 'shared', 'models', 'nanodet-g-416.onnx');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vx-bench-'));

test('npy header is byte-identical to numpy.save for float32 (1,3,2,2)', () => {
  const buf = npy.format(new Float32Array(12), [1, 3, 2, 2]);
  // numpy 1.24: np.save(f, np.zeros((1,3,2,2), '<f4')) writes a 128-byte header.
  const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 2, 2), }";
  assert.strictEqual(buf.length, 128 + 48);
  assert.deepStrictEqual([...buf.subarray(0, 8)], [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  assert.strictEqual(buf.readUInt16LE(8), 118);
  assert.strictEqual(buf.toString('latin1', 10, 128), dict + ' '.repeat(118 - dict.length - 1) + '\n');
});

test('npy round trip keeps dtype, shape and values', () => {
  const cases = [
    [Float32Array.from([1.5, -2, 3.25, Math.PI]), [2, 2], undefined, '<f4'],
    [BigInt64Array.from([1n, -5n, 7n]), [3], undefined, '<i8'],
    [Uint8Array.from([1, 0]), [2], '|b1', '|b1'],
    [new Float32Array(0), [0, 3], undefined, '<f4'],
    [Float64Array.from([3]), [], undefined, '<f8'],
  ];
  for (const [data, shape, descr, want] of cases) {
    const r = npy.parse(npy.format(data, shape, descr));
    assert.strictEqual(r.descr, want);
    assert.deepStrictEqual(r.shape, shape);
    assert.deepStrictEqual([...r.data], [...data]);
  }
});

test('npy reads version 2.0 and 3.0 headers', () => {
  const v1 = npy.format(Float32Array.from([1, 2]), [2]);
  const dict = v1.subarray(10);
  for (const version of [2, 3]) {
    const head = Buffer.alloc(12);
    v1.copy(head, 0, 0, 6);
    head[6] = version;
    head.writeUInt32LE(v1.readUInt16LE(8), 8);
    const r = npy.parse(Buffer.concat([head, dict]));
    assert.deepStrictEqual([...r.data], [1, 2]);
  }
});

test('npy rejects malformed files with a reason', () => {
  const good = npy.format(Float32Array.from([1, 2]), [2]);
  const bad = [
    [Buffer.from('hello world'), /missing .*magic/],
    [Buffer.concat([good.subarray(0, 6), Buffer.from([9, 0, 0, 0])]), /version 9\.0/],
    [good.subarray(0, good.length - 1), /needs 8 data bytes, file has 7/],
    [Buffer.from(good.toString('latin1').replace("'<f4'", "'>f4'"), 'latin1'), /big-endian/],
    [Buffer.from(good.toString('latin1').replace("'<f4'", "'<c8'"), 'latin1'), /unsupported dtype/],
    [Buffer.from(good.toString('latin1').replace('False', 'True '), 'latin1'), /Fortran/],
    [Buffer.from(good.toString('latin1').replace('(2,)', '(x,)'), 'latin1'), /bad dimension/],
    [Buffer.concat([good.subarray(0, 8), Buffer.from([0xff, 0xff])]), /header claims/],
  ];
  for (const [buf, re] of bad) assert.throws(() => npy.parse(buf, 't.npy'), (e) => e instanceof npy.NpyError && re.test(e.message));
});

test('percentile interpolates like numpy', () => {
  const s = [1, 2, 3, 4, 10];
  assert.strictEqual(percentile(s, 0.5), 3);
  assert.ok(Math.abs(percentile(s, 0.9) - 7.6) < 1e-12); // numpy.percentile(s, 90) == 7.6
  assert.strictEqual(percentile([1, 2], 0.5), 1.5);
});

test('parseArgs rejects unknown options and bad numbers', () => {
  const spec = { runs: 'int', json: 'bool' };
  assert.deepStrictEqual(parseArgs(['m.onnx', '--runs=5', '--json'], spec, {}), { _: ['m.onnx'], runs: 5, json: true });
  assert.throws(() => parseArgs(['--rnus', '5'], spec, {}), UsageError);
  assert.throws(() => parseArgs(['--runs', 'x'], spec, {}), UsageError);
  assert.throws(() => parseArgs(['--runs'], spec, {}), UsageError);
});

function compare(args, env) {
  return spawnSync(process.execPath, [path.join(BENCH, 'compare-ort'), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, VX_BENCH_CMD: path.join(BENCH, 'testdata', 'fake-verolux'), ...env },
  });
}

test('compare-ort exits 0 with a message when ORT model is missing', () => {
  const r = compare(['--onnx', path.join(tmp, 'absent.onnx')]);
  assert.strictEqual(r.status, 0, r.stderr);
  assert.match(r.stdout, /absent\.onnx is missing; it exists only on dev machines/);
});

test('compare-ort reports a failing engine and a bad option', () => {
  const model = path.join(tmp, 'm.json');
  fs.writeFileSync(model, '{}');
  const onnx = path.join(tmp, 'present.onnx'); // never loaded: ours fails first
  fs.writeFileSync(onnx, '');
  const r = compare(['--model', model, '--onnx', onnx, '--rounds', '1', '--runs', '3'], { FAKE_FAIL: '1' });
  if (fs.existsSync(path.join(__dirname, 'node_modules', 'onnxruntime-node'))) {
    assert.strictEqual(r.status, 1);
    assert.match(r.stderr, /ours: .* exited with 3[\s\S]*failing as asked/);
  }
  assert.strictEqual(compare(['--rounds', '0']).status, 2);
  assert.strictEqual(compare(['--bogus']).status, 2);
});

const haveOrt = fs.existsSync(path.join(__dirname, 'node_modules', 'onnxruntime-node')) && fs.existsSync(SHARED_ONNX);

test('compare-ort end to end with the fake engine', { skip: !haveOrt && 'needs onnxruntime-node and ../shared' }, () => {
  const model = path.join(tmp, 'm.json');
  fs.writeFileSync(model, '{}');
  const out = path.join(tmp, 'cmp.json');
  const r = compare(['--model', model, '--rounds', '2', '--runs', '3', '--warmup', '1', '--json', out, '--quiet'], {
    FAKE_MEDIAN_MS: '12.5',
  });
  assert.strictEqual(r.status, 0, r.stderr);
  assert.match(r.stdout, /ratio ours\/ORT = \d+\.\d\d \(<= 1\.0 means we are at least as fast\)/);
  const doc = JSON.parse(fs.readFileSync(out, 'utf8'));
  assert.strictEqual(doc.rounds.length, 2);
  assert.deepStrictEqual(doc.rounds.map((x) => x.order[0]), ['ours', 'ort']);
  assert.strictEqual(doc.summary.ours.median_ms, 12.5); // the fake's 'ref' line (999 ms) was skipped
  assert.strictEqual(doc.summary.onnxruntime.version, '1.30.0');
  assert.ok(Math.abs(doc.summary.ratio_ours_ort - 12.5 / doc.summary.onnxruntime.median_ms) < 1e-9);
});

test('ort-run writes every output as .npy', { skip: !haveOrt && 'needs onnxruntime-node and ../shared' }, () => {
  const x = new Float32Array(3 * 416 * 416).fill(0.25);
  const input = path.join(tmp, 'x.npy');
  npy.write(input, x, [1, 3, 416, 416]);
  const dir = path.join(tmp, 'out');
  const r = spawnSync(process.execPath, [path.join(__dirname, 'ort-run.js'), SHARED_ONNX, '--input', input, '--out', dir], {
    encoding: 'utf8',
  });
  assert.strictEqual(r.status, 0, r.stderr);
  const cls = npy.read(path.join(dir, 'cls_8.npy'));
  assert.deepStrictEqual(cls.shape, [1, 2704, 80]);
  assert.ok(cls.data.every((v) => v >= 0 && v <= 1), 'sigmoid is in the graph');
  assert.deepStrictEqual(npy.read(path.join(dir, 'reg_32.npy')).shape, [1, 169, 44]);
});

test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
