#!/usr/bin/env node
// Latency of one model in ONNX Runtime (CPU execution provider), measured the
// way `verolux bench model` measures ours, so the two can be compared: one
// session, a fixed input, warm-up runs, then per-run wall time around
// session.run(). FPS is 1000 / median latency (batch 1, one stream).
'use strict';

const fs = require('fs');
const path = require('path');
const { cpuStallUs, UsageError, parseArgs, summarize, round3, loadOrt, ortVersion, runMain } = require('./cli');

const USAGE = `usage: node ort-bench.js MODEL.onnx [--threads 2] [--runs 200] [--warmup 20] [--json]
                        [--shape 1,3,416,416] [--seed 1]
  --threads N   intra-op threads (inter-op is 1, execution is sequential)
  --runs N      timed runs; --warmup N untimed runs before them
  --shape       input shape, for models whose input has symbolic dimensions
                (default: from the model; symbolic dimensions become 1)
  --json        print one JSON line instead of the text summary
`;

// Deterministic input so every run and every round sees the same data.
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function inputShape(meta, override) {
  if (override) {
    if (!/^\d+(,\d+)*$/.test(override)) throw new UsageError(`--shape needs comma-separated integers, got '${override}'`);
    return override.split(',').map(Number);
  }
  if (!meta || !Array.isArray(meta.shape)) {
    throw new Error(`the model does not describe the shape of input '${meta && meta.name}'; pass --shape`);
  }
  return meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1));
}

async function main() {
  const args = parseArgs(
    process.argv.slice(2),
    { threads: 'int', runs: 'int', warmup: 'int', json: 'bool', shape: 'string', seed: 'int' },
    { threads: 2, runs: 200, warmup: 20, json: false, seed: 1 },
  );
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (args._.length !== 1) throw new UsageError('need exactly one MODEL.onnx');
  if (args.threads < 1) throw new UsageError('--threads must be at least 1');
  if (args.runs < 1) throw new UsageError('--runs must be at least 1');
  const model = args._[0];
  if (!fs.existsSync(model)) throw new Error(`model not found: ${model}`);

  const ort = loadOrt();
  const t0 = process.hrtime.bigint();
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
  });
  const loadMs = Number(process.hrtime.bigint() - t0) / 1e6;

  if (session.inputNames.length !== 1 && args.shape) {
    throw new UsageError(`--shape is ambiguous: the model has ${session.inputNames.length} inputs`);
  }
  const rand = mulberry32(args.seed);
  const feeds = {};
  const inputs = [];
  session.inputNames.forEach((name, i) => {
    const meta = session.inputMetadata ? session.inputMetadata[i] : undefined;
    const type = (meta && meta.type) || 'float32';
    if (type !== 'float32') throw new Error(`input '${name}' is ${type}; only float32 inputs are supported`);
    const shape = inputShape(meta || { name }, args.shape);
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = rand() * 2 - 1; // roughly the range of a normalized image
    feeds[name] = new ort.Tensor('float32', data, shape);
    inputs.push({ name, shape });
  });

  for (let i = 0; i < args.warmup; i++) await session.run(feeds);
  const ms = new Float64Array(args.runs);
  const stall0 = cpuStallUs();
  const wall0 = process.hrtime.bigint();
  for (let i = 0; i < args.runs; i++) {
    const a = process.hrtime.bigint();
    await session.run(feeds);
    ms[i] = Number(process.hrtime.bigint() - a) / 1e6;
  }
  const wallUs = Number(process.hrtime.bigint() - wall0) / 1e3;
  const stall1 = cpuStallUs();
  const stallPct = stall0 === null || stall1 === null ? null : (100 * (stall1 - stall0)) / wallUs;
  await session.release();

  const s = summarize(ms);
  const result = {
    engine: 'onnxruntime',
    version: ortVersion(ort),
    model: path.basename(model),
    threads: args.threads,
    runs: args.runs,
    median_ms: round3(s.median),
    p10_ms: round3(s.p10),
    p90_ms: round3(s.p90),
    fps: round3(1000 / s.median),
    min_ms: round3(s.min),
    max_ms: round3(s.max),
    mean_ms: round3(s.mean),
    warmup: args.warmup,
    inter_op_threads: 1,
    load_ms: round3(loadMs),
    cpu_stall_pct: stallPct === null ? null : round3(stallPct),
    inputs,
  };
  if (args.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
    return;
  }
  const inDesc = inputs.map((x) => `${x.name} [${x.shape.join(',')}]`).join(', ');
  process.stdout.write(
    `onnxruntime ${result.version}  model ${model}  input ${inDesc} float32\n` +
      `threads ${args.threads} (inter-op 1, sequential)  warmup ${args.warmup}  runs ${args.runs}  load ${loadMs.toFixed(0)} ms\n` +
      `median ${s.median.toFixed(2)} ms  p10 ${s.p10.toFixed(2)}  p90 ${s.p90.toFixed(2)}  ` +
      `min ${s.min.toFixed(2)}  mean ${s.mean.toFixed(2)}  fps ${(1000 / s.median).toFixed(1)}\n` +
      (stallPct === null ? '' : `cpu stall ${stallPct.toFixed(1)}% of the timed wall time (other load on the machine if well above 0)\n`),
  );
}

runMain(main, USAGE);
