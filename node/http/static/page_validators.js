// Validators: the set, the next proposers (R25), pending votes and scheduled changes (R34),
// punished validators (R27), and each validator's signing record over recent blocks.

import {api} from "./api.js";
import {signingGrid} from "./charts.js";
import {badge, facts, field, h, hex, integer, link, note, page, section, table} from "./dom.js";

const RECORD_BLOCKS = 20;
const UPCOMING = 5;

export async function validatorsPage(context) {
  const [validators, recent, status] = await Promise.all([
    api("/validators"), api(`/blocks?limit=${RECORD_BLOCKS}`), api("/status")]);
  context.listen((kind) => kind === "block" && context.refresh());
  const blocks = recent.blocks.slice().reverse();
  const heights = blocks.map((block) => block.height);
  const signers = new Map(blocks.map((block) => [block.height,
    block.commit ? new Set(block.commit.signatures.map((entry) => entry.validator)) : null]));
  const signed = (validator, height) => {
    const set = signers.get(height);
    return set === null || set === undefined ? "none" : set.has(validator) ? "yes" : "no";
  };
  const addresses = validators.validators.map((validator) => validator.address);
  const sorted = addresses.slice().sort();
  const n = sorted.length;
  const grids = signingGrid(addresses, heights, signed);
  const rows = addresses.map((address, index) => {
    const count = heights.filter((height) => signed(address, height) === "yes").length;
    const committed = heights.filter((height) => signers.get(height)).length;
    return [
      h("span", null, link("account", address), " ",
        address === validators.proposer ? badge("next proposer", "accepted") : null, " ",
        address === status.validator ? badge("this node", "role") : null),
      h("span", {class: count === committed ? "ok" : "partial"}, `${count} / ${committed}`),
      grids[index],
    ];
  });
  const upcoming = n ? Array.from({length: UPCOMING}, (_, offset) => {
    const height = validators.height + offset;
    return [integer(height), link("account", sorted[height % n])];
  }) : [];
  const needed = Math.floor((2 * n) / 3) + 1;
  const pending = validators.pending_votes.map((vote) => [badge(vote.action, vote.action === "add" ? "completed" : "cancelled"),
    link("account", vote.validator), field("voters", vote.voters), `${vote.voters.length} of ${needed} needed`]);
  return page("Validators", `${n} signing height ${validators.height}`,
    section("Validator set", facts([
      ["size", `${n} (a block is final with ${needed} precommits: more than 2/3)`],
      ["validators hash", hex(validators.validators_hash)],
      ["next proposer", link("account", validators.proposer)],
    ]),
    table(["validator", `signed (last ${heights.length})`, "signatures, oldest → newest"], rows,
      {class: "validators", empty: "No validators."}),
    h("p", {class: "legend"}, h("span", null, h("i", {class: "swatch sig yes"}), "signed"),
      h("span", null, h("i", {class: "swatch sig no"}), "not in the commit"),
      h("span", null, h("i", {class: "swatch sig none"}), "no commit stored"),
      heights.length ? ` blocks ${heights[0]}–${heights[heights.length - 1]}` : "")),
    section("Next proposers", table(["height", "proposer (round 0)"], upcoming),
      note("Proposer of (height, round) = validators sorted by address, index (height + round) mod n (R25).")),
    section("Pending votes", table(["action", "validator", "voters", "progress"], pending,
      {empty: "No pending validator_vote."})),
    validators.scheduled && validators.scheduled.length ? section("Scheduled changes",
      table(["from height", "set"], validators.scheduled.map((change) => [integer(change.height),
        field("validator", change.validators)]))) : null,
    section("Punished", table(["validator", "details"], validators.evidence.map((entry) => [link("account", entry.validator),
      facts(Object.entries(entry).filter(([name]) => name !== "validator").map(([name, value]) => [name, field(name, value)]))]),
    {empty: "No validator has been punished for double signing."})),
  );
}
