// Minimal reader/writer for NumPy .npy files, enough for the ONNX Runtime
// oracle: little-endian numeric arrays in C order, header versions 1.0, 2.0
// and 3.0. Anything else (Fortran order, big-endian, structured or object
// dtypes, truncated data) is rejected with a message that says what and why,
// because a silently misread oracle would make every comparison meaningless.
//
// Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
'use strict';

const fs = require('fs');

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY

// npy descr -> [TypedArray, ONNX Runtime tensor type]
const DTYPES = {
  '<f4': [Float32Array, 'float32'],
  '<f8': [Float64Array, 'float64'],
  '<i8': [BigInt64Array, 'int64'],
  '<i4': [Int32Array, 'int32'],
  '<i2': [Int16Array, 'int16'],
  '|i1': [Int8Array, 'int8'],
  '<u8': [BigUint64Array, 'uint64'],
  '<u4': [Uint32Array, 'uint32'],
  '<u2': [Uint16Array, 'uint16'],
  '|u1': [Uint8Array, 'uint8'],
  '|b1': [Uint8Array, 'bool'],
  '<f2': [Uint16Array, 'float16'], // raw half bits; ORT takes them as Uint16Array
};

// ONNX Runtime tensor type -> npy descr (float16 is carried as raw uint16)
const DESCR_OF_ORT_TYPE = {
  float32: '<f4',
  float64: '<f8',
  int64: '<i8',
  int32: '<i4',
  int16: '<i2',
  int8: '|i1',
  uint64: '<u8',
  uint32: '<u4',
  uint16: '<u2',
  uint8: '|u1',
  bool: '|b1',
  float16: '<f2',
};

class NpyError extends Error {}

function fail(where, msg) {
  throw new NpyError(`${where}: ${msg}`);
}

// The header is a Python dict literal written by numpy, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 416, 416), }
// Parse only that shape of literal instead of evaluating anything.
function parseHeader(text, where) {
  const t = text.trim();
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(t);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(t);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(t);
  if (!t.startsWith('{') || !t.endsWith('}') || !descr || !fortran || !shape) {
    fail(where, `malformed header ${JSON.stringify(t.slice(0, 120))} (need descr, fortran_order and shape)`);
  }
  const dims = shape[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => {
      if (!/^\d+$/.test(s)) fail(where, `bad dimension '${s}' in shape (${shape[1]})`);
      return Number(s);
    });
  return { descr: descr[1], fortranOrder: fortran[1] === 'True', shape: dims };
}

// Parse an .npy image held in a Buffer. Returns {descr, type, shape, data}
// where data is a TypedArray over a fresh, aligned copy of the payload.
function parse(buf, where = '<buffer>') {
  if (buf.length < 10 || !buf.subarray(0, 6).equals(MAGIC)) {
    fail(where, 'not an .npy file (missing \\x93NUMPY magic)');
  }
  const major = buf[6];
  const minor = buf[7];
  let headerLen;
  let headerStart;
  if (major === 1) {
    headerLen = buf.readUInt16LE(8);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) fail(where, 'truncated header length');
    headerLen = buf.readUInt32LE(8);
    headerStart = 12;
  } else {
    fail(where, `unsupported .npy format version ${major}.${minor} (need 1.0, 2.0 or 3.0)`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > buf.length) fail(where, `header claims ${headerLen} bytes but the file has ${buf.length}`);
  const header = parseHeader(buf.toString(major === 3 ? 'utf8' : 'latin1', headerStart, dataStart), where);

  if (header.fortranOrder) fail(where, 'Fortran-order arrays are not supported (save with np.ascontiguousarray)');
  let descr = header.descr;
  if (descr[0] === '=') descr = '<' + descr.slice(1); // native order; only little-endian hosts are supported
  if (descr[0] === '>') fail(where, `big-endian dtype '${header.descr}' is not supported (use .astype('<${descr.slice(1)}'))`);
  const dt = DTYPES[descr];
  if (!dt) fail(where, `unsupported dtype '${header.descr}' (supported: ${Object.keys(DTYPES).join(' ')})`);
  const [Ctor, type] = dt;

  const count = header.shape.reduce((a, b) => a * b, 1);
  const nbytes = count * Ctor.BYTES_PER_ELEMENT;
  const have = buf.length - dataStart;
  if (have !== nbytes) {
    fail(where, `shape (${header.shape.join(', ')}) of '${descr}' needs ${nbytes} data bytes, file has ${have}`);
  }
  // Copy so the TypedArray is aligned whatever the header length was.
  const ab = new ArrayBuffer(nbytes);
  buf.copy(Buffer.from(ab), 0, dataStart, dataStart + nbytes);
  return { descr, type, shape: header.shape, data: new Ctor(ab) };
}

function read(path) {
  let buf;
  try {
    buf = fs.readFileSync(path);
  } catch (e) {
    fail(path, `cannot read: ${e.message}`);
  }
  return parse(buf, path);
}

// Serialize a TypedArray with the given shape. descr defaults from the array.
function format(data, shape, descr) {
  if (!descr) {
    for (const [d, [Ctor]] of Object.entries(DTYPES)) {
      if (data instanceof Ctor && d !== '|b1' && d !== '<f2') {
        descr = d;
        break;
      }
    }
    if (!descr) throw new NpyError('format: unsupported array type');
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new NpyError(`format: shape (${shape.join(', ')}) has ${count} elements, array has ${data.length}`);
  }
  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  // Pad with spaces so that magic + version + length + header ends on a
  // 64-byte boundary, then a newline, as numpy does.
  let version = 1;
  let prefix = 10;
  if (dict.length + 1 + prefix > 0xffff) {
    version = 2;
    prefix = 12;
  }
  const total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  dict = dict + ' '.repeat(total - prefix - dict.length - 1) + '\n';
  const head = Buffer.alloc(prefix);
  MAGIC.copy(head, 0);
  head[6] = version;
  head[7] = 0;
  if (version === 1) head.writeUInt16LE(dict.length, 8);
  else head.writeUInt32LE(dict.length, 8);
  const body = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  if (require('os').endianness() !== 'LE') throw new NpyError('format: big-endian hosts are not supported');
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), body]);
}

function write(path, data, shape, descr) {
  fs.writeFileSync(path, format(data, shape, descr));
}

module.exports = { parse, read, format, write, NpyError, DESCR_OF_ORT_TYPE };
