// Block and transaction pages, with what the browser can check by itself: the header
// hash (R23), the tx_root (R7), the commit signatures (R26) and inclusion proofs.

import {api, optional} from "./api.js";
import {badge, facts, field, h, hex, integer, link, mkt, note, page, result, section, shortHex, table, time} from "./dom.js";
import {canonical, fromHex, hasSubtle, headerHash, merkleRoot, precommitBytes, sha256, toHex, verifyEd25519,
  verifyInclusion} from "./verify.js";

const MAX_TX_DETAILS = 50;

function check(label, state, detail) {
  const text = state === true ? "verified" : state === false ? "mismatch" : state === null ? "not checked" : state;
  const kind = state === true ? "verified" : state === false ? "failed" : "unchecked";
  return h("li", {class: `check ${kind}`}, h("span", {class: `mark ${kind}`}, text), " ", h("b", null, label),
    detail ? [" — ", detail] : null);
}

async function settle(promise) {
  try {
    return await promise;
  } catch (error) {
    return error;
  }
}

/** Checks of one block: header hash, tx_root, validators_hash, commit signatures. */
async function blockChecks(block, validators) {
  const header = block.header;
  const items = [];
  const hash = await settle(headerHash(header));
  items.push(hash instanceof Error ? check("header hash", "not checked", hash.message)
    : check("header hash", hash === block.hash, `SHA-256 of the canonical header = ${shortHex(hash, 16)}`));
  const root = toHex(await merkleRoot(block.txs.map(fromHex)));
  items.push(check("tx_root", root === header.tx_root,
    `RFC 6962 root of the ${block.tx_count} tx hash(es) = ${shortHex(root, 16)}`));
  if (validators) {
    const addresses = validators.validators.map((validator) => validator.address).sort();
    const setHash = toHex(await sha256(canonical(addresses.map(fromHex))));
    items.push(check("validators_hash", setHash === header.validators_hash,
      `SHA-256 of the ${addresses.length} validator address(es) that sign height ${block.height}`));
  }
  if (block.commit) {
    const message = precommitBytes(header.chain_id, block.height, block.commit.round, block.hash);
    const results = await Promise.all(block.commit.signatures.map((entry) =>
      settle(verifyEd25519(entry.validator, entry.signature, message))));
    const valid = results.filter((value) => value === true).length;
    const set = validators ? new Set(validators.validators.map((validator) => validator.address)) : null;
    const members = set ? block.commit.signatures.filter((entry) => set.has(entry.validator)).length : null;
    const quorum = set ? 3 * members > 2 * set.size : null;
    if (results.some((value) => value === null)) {
      items.push(check("commit signatures", "not checked", "this browser has no Ed25519 in WebCrypto"));
    } else {
      items.push(check("commit signatures", valid === results.length && quorum !== false,
        `${valid} of ${results.length} precommit signature(s) valid` +
        (set ? `, from ${members} of ${set.size} validators (more than 2/3 needed)` : "")));
    }
    return {items, signatureResults: results};
  }
  items.push(check("commit", "not yet", "the commit of the newest block arrives with the next one"));
  return {items, signatureResults: []};
}

export async function blockPage(context) {
  const height = Number(context.params[0]);
  const [block, validators] = await Promise.all([api(`/blocks/${height}`), optional(`/validators?height=${height}`)]);
  const header = block.header;
  const checks = await blockChecks(block, validators);
  const details = block.tx_count <= MAX_TX_DETAILS
    ? await Promise.all(block.txs.map((hash) => api(`/txs/${hash}`).catch(() => null))) : [];
  const txRows = block.txs.map((hash, index) => {
    const view = details[index];
    return [String(index), link("tx", hash, shortHex(hash, 16)), view ? h("span", {class: "txtype"}, view.type) : "",
      view ? link("account", view.sender) : "", view && view.result ? result(view.result.ok, view.result.code) : ""];
  });
  const signatures = block.commit ? block.commit.signatures.map((entry, index) => [link("account", entry.validator),
    h("span", {class: "mono"}, shortHex(entry.signature, 24)),
    checks.signatureResults[index] === true ? h("span", {class: "ok"}, "valid")
      : checks.signatureResults[index] === false ? h("span", {class: "fail"}, "invalid") : "-"]) : [];
  const nav = h("p", {class: "pager"}, height > 1 ? h("a", {href: `#/block/${height - 1}`}, `← block ${height - 1}`) : null,
    h("a", {href: `#/block/${height + 1}`}, `block ${height + 1} →`));
  if (!context.isCurrent()) return h("div");
  return page(`Block ${height}`, time(header.time), nav,
    section("Header", facts([
      ["hash", hex(block.hash)], ["height", integer(block.height)], ["time", time(header.time)],
      ["chain", header.chain_id], ["proposer", link("account", header.proposer, header.proposer)],
      ["previous", height > 1 ? link("block", height - 1, header.prev_hash) : [hex(header.prev_hash), " (genesis)"]],
      ["tx_root", hex(header.tx_root)], ["results_root", hex(header.results_root)], ["state_root", hex(header.state_root)],
      ["validators_hash", hex(header.validators_hash)], ["next_validators_hash", hex(header.next_validators_hash)],
      ["last_commit_hash", hex(header.last_commit_hash)], ["evidence_hash", hex(header.evidence_hash)],
    ])),
    section("Checked in this browser", h("ul", {class: "checks", id: "block-checks"}, checks.items)),
    section(`Transactions (${block.tx_count})`, table(["#", "hash", "type", "sender", "result"], txRows,
      {empty: "An empty block (a deadline or a validator change fell due)."})),
    section("Commit", block.commit
      ? [h("p", null, `Round ${block.commit.round}: ${block.commit.signatures.length} precommit signature(s) finalized this block.`),
        table(["validator", "signature", "check"], signatures)]
      : note("Not committed yet, or the commit is not stored.")),
    section("Last commit", Object.keys(block.last_commit).length
      ? h("p", null, `${block.last_commit.signatures.length} signature(s) of round ${block.last_commit.round} for `,
        link("block", block.last_commit.height, `block ${block.last_commit.height}`))
      : note("Block 1 carries no last commit.")),
    block.evidence.length ? section("Evidence", block.evidence.map((item) => h("pre", {class: "json"}, JSON.stringify(item, null, 2)))) : null,
  );
}

function payloadFacts(payload) {
  const entries = Object.entries(payload || {});
  if (!entries.length) return note("empty payload");
  return facts(entries.map(([name, value]) => [name, field(name, value)]));
}

function eventsTable(events) {
  if (!events || !events.length) return note("No events.");
  return h("div", {class: "events"}, events.map((event) => h("div", {class: "event"}, badge(event.type, "event"),
    facts(Object.entries(event).filter(([name]) => name !== "type").map(([name, value]) => [name, field(name, value)])))));
}

async function proofSection(tx) {
  const [proof, block] = await Promise.all([api(`/txs/${tx.hash}/proof`), api(`/blocks/${tx.height}`)]);
  const inclusion = await verifyInclusion(tx.hash, proof.index, proof.total, proof.path, block.header.tx_root);
  const hash = await settle(headerHash(block.header));
  const headerOk = !(hash instanceof Error) && hash === block.hash;
  const verified = inclusion.ok && headerOk && proof.tx_root === block.header.tx_root;
  const status = h("p", {class: `proof ${verified ? "verified" : "failed"}`, id: "proof-status"},
    h("span", {class: `mark ${verified ? "verified" : "failed"}`}, verified ? "verified" : "not verified"), " ",
    verified ? `the transaction is leaf ${proof.index} of ${proof.total} under the tx_root of block ${proof.height}, ` +
      "whose header hashes to the block hash" : `(${inclusion.reason || (headerOk ? "tx_root differs" : "header hash differs")})`);
  return section("Inclusion proof", status,
    facts([
      ["block", link("block", proof.height, `${proof.height} (${shortHex(block.hash, 16)})`)],
      ["leaf", `${proof.index} of ${proof.total}: SHA-256(0x00 ‖ tx hash)`],
      ["path", proof.path.length ? h("ol", {class: "path"}, proof.path.map((item) => h("li", null, hex(item))))
        : "empty: the only transaction of its block"],
      ["computed root", hex(inclusion.root)], ["header tx_root", hex(block.header.tx_root)],
      ["hashing", hasSubtle ? "crypto.subtle SHA-256" : "built-in SHA-256 (no crypto.subtle on this origin)"],
    ]),
    note("RFC 6962 / RFC 9162 §2.1.3.2: the path is folded from the leaf to the root; node = SHA-256(0x01 ‖ left ‖ right)."));
}

export async function txPage(context) {
  const hash = context.params[0].toLowerCase();
  const tx = await api(`/txs/${hash}`);
  const committed = tx.status === "committed";
  if (!committed) context.listen((kind) => kind === "block" && context.refresh());
  const proof = committed ? await proofSection(tx) : null;
  return page("Transaction", h("span", {class: "txtype"}, tx.type),
    section("Summary", facts([
      ["hash", hex(tx.hash)],
      ["status", committed ? badge("committed", "completed") : badge("pending", "placed")],
      ["type", h("span", {class: "txtype"}, tx.type)],
      ["sender", link("account", tx.sender, tx.sender)],
      ["nonce", integer(tx.nonce)], ["fee", h("span", {title: `${tx.fee} µMKT`}, `${tx.fee} µMKT (${mkt(tx.fee)})`)],
      committed && ["block", [link("block", tx.height), ` index ${tx.index} · `, time(tx.time)]],
      ["chain", tx.chain_id], ["signature", hex(tx.sig)],
    ])),
    committed ? section("Receipt", facts([
      ["result", result(tx.result.ok, tx.result.code)],
      !tx.result.ok && ["code", h("code", null, tx.result.code)],
      tx.result.message && ["message", tx.result.message],
    ])) : section("Receipt", note("Waiting in the mempool; this page updates when a block includes it.")),
    section("Payload", payloadFacts(tx.payload)),
    committed ? section("Events", eventsTable(tx.result.events)) : null,
    proof,
  );
}
