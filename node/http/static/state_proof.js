// The state tree's hashing (R35) and the state proof check (R36) in the browser, written
// from PROTOCOL §12 like marketplace_tx/primitives/sparse_merkle.py:
//
//   path(k)    = SHA-256(k)                 bit 0 = the most significant bit of byte 0
//   leaf(k, v) = SHA-256(0x00 ‖ path(k) ‖ SHA-256(v))
//   node(l, r) = SHA-256(0x01 ‖ l ‖ r)       EMPTY = 32 zero bytes
//   T(S, d)    = EMPTY | leaf(k, v) | node(T(S0, d+1), T(S1, d+1))
//
// A proof is checked against the state_root of a header the browser verified itself
// (light_client.js, R37), never against the state_root the node sends along.

import {concat, fromHex, sha256, toHex} from "./verify.js";

/** The hash of an empty subtree (R35). */
export const EMPTY = new Uint8Array(32);

/** A proof holds at most one sibling per bit of the path (R36). */
export const MAX_SIBLINGS = 256;

/** A state proof that is malformed (R36's shape rules) or does not prove what was asked. */
export class InvalidProof extends Error {}

/** path(k) = SHA-256(k): where key `k` lives in the tree (R35). */
export function keyPath(key) {
  return sha256(key);
}

/** SHA-256(0x00 ‖ path ‖ value_hash): a leaf from its path and its value's hash (R35). */
export function leafHash(path, valueHash) {
  return sha256(concat(Uint8Array.of(0), path, valueHash));
}

/** node(l, r) = SHA-256(0x01 ‖ l ‖ r) (R35). */
export function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** Bit `index` of a path; bit 0 is the most significant bit of byte 0 (R35). */
export function pathBit(path, index) {
  return (path[index >> 3] >> (7 - (index & 7))) & 1;
}

async function subtree(entries, depth) {
  if (!entries.length) return EMPTY;
  if (entries.length === 1) return leafHash(entries[0].path, entries[0].valueHash);
  const zeros = entries.filter((entry) => pathBit(entry.path, depth) === 0);
  const ones = entries.filter((entry) => pathBit(entry.path, depth) === 1);
  return nodeHash(await subtree(zeros, depth + 1), await subtree(ones, depth + 1));
}

/** T(S, depth) of R35 over [key, value] byte pairs, written as the definition (also an R39 chunk hash). */
export async function subtreeRoot(entries, depth = 0) {
  const located = await Promise.all(entries.map(async ([key, value]) => ({path: await keyPath(key), valueHash: await sha256(value)})));
  return subtree(located, depth);
}

function hexField(text, name, size = null) {
  if (typeof text !== "string" || text.length % 2 || /[^0-9a-f]/.test(text)) throw new InvalidProof(`${name} is not lowercase hex`);
  const bytes = fromHex(text);
  if (size !== null && bytes.length !== size) throw new InvalidProof(`${name} is not ${size} bytes`);
  return bytes;
}

/**
 * Parse the R38 JSON proof {height, key, value, leaf, siblings} into bytes, or throw
 * InvalidProof for any shape R36 forbids. A `state_root` beside it is ignored: the root
 * a proof is checked against comes from a verified header (R37).
 */
export function parseProof(json) {
  if (!json || typeof json !== "object" || Array.isArray(json)) throw new InvalidProof("a proof is a JSON object");
  if (!Number.isSafeInteger(json.height) || json.height < 0) throw new InvalidProof("height is not a non-negative integer");
  const key = hexField(json.key, "key");
  const value = json.value === null || json.value === undefined ? null : hexField(json.value, "value");
  let leaf = null;
  if (json.leaf !== null && json.leaf !== undefined) {
    if (typeof json.leaf !== "object" || Array.isArray(json.leaf)) throw new InvalidProof("leaf is neither null nor an object");
    leaf = {path: hexField(json.leaf.path, "leaf.path", 32), valueHash: hexField(json.leaf.value_hash, "leaf.value_hash", 32)};
  }
  if (!Array.isArray(json.siblings)) throw new InvalidProof("siblings is not a list");
  if (json.siblings.length > MAX_SIBLINGS) throw new InvalidProof(`more than ${MAX_SIBLINGS} siblings`);
  const siblings = json.siblings.map((item, index) => hexField(item, `siblings[${index}]`, 32));
  if (value !== null && leaf !== null) throw new InvalidProof("value and leaf are both given");
  return {height: json.height, key, value, leaf, siblings};
}

/** The root a parsed proof folds up to (R36); InvalidProof if an absence leaf is not where the key would be. */
export async function proofRoot(proof) {
  const path = await keyPath(proof.key);
  const depth = proof.siblings.length;
  let current;
  if (proof.value !== null) {
    current = await leafHash(path, await sha256(proof.value));
  } else if (proof.leaf !== null) {
    if (toHex(proof.leaf.path) === toHex(path)) throw new InvalidProof("the leaf given for absence is the key's own path");
    for (let index = 0; index < depth; index++) {
      if (pathBit(proof.leaf.path, index) !== pathBit(path, index)) {
        throw new InvalidProof("the leaf given for absence is not on the key's path");
      }
    }
    current = await leafHash(proof.leaf.path, proof.leaf.valueHash);
  } else {
    current = EMPTY;
  }
  for (let index = depth - 1; index >= 0; index--) {
    const sibling = proof.siblings[index];
    current = pathBit(path, index) ? await nodeHash(sibling, current) : await nodeHash(current, sibling);
  }
  return current;
}

/**
 * Check that the JSON proof `json` proves `key` (bytes) at `height` against `stateRoot`
 * (hex, from a header verified by R37). Returns the parsed proof (its `value` is null for
 * absence); throws InvalidProof naming what did not check.
 */
export async function verifyStateProof(json, key, height, stateRoot) {
  const proof = parseProof(json);
  if (toHex(proof.key) !== toHex(key)) throw new InvalidProof("the proof is for another key than the one asked");
  if (proof.height !== height) throw new InvalidProof(`the proof is for height ${proof.height}, not ${height}`);
  const root = toHex(await proofRoot(proof));
  if (root !== stateRoot) {
    throw new InvalidProof(`the proof folds to ${root.slice(0, 16)}…, not to the verified header's state_root ${stateRoot.slice(0, 16)}…`);
  }
  return proof;
}
