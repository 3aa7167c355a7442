// Checking what the node says without trusting it (docs/api.md, "Checking finality"):
// RFC 6962 inclusion proofs (R7), block header hashes (R23) and commit signatures (R26),
// recomputed in the browser. SHA-256 comes from crypto.subtle; a page opened over plain
// http from another machine has no crypto.subtle, so a small pure-JS SHA-256 stands in.

const encoder = new TextEncoder();

export function fromHex(text) {
  if (typeof text !== "string" || text.length % 2 || /[^0-9a-f]/i.test(text)) {
    throw new Error("not a hex string");
  }
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(text.substr(i * 2, 2), 16);
  return bytes;
}

export function toHex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** The bytes of `parts` one after the other. */
export function concat(...parts) {
  const result = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    result.set(part, offset);
    offset += part.length;
  }
  return result;
}

// --- SHA-256 -----------------------------------------------------------------------

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** FIPS 180-4 SHA-256 in plain JavaScript: the fallback when crypto.subtle is missing. */
export function sha256Plain(message) {
  const length = message.length;
  const blocks = Math.ceil((length + 9) / 64);
  const padded = new Uint8Array(blocks * 64);
  padded.set(message);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length << 3) >>> 0);
  const state = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < blocks; block++) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block * 64 + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = state;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    const next = [a, b, c, d, e, f, g, hh];
    for (let i = 0; i < 8; i++) state[i] = (state[i] + next[i]) >>> 0;
  }
  const digest = new Uint8Array(32);
  const out = new DataView(digest.buffer);
  state.forEach((word, i) => out.setUint32(i * 4, word));
  return digest;
}

export const hasSubtle = Boolean(globalThis.crypto && globalThis.crypto.subtle);

export async function sha256(bytes) {
  if (hasSubtle) return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return sha256Plain(bytes);
}

// --- RFC 6962 inclusion proofs (R7) ---------------------------------------------------

/**
 * Fold an audit path (leaf to root) over the leaf SHA-256(0x00 ‖ tx hash), as RFC 9162
 * §2.1.3.2 verifies an inclusion proof. Returns {root (hex), ok} against `expectedRoot`.
 */
export async function verifyInclusion(txHash, index, total, path, expectedRoot) {
  if (!(index >= 0 && index < total)) return {root: null, ok: false, reason: "index outside the tree"};
  let node = await sha256(concat(Uint8Array.of(0), fromHex(txHash)));
  let fn = index;
  let sn = total - 1;
  for (const siblingHex of path) {
    if (sn === 0) return {root: null, ok: false, reason: "path longer than the tree"};
    const sibling = fromHex(siblingHex);
    if (fn % 2 === 1 || fn === sn) {
      node = await sha256(concat(Uint8Array.of(1), sibling, node));
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      node = await sha256(concat(Uint8Array.of(1), node, sibling));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  const root = toHex(node);
  if (sn !== 0) return {root, ok: false, reason: "path shorter than the tree"};
  return {root, ok: root === expectedRoot, reason: root === expectedRoot ? "" : "root differs"};
}

/** The RFC 6962 Merkle tree hash of a list of leaves (bytes): a block's tx_root (R7, R23). */
export async function merkleRoot(leaves) {
  if (!leaves.length) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return sha256(concat(Uint8Array.of(0), leaves[0]));
  let split = 1;
  while (split * 2 < leaves.length) split *= 2;
  const [left, right] = await Promise.all([merkleRoot(leaves.slice(0, split)), merkleRoot(leaves.slice(split))]);
  return sha256(concat(Uint8Array.of(1), left, right));
}

// --- canonical msgpack (R1), enough for headers and votes -------------------------

function header(prefix, size, bytes) {
  const out = new Uint8Array(1 + bytes);
  out[0] = prefix;
  for (let i = bytes; i >= 1; i--) {
    out[i] = size % 256;
    size = Math.floor(size / 256);
  }
  return out;
}

function lengthPrefix(size, small, smallMax, prefixes) {
  if (small !== null && size <= smallMax) return Uint8Array.of(small | size);
  if (size < 0x100 && prefixes[0] !== null) return header(prefixes[0], size, 1);
  if (size < 0x10000) return header(prefixes[1], size, 2);
  return header(prefixes[2], size, 4);
}

/** Byte-wise order of two byte strings, a shorter prefix first (R1's order of map keys). */
export function compareBytes(left, right) {
  for (let i = 0; i < Math.min(left.length, right.length); i++) if (left[i] !== right[i]) return left[i] - right[i];
  return left.length - right.length;
}

/** Canonical msgpack of strings, unsigned integers, bytes, booleans, lists and maps. */
export function canonical(value) {
  if (value instanceof Uint8Array) return concat(lengthPrefix(value.length, null, 0, [0xc4, 0xc5, 0xc6]), value);
  if (typeof value === "string") {
    const bytes = encoder.encode(value);
    return concat(lengthPrefix(bytes.length, 0xa0, 31, [0xd9, 0xda, 0xdb]), bytes);
  }
  if (typeof value === "boolean") return Uint8Array.of(value ? 0xc3 : 0xc2);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`cannot encode ${value}`);
    if (value < 0x80) return Uint8Array.of(value);
    if (value < 0x100) return header(0xcc, value, 1);
    if (value < 0x10000) return header(0xcd, value, 2);
    if (value < 0x100000000) return header(0xce, value, 4);
    return header(0xcf, value, 8);
  }
  if (Array.isArray(value)) {
    return concat(lengthPrefix(value.length, 0x90, 15, [null, 0xdc, 0xdd]), ...value.map(canonical));
  }
  if (value && typeof value === "object") {
    const keys = Object.keys(value).map((key) => [encoder.encode(key), key]);
    keys.sort(([a], [b]) => compareBytes(a, b));
    return concat(lengthPrefix(keys.length, 0x80, 15, [null, 0xde, 0xdf]),
      ...keys.flatMap(([, key]) => [canonical(key), canonical(value[key])]));
  }
  throw new Error(`cannot encode ${typeof value}`);
}

/** The 32-byte fields of a header (R23), hex in the API's JSON. */
export const HEADER_HASHES = ["prev_hash", "tx_root", "results_root", "state_root", "validators_hash",
  "next_validators_hash", "proposer", "last_commit_hash", "evidence_hash"];
/** Every field of a header (R23). */
export const HEADER_KEYS = ["chain_id", "height", "time", ...HEADER_HASHES];

/** The canonical header bytes (R23) of the API's JSON header (bytes as hex). */
export function headerBytes(json) {
  const keys = Object.keys(json);
  if (keys.length !== HEADER_KEYS.length || !HEADER_KEYS.every((key) => key in json)) {
    throw new Error("the header does not have the fields of R23");
  }
  const map = {};
  for (const key of HEADER_KEYS) {
    map[key] = HEADER_HASHES.includes(key) ? fromHex(json[key]) : json[key];
  }
  return canonical(map);
}

/** SHA-256 of the canonical header (R23), from the API's JSON header (bytes as hex). */
export async function headerHash(json) {
  return toHex(await sha256(headerBytes(json)));
}

/** The bytes a precommit signature covers (R4, R26). */
export function precommitBytes(chainId, height, round, blockHash) {
  return concat(encoder.encode("marketchain/vote/v1\u0000"),
    canonical({block_hash: fromHex(blockHash), chain_id: chainId, height, round, type: "precommit"}));
}

// libsodium's checks beyond the verification equation (R3: crypto_sign_verify_detached
// >= 1.0.18), which WebCrypto implementations do not all make: S < L, and neither the
// public key A nor R of small order (its blocklist, compared without the sign bit), and A
// canonical (y < p). Without them a browser accepts e.g. A = R = the identity with S = 0
// for every message.
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map(fromHex);
/** L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
const GROUP_ORDER = fromHex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");

function hasSmallOrder(point) {
  return SMALL_ORDER.some((entry) => entry.every((byte, i) => (i === 31 ? point[i] & 0x7f : point[i]) === byte));
}

function isCanonicalPoint(point) {
  const top = (point[31] & 0x7f) === 0x7f && point.subarray(1, 31).every((byte) => byte === 0xff);
  return !(top && point[0] >= 0xed);
}

function belowGroupOrder(scalar) {
  for (let i = 31; i >= 0; i--) if (scalar[i] !== GROUP_ORDER[i]) return scalar[i] < GROUP_ORDER[i];
  return false;
}

/** Whether libsodium would refuse this key and signature before any curve arithmetic (R3). */
export function sodiumRefuses(publicKey, signature) {
  return publicKey.length !== 32 || signature.length !== 64 || !isCanonicalPoint(publicKey) || hasSmallOrder(publicKey)
    || hasSmallOrder(signature.subarray(0, 32)) || !belowGroupOrder(signature.subarray(32));
}

/** Verify an Ed25519 signature with WebCrypto and libsodium's extra checks (R3); null when this browser cannot. */
export async function verifyEd25519(publicKeyHex, signatureHex, message) {
  if (!hasSubtle) return null;
  if (sodiumRefuses(fromHex(publicKeyHex), fromHex(signatureHex))) return false;
  let key;
  try {
    key = await crypto.subtle.importKey("raw", fromHex(publicKeyHex), {name: "Ed25519"}, false, ["verify"]);
  } catch (error) {
    if (error.name === "NotSupportedError") return null;
    return false;
  }
  return crypto.subtle.verify({name: "Ed25519"}, key, fromHex(signatureHex), message);
}
