// Small helpers shared by the ONNX Runtime scripts: argument parsing, timing
// statistics and loading onnxruntime-node with an install hint when missing.
'use strict';

class UsageError extends Error {}

// Parse argv against a spec {name: 'int' | 'string' | 'bool' | 'list'}.
// Accepts "--name value" and "--name=value"; the first bare word is the
// positional argument (the model). Unknown options are errors, not ignored,
// so a typo never silently benchmarks the defaults.
function parseArgs(argv, spec, defaults) {
  const out = { ...defaults, _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      out.help = true;
      continue;
    }
    if (!a.startsWith('--')) {
      out._.push(a);
      continue;
    }
    let name = a.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const kind = spec[name];
    if (!kind) throw new UsageError(`unknown option --${name}`);
    if (kind === 'bool') {
      if (value !== undefined) throw new UsageError(`--${name} takes no value`);
      out[name] = true;
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      value = argv[++i];
    }
    if (kind === 'int') {
      if (!/^\d+$/.test(value)) throw new UsageError(`--${name} needs a non-negative integer, got '${value}'`);
      out[name] = Number(value);
    } else if (kind === 'list') {
      (out[name] = out[name] || []).push(value);
    } else {
      out[name] = value;
    }
  }
  return out;
}

// Percentile with linear interpolation between closest ranks (NumPy's default).
function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

function summarize(samples) {
  const s = Float64Array.from(samples).sort();
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  return {
    median: percentile(s, 0.5),
    p10: percentile(s, 0.1),
    p90: percentile(s, 0.9),
    min: s[0],
    max: s[s.length - 1],
    mean,
  };
}

// Cumulative microseconds during which some runnable task waited for a CPU
// (Linux pressure stall information), or null where the kernel lacks it.
// A benchmark that owns the machine sees almost none; other load shows up
// here even when it cannot be seen in our own timings' spread.
function cpuStallUs() {
  try {
    const m = /^some .*total=(\d+)/m.exec(require('fs').readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const round3 = (x) => Math.round(x * 1000) / 1000;

function loadOrt() {
  try {
    return require('onnxruntime-node');
  } catch (e) {
    const dir = __dirname;
    throw new Error(
      `cannot load onnxruntime-node (${e.message.split('\n')[0]}).\n` +
        `Install it with: (cd ${dir} && npm ci --ignore-scripts)`,
    );
  }
}

function ortVersion(ort) {
  return (ort.env && ort.env.versions && (ort.env.versions.node || ort.env.versions.common)) || 'unknown';
}

// Run main(), turning UsageError into "usage" exit 2 and other errors into a
// one-line message and exit 1 (no stack trace for expected failures).
function runMain(main, usage) {
  main().catch((e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n${usage}`);
      process.exit(2);
    }
    process.stderr.write(`error: ${e && e.message ? e.message : e}\n`);
    process.exit(1);
  });
}

module.exports = { cpuStallUs, UsageError, parseArgs, percentile, summarize, round3, loadOrt, ortVersion, runMain };
