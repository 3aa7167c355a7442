// "Verified against block H": the section that account, order, shop, listing and item
// pages show (R38). In the browser, without trusting the node: the genesis is checked
// against a pinned hash (R33), the header of the proof's height is verified from it
// through every validator-set change point (R37, light_client.js), and the object's state
// proof is folded up to that verified header's state_root (R36, state_proof.js), never to
// the state_root the node sends along.

import {api} from "./api.js";
import {facts, field, h, hex, integer, section, shortHex} from "./dom.js";
import {LightClient, trustGenesis} from "./light_client.js";
import {decodeCanonical} from "./msgpack_decode.js";
import {verifyStateProof} from "./state_proof.js";
import {concat, fromHex, headerBytes, toHex} from "./verify.js";

const CHANGES_PAGE = 1000;
/** Pages of /light/changes read at most per check: 100,000 validator-set changes. */
export const MAX_CHANGE_PAGES = 100;

const encoder = new TextEncoder();

/** The state key (R35) of each kind of object a page can verify, from its id. */
export const STATE_KEYS = {
  account: (address) => keyOf("a", fromHex(address)),
  order: (orderId) => keyOf("o", fromHex(orderId)),
  shop: (shopId) => keyOf("s", fromHex(shopId)),
  listing: (listingId) => keyOf("l", fromHex(listingId)),
  item: (itemId) => keyOf("i", encoder.encode(itemId)),
};

function keyOf(tag, id) {
  return concat(encoder.encode(tag), id);
}

/** A failure at one named step of the check. */
class StepFailure extends Error {
  constructor(step, error) {
    super(error && error.message ? error.message : String(error));
    this.step = step;
  }
}

async function step(name, work) {
  try {
    return await work();
  } catch (error) {
    throw new StepFailure(name, error);
  }
}

/** The pinned genesis hash: `?genesis=HASH` in the page's hash route or in its URL, or null. */
function pinnedGenesis(context) {
  const pinned = (context.query && context.query.get("genesis")) || new URLSearchParams(location.search).get("genesis");
  return pinned ? pinned.toLowerCase() : null;
}

const clients = new Map();

/** The light client of one trust anchor, shared by every page of the session; checks run one at a time. */
async function lightClient(pinned) {
  const expected = pinned || (await api("/status")).genesis_hash;
  if (!clients.has(expected)) {
    const created = api("/genesis").then((genesis) => trustGenesis(genesis, expected))
      .then((trusted) => ({client: new LightClient(trusted), queue: Promise.resolve(), trusted}));
    clients.set(expected, created);
    created.catch(() => clients.delete(expected));
  }
  return {entry: await clients.get(expected), pinned: Boolean(pinned), expected};
}

/**
 * The change points above `after` that a check of `height` needs, read page by page from
 * /light/changes; throws when the node's cursor does not move forward or when more than
 * MAX_CHANGE_PAGES pages would be needed (a node that never ends its list).
 */
export async function changesBelow(height, after) {
  const changes = [];
  let cursor = after;
  for (let request = 0; cursor !== null && cursor < height; request++) {
    if (request === MAX_CHANGE_PAGES) throw new Error(`more than ${MAX_CHANGE_PAGES} pages of change points`);
    const page = await api(`/light/changes?after=${cursor}&limit=${CHANGES_PAGE}`);
    if (!page || !Array.isArray(page.changes) || (page.next !== null && !(Number.isSafeInteger(page.next) && page.next > cursor))) {
      throw new Error("/light/changes answered without a list or with a cursor that does not move forward");
    }
    changes.push(...page.changes);
    cursor = page.next;
  }
  return changes;
}

/** R37 for the header at `height`, then R36 for `key` (bytes) with the JSON `proof`. */
async function check(context, proof, key) {
  const {entry, pinned, expected} = await step("genesis (R33)", () => lightClient(pinnedGenesis(context)));
  const height = proof.height;
  if (!Number.isSafeInteger(height) || height < 1) throw new StepFailure("state proof (R36)", new Error(`height ${height} has no header to check against`));
  const [block, commit] = await step(`fetching block ${height}`, () =>
    Promise.all([api(`/blocks/${height}`), api(`/blocks/${height}/commit`)]));
  const run = entry.queue.then(async () => {
    let client = entry.client;
    if (height <= client.applied) client = new LightClient(entry.trusted);
    const changes = await step("fetching /light/changes", () => changesBelow(height, client.applied));
    const verified = await step("light client (R37)", async () => {
      await client.advance(changes, height);
      return client.verifyTarget(headerBytes(block.header), commit, height);
    });
    if (client.applied >= entry.client.applied) entry.client = client;
    return {verified, changePoints: client.changePoints};  // the client that checked this header
  });
  entry.queue = run.catch(() => null);
  const {verified, changePoints} = await run;
  const parsed = await step("state proof (R36)", () => verifyStateProof(proof, key, height, verified.header.state_root));
  return {verified, parsed, pinned, expected, changePoints};
}

function decoded(value) {
  if (value === null) return null;
  try {
    return value.length ? decodeCanonical(value) : {};
  } catch {
    return undefined;
  }
}

function success(result, describe) {
  const {verified, parsed, pinned, expected, changePoints} = result;
  const record = decoded(parsed.value);
  const summary = `verified against block ${verified.height} (${shortHex(verified.blockHash, 16)}), ` +
    `signed by ${verified.signers.length} of ${verified.validators.length} validators`;
  return [
    h("p", {class: "proof verified", id: "state-proof-status"}, h("span", {class: "mark verified"}, "verified"), " ", summary),
    facts([
      ...describe(record === undefined ? null : record, parsed.value !== null),
      ["proven", parsed.value === null ? "absent: the proof shows no entry under this key"
        : `present: ${integer(parsed.value.length)} byte(s) under this key`],
      ["block", [hex(verified.blockHash), ` at height ${verified.height}`]],
      ["state_root", hex(verified.header.state_root)],
      ["signers", h("span", {class: "mono"}, verified.signers.map((address) => shortHex(address, 12)).join(" "))],
      ["trust anchor", pinned ? `the genesis with the pinned hash ${shortHex(expected, 16)} (?genesis=)`
        : `the genesis hash this node reports in /status (${shortHex(expected, 16)}); pin it with ?genesis=HASH to trust no node`],
      ["change points", `${integer(changePoints)} validator-set change(s) checked from the genesis`],
    ]),
  ];
}

function failure(error) {
  const what = error instanceof StepFailure ? error.step : "checking";
  return h("p", {class: "proof failed", id: "state-proof-status", role: "alert"},
    h("span", {class: "mark failed"}, "not verified"), " ", h("b", null, what), ": ", error.message);
}

/**
 * The "Verified state" section of a page: shown at once, filled when the check ends.
 * `proofPath` is the object's R38 proof endpoint, `key` its state key (bytes), and
 * `describe(record, present)` lists [label, value] facts of the proven record (decoded,
 * or null when absent).
 */
export function verifiedSection(context, proofPath, key, describe) {
  const body = h("div", {class: "state-check checking", id: "state-check"},
    h("p", {class: "proof", id: "state-proof-status"}, h("span", {class: "mark unchecked"}, "checking"),
      " fetching the state proof, the validator-set changes and the commit…"));
  api(proofPath).then((proof) => check(context, proof, key),
    (error) => Promise.reject(new StepFailure(`fetching ${proofPath}`, error)))
    .then((result) => {
      body.className = "state-check verified";
      body.replaceChildren(...success(result, describe));
    }, (error) => {
      body.className = "state-check failed";
      body.replaceChildren(failure(error));
    });
  return section("Verified state", body);
}

function plain(value) {
  if (value instanceof Uint8Array) return toHex(value);
  if (Array.isArray(value)) return value.map(plain);
  return typeof value === "bigint" ? value.toString() : value;
}

/** [label, value] facts of the named fields a proven record holds (bytes shown as hex). */
export function recordFacts(record, names) {
  if (!record || typeof record !== "object") return [];
  return names.filter((name) => Object.hasOwn(record, name))
    .map((name) => [`proven ${name.replace(/_/g, " ")}`, field(name, plain(record[name]))]);
}
