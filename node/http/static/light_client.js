// The light client of R37 in the browser: from the genesis document alone (its validators
// and chain_id), follow the validator-set change points of GET /light/changes, checking
// each one's commit signatures (R26, Ed25519 in WebCrypto) against the set in force, up to
// a target header that the set of its height signed. Mirrors client/light_client.py.
//
// Trust assumption, as in every light client: fewer than 1/3 of every set that was ever
// in force is faulty. The genesis itself is trusted because its hash is the one the user
// pinned (`?genesis=HASH`) or, failing that, the one the node reports in /status.

import {decodeCanonical, NotCanonical} from "./msgpack_decode.js";
import {canonical, fromHex, HEADER_HASHES, HEADER_KEYS, precommitBytes, sha256, toHex, verifyEd25519} from "./verify.js";

/** Something R37 (or R33, for the genesis) does not allow; the message names what failed. */
export class LightClientError extends Error {}

const HEX = /^[0-9a-f]*$/;
const GENESIS_KEYS = ["accounts", "chain_id", "genesis_time", "params", "validators"];
/** A canonical header is about 450 bytes; a longer one is refused before decoding (as client/light_client.py). */
export const MAX_HEADER_BYTES = 4096;
/** The most addresses a set or a commit may list (a bound on a hostile node's answer). */
export const MAX_VALIDATORS = 10000;

function isAddress(text) {
  return typeof text === "string" && text.length === 64 && HEX.test(text);
}

function sortedAddresses(list, name) {
  if (!Array.isArray(list) || list.length > MAX_VALIDATORS || !list.every(isAddress)) {
    throw new LightClientError(`${name} is not a list of at most ${MAX_VALIDATORS} addresses`);
  }
  for (let i = 1; i < list.length; i++) {
    if (list[i - 1] >= list[i]) throw new LightClientError(`${name} is not sorted and unique`);
  }
  return list;
}

/** validators_hash of R23: SHA-256 of the canonical sorted list of addresses (hex in, hex out). */
export async function validatorsHash(addresses) {
  return toHex(await sha256(canonical([...addresses].sort().map(fromHex))));
}

/** SHA-256 of the canonical genesis map (R33) of a genesis document in its JSON form. */
export async function genesisHash(genesis) {
  if (!genesis || typeof genesis !== "object" || Array.isArray(genesis)) throw new LightClientError("the genesis is not an object");
  const keys = Object.keys(genesis).sort();
  if (keys.join() !== GENESIS_KEYS.join()) throw new LightClientError(`the genesis must have exactly ${GENESIS_KEYS.join(", ")}`);
  if (!Array.isArray(genesis.accounts) || !genesis.accounts.every((account) => account && isAddress(account.address))) {
    throw new LightClientError("the genesis accounts are not a list of {address, balance, roles}");
  }
  const map = {
    ...genesis,
    accounts: genesis.accounts.map((account) => ({...account, address: fromHex(account.address)})),
    validators: sortedAddresses(genesis.validators, "the genesis validators").map(fromHex),
  };
  try {
    return toHex(await sha256(canonical(map)));
  } catch (error) {
    throw new LightClientError(`the genesis cannot be encoded canonically (${error.message})`);
  }
}

/**
 * The trust anchor: the genesis document checked against `expectedHash` (hex). Returns
 * {hash, chainId, validators}; throws LightClientError when it hashes to anything else.
 */
export async function trustGenesis(genesis, expectedHash) {
  const hash = await genesisHash(genesis);
  if (hash !== String(expectedHash).toLowerCase()) {
    throw new LightClientError(`the genesis hashes to ${hash.slice(0, 16)}…, not to the trusted ${String(expectedHash).slice(0, 16)}…`);
  }
  if (typeof genesis.chain_id !== "string" || !genesis.validators.length) {
    throw new LightClientError("the genesis has no chain_id or no validators");
  }
  return {hash, chainId: genesis.chain_id, validators: [...genesis.validators]};
}

/** A header from its canonical bytes (R1, R2, R23), with bytes fields as hex; LightClientError if malformed. */
export function decodeHeader(bytes) {
  if (bytes.length > MAX_HEADER_BYTES) throw new LightClientError(`a header is over ${MAX_HEADER_BYTES} bytes`);
  let map;
  try {
    map = decodeCanonical(bytes);
  } catch (error) {
    if (error instanceof NotCanonical) throw new LightClientError(`a header is not canonical msgpack: ${error.message}`);
    throw error;
  }
  if (!map || typeof map !== "object" || Array.isArray(map) || map instanceof Uint8Array
      || Object.keys(map).sort().join() !== [...HEADER_KEYS].sort().join()) {
    throw new LightClientError("a header does not have exactly the fields of R23");
  }
  if (typeof map.chain_id !== "string" || !Number.isSafeInteger(map.height) || !Number.isSafeInteger(map.time)) {
    throw new LightClientError("a header's chain_id, height or time has the wrong type");
  }
  const header = {chain_id: map.chain_id, height: map.height, time: map.time};
  for (const name of HEADER_HASHES) {
    if (!(map[name] instanceof Uint8Array) || map[name].length !== 32) throw new LightClientError(`a header's ${name} is not 32 bytes`);
    header[name] = toHex(map[name]);
  }
  return header;
}

/**
 * The signers of `commit` for the block `blockHash` at `height` (R24, R26), checked as
 * consensus/commit.py verify_commit does: signatures sorted by validator and unique, each
 * from `set` (hex addresses) and a valid precommit, more than 2/3 of the set.
 * LightClientError otherwise; `what` names the block in messages.
 */
async function quorumSigners(chainId, set, height, blockHash, commit, what) {
  if (!commit || typeof commit !== "object" || !Array.isArray(commit.signatures)) throw new LightClientError(`${what}: no commit`);
  if (commit.signatures.length > MAX_VALIDATORS) throw new LightClientError(`${what}: more than ${MAX_VALIDATORS} signatures`);
  if (commit.height !== height || commit.block_hash !== blockHash) {
    throw new LightClientError(`${what}: the commit is for another block than the header's hash`);
  }
  if (!Number.isSafeInteger(commit.round) || commit.round < 0) throw new LightClientError(`${what}: the commit's round is not a count`);
  const members = new Set(set);
  const signers = [];
  for (const entry of commit.signatures) {
    if (!entry || !isAddress(entry.validator) || typeof entry.signature !== "string" || entry.signature.length !== 128
        || !HEX.test(entry.signature)) {
      throw new LightClientError(`${what}: a commit signature is not {validator, signature} in hex`);
    }
    if (signers.length && signers[signers.length - 1] >= entry.validator) {
      throw new LightClientError(`${what}: commit signatures are not sorted by validator and unique`);
    }
    if (!members.has(entry.validator)) throw new LightClientError(`${what}: signer ${entry.validator.slice(0, 16)}… is not in the trusted set`);
    signers.push(entry.validator);
  }
  const message = precommitBytes(chainId, height, commit.round, blockHash);
  const results = await Promise.all(commit.signatures.map((entry) => verifyEd25519(entry.validator, entry.signature, message)));
  if (results.some((valid) => valid === null)) {
    throw new LightClientError("this browser cannot check Ed25519 signatures (no Ed25519 in WebCrypto)");
  }
  const invalid = results.findIndex((valid) => valid !== true);
  if (invalid >= 0) throw new LightClientError(`${what}: the signature of ${signers[invalid].slice(0, 16)}… is invalid`);
  if (3 * signers.length <= 2 * set.length) {
    throw new LightClientError(`${what}: signed by ${signers.length} of ${set.length} validators; more than 2/3 are needed`);
  }
  return signers;
}

/**
 * R37 from one trust anchor: holds the set in force after the change points applied so
 * far, so that a page verifying newer and newer heights checks each change point once.
 */
export class LightClient {
  /** `trusted` is what trustGenesis returned. */
  constructor(trusted) {
    this.chainId = trusted.chainId;
    this.validators = [...trusted.validators];
    this.applied = 0;
    this.changePoints = 0;
  }

  /**
   * Apply, in order, the change points of `changes` (the JSON of /light/changes) whose
   * height is above those applied already and below `target`; throws LightClientError
   * for any that does not check (R37).
   */
  async advance(changes, target) {
    if (target <= this.applied) throw new LightClientError(`height ${target} is below a change point already applied`);
    let previous = 0;
    for (const change of changes) {
      if (!change || !Number.isSafeInteger(change.height) || change.height <= previous) {
        throw new LightClientError("change points are not in strictly increasing height order");
      }
      previous = change.height;
      if (change.height <= this.applied) continue;
      if (change.height >= target) break;
      await this.applyChange(change);
    }
  }

  /**
   * The header `bytes` at `height`, of this chain, announcing the set in force (`setName` in
   * messages) and signed by more than 2/3 of it in `commit` (R26). Returns {header, blockHash, signers}.
   */
  async signedBySet(bytes, commit, height, what, setName) {
    const header = decodeHeader(bytes);
    if (header.chain_id !== this.chainId) throw new LightClientError(`${what}: chain_id ${header.chain_id} is not the genesis one`);
    if (header.height !== height) throw new LightClientError(`${what}: the header is for height ${header.height}`);
    if (header.validators_hash !== await validatorsHash(this.validators)) {
      throw new LightClientError(`${what}: validators_hash is not the hash of ${setName}`);
    }
    const blockHash = toHex(await sha256(bytes));
    const signers = await quorumSigners(this.chainId, this.validators, height, blockHash, commit, what);
    return {header, blockHash, signers};
  }

  async applyChange(change) {
    const what = `change point ${change.height}`;
    if (typeof change.header !== "string" || change.header.length > 2 * MAX_HEADER_BYTES || change.header.length % 2
        || !HEX.test(change.header)) {
      throw new LightClientError(`${what}: the header is not hex of at most ${MAX_HEADER_BYTES} bytes`);
    }
    const {header} = await this.signedBySet(fromHex(change.header), change.commit, change.height, what, "the set in force");
    if (header.next_validators_hash === header.validators_hash) {
      throw new LightClientError(`${what}: the header is not a change point (next_validators_hash = validators_hash)`);
    }
    const next = sortedAddresses(change.next_validators, `${what}: next_validators`);
    if (!next.length || await validatorsHash(next) !== header.next_validators_hash) {
      throw new LightClientError(`${what}: next_validators does not hash to the header's next_validators_hash`);
    }
    this.validators = [...next];
    this.applied = change.height;
    this.changePoints += 1;
  }

  /**
   * Verify the target header (canonical bytes) at `height` and its `commit` (JSON of
   * /blocks/{h}/commit), once every change point below it has been applied by `advance`.
   * Returns {height, blockHash, header, signers, validators}.
   */
  async verifyTarget(headerBytes, commit, height) {
    const {header, blockHash, signers} = await this.signedBySet(headerBytes, commit, height, `block ${height}`,
      "the set the change points lead to");
    return {height, blockHash, header, signers, validators: [...this.validators]};
  }
}

/**
 * R37 in one call: `trusted` from trustGenesis, `changes` the change points (JSON of
 * /light/changes, increasing), the target header's canonical bytes and its commit.
 */
export async function verifyHeader(trusted, changes, headerBytes, commit, height) {
  const client = new LightClient(trusted);
  await client.advance(changes, height);
  return client.verifyTarget(headerBytes, commit, height);
}
