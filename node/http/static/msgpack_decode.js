// Decoding canonical msgpack (R1) strictly, as R2 asks: anything that would not re-encode
// to the identical bytes is refused (a longer integer or length form than needed, map keys
// that are not text in strictly ascending UTF-8 order, floats, extension types, trailing
// bytes). Used for the headers of /light/changes (R37) and for the values of state proofs
// (R35), which the explorer shows decoded once they are proven.

import {compareBytes} from "./verify.js";

const decoder = new TextDecoder("utf-8", {fatal: true, ignoreBOM: true});
const encoder = new TextEncoder();

/** A byte string that is not canonical msgpack (R1, R2); the message names what is wrong. */
export class NotCanonical extends Error {}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.offset = 0;
  }

  take(size) {
    if (this.offset + size > this.bytes.length) throw new NotCanonical("the bytes end inside a value");
    const start = this.offset;
    this.offset += size;
    return start;
  }

  unsigned(size) {
    const at = this.take(size);
    if (size === 1) return this.view.getUint8(at);
    if (size === 2) return this.view.getUint16(at);
    if (size === 4) return this.view.getUint32(at);
    const value = this.view.getBigUint64(at);
    return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  signed(size) {
    const at = this.take(size);
    if (size === 1) return this.view.getInt8(at);
    if (size === 2) return this.view.getInt16(at);
    if (size === 4) return this.view.getInt32(at);
    const value = this.view.getBigInt64(at);
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
  }

  /** A length or integer in the wider form `size`, which must be needed (shortest form, R1). */
  shortest(size, smallest) {
    const value = this.unsigned(size);
    if (value < smallest) throw new NotCanonical(`a ${size}-byte form holds ${value}, which fits a shorter one`);
    return value;
  }

  slice(size) {
    const at = this.take(size);
    return this.bytes.slice(at, at + size);
  }
}

const UNSIGNED_MINIMUM = {1: 0x80, 2: 0x100, 4: 0x10000, 8: 0x100000000};
const SIGNED_FLOOR = {1: -0x20, 2: -0x80, 4: -0x8000, 8: -0x80000000};

function signedCanonical(value, size) {
  if (value >= 0) throw new NotCanonical("a non-negative integer in a signed form");
  if (value >= SIGNED_FLOOR[size]) throw new NotCanonical(`a ${size}-byte signed form holds ${value}, which fits a shorter one`);
  return value;
}

function text(reader, size) {
  try {
    return decoder.decode(reader.slice(size));
  } catch {
    throw new NotCanonical("a string is not valid UTF-8");
  }
}

function array(reader, size, depth) {
  const items = [];
  for (let i = 0; i < size; i++) items.push(value(reader, depth + 1));
  return items;
}

function map(reader, size, depth) {
  const result = {};
  let previous = null;
  for (let i = 0; i < size; i++) {
    const key = value(reader, depth + 1);
    if (typeof key !== "string") throw new NotCanonical("a map key is not text");
    const keyBytes = encoder.encode(key);
    if (previous !== null && compareBytes(previous, keyBytes) >= 0) {
      throw new NotCanonical(`map keys are not strictly ascending at ${JSON.stringify(key)}`);
    }
    previous = keyBytes;
    Object.defineProperty(result, key, {value: value(reader, depth + 1), enumerable: true, writable: true, configurable: true});
  }
  return result;
}

const MAX_DEPTH = 64;

function value(reader, depth) {
  if (depth > MAX_DEPTH) throw new NotCanonical(`nested deeper than ${MAX_DEPTH}`);
  const byte = reader.unsigned(1);
  if (byte <= 0x7f) return byte;
  if (byte >= 0xe0) return byte - 0x100;
  if ((byte & 0xf0) === 0x80) return map(reader, byte & 0x0f, depth);
  if ((byte & 0xf0) === 0x90) return array(reader, byte & 0x0f, depth);
  if ((byte & 0xe0) === 0xa0) return text(reader, byte & 0x1f);
  switch (byte) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return reader.slice(reader.unsigned(1));
    case 0xc5: return reader.slice(reader.shortest(2, 0x100));
    case 0xc6: return reader.slice(reader.shortest(4, 0x10000));
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
      const size = 1 << (byte - 0xcc);
      const number = reader.unsigned(size);
      if (number < UNSIGNED_MINIMUM[size]) throw new NotCanonical(`a ${size}-byte integer holds ${number}, which fits a shorter one`);
      return number;
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
      const size = 1 << (byte - 0xd0);
      return signedCanonical(reader.signed(size), size);
    }
    case 0xd9: return text(reader, reader.shortest(1, 32));
    case 0xda: return text(reader, reader.shortest(2, 0x100));
    case 0xdb: return text(reader, reader.shortest(4, 0x10000));
    case 0xdc: return array(reader, reader.shortest(2, 16), depth);
    case 0xdd: return array(reader, reader.shortest(4, 0x10000), depth);
    case 0xde: return map(reader, reader.shortest(2, 16), depth);
    case 0xdf: return map(reader, reader.shortest(4, 0x10000), depth);
    default: throw new NotCanonical(`type byte 0x${byte.toString(16)} is not allowed (R1: no floats, no extension types)`);
  }
}

/** The one value of canonical msgpack bytes: maps as objects, bin as Uint8Array, big integers as BigInt. */
export function decodeCanonical(bytes) {
  const reader = new Reader(bytes);
  const result = value(reader, 0);
  if (reader.offset !== bytes.length) throw new NotCanonical(`${bytes.length - reader.offset} trailing byte(s) after the value`);
  return result;
}
