// Home: network health, charts over recent blocks, the latest blocks and transactions,
// all updated live; and the paged list of every block.

import {api, metric, metricsText, optional} from "./api.js";
import {chart} from "./charts.js";
import {ago, h, integer, link, note, page, relative, result, section, shortHex, table, time} from "./dom.js";

const RECENT_BLOCKS = 30;
const LATEST_ROWS = 10;

function summary(block) {
  return {height: block.height, hash: block.hash, time: block.header.time, tx_count: block.tx_count,
    proposer: block.header.proposer, round: block.commit ? block.commit.round : null};
}

/** Block interval and throughput over consecutive recent blocks (newest first in `blocks`). */
function health(blocks) {
  const ordered = blocks.slice().sort((a, b) => a.height - b.height);
  const intervals = [];
  for (let i = 1; i < ordered.length; i++) {
    if (ordered[i].height === ordered[i - 1].height + 1) intervals.push(ordered[i].time - ordered[i - 1].time);
  }
  const span = ordered.length > 1 ? ordered[ordered.length - 1].time - ordered[0].time : 0;
  const txs = ordered.slice(1).reduce((total, block) => total + block.tx_count, 0);
  const sorted = intervals.slice().sort((a, b) => a - b);
  return {
    ordered, intervals,
    average: intervals.length ? intervals.reduce((a, b) => a + b, 0) / intervals.length : null,
    median: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
    throughput: span > 0 ? txs / (span / 1000) : null,
  };
}

function seconds(ms) {
  if (ms === null) return "-";
  return ms < 10000 ? `${(ms / 1000).toFixed(2)} s` : relative(Date.now() + ms).replace("in ", "");
}

function card(label, value, detail, id) {
  return h("div", {class: "card", id: id || null}, h("span", {class: "label"}, label), h("b", null, value),
    detail ? h("span", {class: "detail"}, detail) : null);
}

/** Average time to finality from the node's own histogram (GET /metrics), else the commit round. */
function finalityCard(metrics, latest) {
  const total = metric(metrics, "marketchain_finality_seconds_sum");
  const count = metric(metrics, "marketchain_finality_seconds_count");
  const rounds = metric(metrics, "marketchain_consensus_rounds_sum");
  if (count) {
    const extra = rounds !== null ? `, ${(rounds / count).toFixed(2)} rounds` : "";
    return card("finality", `${(total / count).toFixed(2)} s`, `average of ${integer(count)} block(s) since this node started${extra}`);
  }
  return card("finality", latest && latest.round !== null ? `round ${latest.round}` : "-",
    "final once committed: no forks");
}

function blockRow(block) {
  return [link("block", block.height), h("span", {class: "mono"}, shortHex(block.hash, 12)), ago(block.time),
    integer(block.tx_count), link("account", block.proposer)];
}

function txRow(tx) {
  return [link("tx", tx.hash), h("span", {class: "txtype"}, tx.type), link("block", tx.height),
    link("account", tx.sender), result(tx.ok, tx.code)];
}

export async function homePage(context) {
  const [status, blockPage, validators, metrics] = await Promise.all([
    api("/status"), api(`/blocks?limit=${RECENT_BLOCKS}`), optional("/validators"), metricsText()]);
  const blocks = blockPage.blocks.map(summary);
  const hashes = blockPage.blocks.flatMap((block) => block.txs.slice().reverse().map((hash) => hash))
    .slice(0, LATEST_ROWS);
  const views = await Promise.all(hashes.map((hash) => api(`/txs/${hash}`).catch(() => null)));
  const txs = views.filter(Boolean).map((view) => ({hash: view.hash, height: view.height, type: view.type,
    sender: view.sender, ok: view.result ? view.result.ok : null, code: view.result ? view.result.code : null}));
  let currentStatus = status;
  let currentMetrics = metrics;

  const cards = h("div", {class: "cards"});
  const charts = h("div", {class: "charts"});
  const blockTable = h("div");
  const txTable = h("div");

  function draw() {
    const stats = health(blocks);
    const latest = blocks[0];
    const tip = Math.max(currentStatus.height, latest ? latest.height : 0);
    cards.replaceChildren(
      card("height", latest ? link("block", tip, integer(tip)) : "0", latest ? time(latest.time) : "no block yet", "card-height"),
      card("peers", integer(currentStatus.peers), currentStatus.syncing ? "syncing…" : "in sync"),
      card("validators", validators ? integer(validators.validators.length) : "-",
        validators && validators.evidence.length ? `${validators.evidence.length} punished` : "BFT, > 2/3 sign"),
      card("block interval", seconds(stats.average), stats.median !== null ? `median ${seconds(stats.median)}` : "blocks only when needed"),
      card("throughput", stats.throughput !== null ? `${stats.throughput.toFixed(2)} tx/s` : "-",
        `over the last ${stats.ordered.length} blocks`),
      finalityCard(currentMetrics, latest),
      card("mempool", integer(currentStatus.mempool_size), `min fee ${currentStatus.min_fee} µMKT`),
    );
    const labels = stats.ordered.map((block) => `#${block.height}`);
    charts.replaceChildren(
      chart(labels, [{name: "transactions", values: stats.ordered.map((block) => block.tx_count), kind: "bar", className: "a"}],
        {title: "Transactions per block", format: (value) => integer(Math.round(value)), empty: "no blocks yet"}),
      chart(labels.slice(1), [{name: "interval", values: stats.ordered.slice(1).map((block, index) =>
        block.height === stats.ordered[index].height + 1 ? (block.time - stats.ordered[index].time) / 1000 : NaN),
      kind: "line", className: "b"}],
      {title: "Seconds between blocks", format: (value) => `${Math.round(value * 100) / 100} s`,
        empty: "two blocks are needed for an interval"}),
    );
    blockTable.replaceChildren(table(["height", "hash", "time", "txs", "proposer"],
      blocks.slice(0, LATEST_ROWS).map(blockRow), {class: "blocks", empty: "No blocks yet: the chain makes blocks only when transactions arrive (R29)."}));
    const rows = blockTable.querySelectorAll("tbody tr");
    blocks.slice(0, LATEST_ROWS).forEach((block, index) => {
      if (rows[index]) {
        rows[index].dataset.height = block.height;
        if (block.fresh) rows[index].classList.add("fresh");
      }
    });
    txTable.replaceChildren(table(["hash", "type", "block", "sender", "result"], txs.slice(0, LATEST_ROWS).map(txRow),
      {class: "txs", empty: "No transactions yet."}));
    txTable.querySelectorAll("tbody tr").forEach((row, index) => {
      if (txs[index] && txs[index].fresh) row.classList.add("fresh");
    });
    for (const item of [...blocks, ...txs]) item.fresh = false;
  }

  context.listen((kind, data) => {
    if (kind === "resync") {
      api(`/blocks?limit=${RECENT_BLOCKS}`).then((fresh) => {
        blocks.splice(0, blocks.length, ...fresh.blocks.map(summary));
        draw();
      }, () => {});
    } else if (kind === "block" && !blocks.some((block) => block.height === data.height)) {
      blocks.unshift({...data, round: data.round ?? null, fresh: true});
      blocks.sort((a, b) => b.height - a.height);
      blocks.length = Math.min(blocks.length, RECENT_BLOCKS);
      draw();
    } else if (kind === "tx" && !txs.some((tx) => tx.hash === data.hash)) {
      txs.unshift({...data, fresh: true});
      txs.length = Math.min(txs.length, LATEST_ROWS);
      draw();
    }
  });
  context.every(5000, () => Promise.all([api("/status"), metricsText()]).then(([fresh, freshMetrics]) => {
    if (!context.isCurrent()) return;
    currentStatus = fresh;
    currentMetrics = freshMetrics;
    draw();
  }, () => {}));
  draw();

  const info = h("p", {class: "note"}, `chain ${status.chain_id} · node ${status.moniker || ""} `,
    h("span", {class: "mono"}, shortHex(status.node_id, 16)), ` · version ${status.version}`,
    status.validator ? [" · validator ", link("account", status.validator)] : " · not a validator");
  return page("Network", null, info, cards, section("Recent blocks", charts),
    h("div", {class: "columns"},
      section("Latest blocks", blockTable, h("p", {class: "more"}, h("a", {href: "#/blocks"}, "all blocks →"))),
      section("Latest transactions", txTable)));
}

export async function blocksPage(context) {
  const before = context.query.get("before");
  const list = await api(`/blocks?limit=50${before ? `&before=${encodeURIComponent(before)}` : ""}`);
  const rows = list.blocks.map((block) => blockRow(summary(block)));
  const pager = h("p", {class: "pager"},
    before ? h("a", {href: "#/blocks"}, "← newest") : null,
    list.next ? h("a", {href: `#/blocks?before=${list.next}`}, "older →") : null);
  return page("Blocks", before ? `below ${before}` : "newest first",
    table(["height", "hash", "time", "txs", "proposer"], rows, {empty: "No blocks yet."}), pager,
    list.pruned_below ? note(`Older blocks are pruned on this node: it keeps blocks from height ${list.pruned_below} on.`) : null,
    note("Blocks are made only when transactions wait or a deadline falls due (R29); each is final once committed."));
}
