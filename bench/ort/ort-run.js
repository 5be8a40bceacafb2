#!/usr/bin/env node
// Run a model once in ONNX Runtime on inputs read from .npy files and write
// every output as DIR/<output name>.npy. This is the numerical oracle for the
// ONNX importer: feed the same .npy to both engines and compare the outputs.
'use strict';

const fs = require('fs');
const path = require('path');
const npy = require('./npy');
const { UsageError, parseArgs, loadOrt, ortVersion, runMain } = require('./cli');

const USAGE = `usage: node ort-run.js MODEL.onnx --input X.npy --out DIR [--threads N] [--opt all|basic|extended|disabled]
  --input X.npy        input for a model with one input; for several inputs
  --input NAME=X.npy   give one per input, by name
  --out DIR            created if missing; one DIR/<output name>.npy per output
                       (characters other than A-Z a-z 0-9 . _ - in a name become _)
  --threads N          intra-op threads (default 1; results do not depend on it
                       beyond float rounding of reductions)
  --opt LEVEL          ONNX Runtime graph optimisation level (default all)
Prints one line per output: name, shape, min, max, and the file written.
`;

function safeName(name) {
  const s = String(name).replace(/[^A-Za-z0-9._-]/g, '_');
  return s === '' || s === '.' || s === '..' ? `_${s}` : s;
}

// Dimensions the model fixes must match; symbolic ones (strings, -1) accept anything.
function checkShape(name, want, got) {
  if (!Array.isArray(want)) return;
  const ok =
    want.length === got.length && want.every((d, i) => typeof d !== 'number' || d < 0 || d === got[i]);
  if (!ok) {
    throw new Error(`input '${name}': the model expects shape [${want.join(',')}], the .npy has [${got.join(',')}]`);
  }
}

async function main() {
  const args = parseArgs(
    process.argv.slice(2),
    { input: 'list', out: 'string', threads: 'int', opt: 'string' },
    { threads: 1, opt: 'all' },
  );
  if (args.help) {
    process.stdout.write(USAGE);
    return;
  }
  if (args._.length !== 1) throw new UsageError('need exactly one MODEL.onnx');
  if (!args.input || args.input.length === 0) throw new UsageError('need --input');
  if (!args.out) throw new UsageError('need --out DIR');
  if (args.threads < 1) throw new UsageError('--threads must be at least 1');
  if (!['all', 'basic', 'extended', 'disabled'].includes(args.opt)) {
    throw new UsageError(`--opt must be all, basic, extended or disabled, got '${args.opt}'`);
  }
  const model = args._[0];
  if (!fs.existsSync(model)) throw new Error(`model not found: ${model}`);

  const ort = loadOrt();
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: args.threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: args.opt,
    executionMode: 'sequential',
  });

  // Map --input values to model input names.
  const files = {};
  for (const spec of args.input) {
    const eq = spec.indexOf('=');
    // A bare path is the single input; "NAME=path" names it (a path with '='
    // still works for a one-input model when NAME is not an input name).
    const named = eq > 0 && session.inputNames.includes(spec.slice(0, eq));
    if (named) {
      files[spec.slice(0, eq)] = spec.slice(eq + 1);
    } else {
      if (session.inputNames.length !== 1) {
        throw new UsageError(
          `the model has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); use --input NAME=X.npy`,
        );
      }
      files[session.inputNames[0]] = spec;
    }
  }
  const missing = session.inputNames.filter((n) => !(n in files));
  if (missing.length) throw new UsageError(`no --input for model input(s): ${missing.join(', ')}`);

  const feeds = {};
  session.inputNames.forEach((name, i) => {
    const arr = npy.read(files[name]);
    const meta = session.inputMetadata ? session.inputMetadata[i] : undefined;
    if (meta && meta.type && meta.type !== arr.type) {
      throw new Error(`input '${name}': the model expects ${meta.type}, ${files[name]} holds ${arr.descr} (${arr.type})`);
    }
    if (meta) checkShape(name, meta.shape, arr.shape);
    feeds[name] = new ort.Tensor(arr.type, arr.data, arr.shape);
  });

  const results = await session.run(feeds);
  fs.mkdirSync(args.out, { recursive: true });
  const written = new Set();
  for (const name of session.outputNames) {
    const t = results[name];
    const descr = npy.DESCR_OF_ORT_TYPE[t.type];
    if (!descr) throw new Error(`output '${name}' has type ${t.type}, which cannot be written as .npy`);
    let file = safeName(name);
    while (written.has(file)) file += '_';
    written.add(file);
    const dest = path.join(args.out, `${file}.npy`);
    npy.write(dest, t.data, t.dims, descr);
    let lo = Infinity;
    let hi = -Infinity;
    if (t.type === 'float32' || t.type === 'float64') {
      for (const v of t.data) {
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    const range = Number.isFinite(lo) ? `  min ${lo.toPrecision(6)}  max ${hi.toPrecision(6)}` : '';
    process.stdout.write(`${name}  ${t.type} [${t.dims.join(',')}]${range}  -> ${dest}\n`);
  }
  await session.release();
  process.stderr.write(`onnxruntime ${ortVersion(ort)}: ${session.outputNames.length} outputs written to ${args.out}\n`);
}

runMain(main, USAGE);
