// An account: balance, roles with their KYC evidence hashes, loyalty points per shop,
// merchant reputation, shops it owns, its orders, and its transaction history (paged).

import {api, collect, shopName} from "./api.js";
import {gauge, stars} from "./charts.js";
import {ago, badge, facts, field, h, hex, integer, link, mkt, note, page, result, section, table} from "./dom.js";
import {recordFacts, STATE_KEYS, verifiedSection} from "./verified_state.js";

const HISTORY_PAGE = 20;

export function reputationFacts(reputation) {
  return facts([
    ["trust score", gauge(reputation.trust_score, 1000, "trust score")],
    ["rating", reputation.rating_count ? stars(reputation.avg_rating_x100, reputation.rating_count) : "no ratings yet"],
    ["orders completed", integer(reputation.orders_completed)],
    ["orders refunded", integer(reputation.orders_refunded)],
    ["orders expired", integer(reputation.orders_expired)],
    ["disputes won / lost", `${integer(reputation.disputes_won)} / ${integer(reputation.disputes_lost)}`],
    "units_sold" in reputation && ["units sold", integer(reputation.units_sold)],
    "revenue" in reputation && ["revenue", mkt(reputation.revenue)],
  ]);
}

function orderRow(order, names) {
  return [link("order", order.id), badge(order.state), link("shop", order.shop_id, names.get(order.shop_id) || undefined),
    integer(order.quantity),
    mkt(order.total_price), ago(order.placed_at)];
}

export async function accountPage(context) {
  const address = context.params[0].toLowerCase();
  const cursor = context.query.get("cursor");
  const [account, history, shops, bought, sold] = await Promise.all([
    api(`/accounts/${address}`),
    api(`/accounts/${address}/txs?limit=${HISTORY_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
    api(`/shops?owner=${address}`),
    collect(`/orders?buyer=${address}`, "orders", 10),
    collect(`/orders?merchant=${address}`, "orders", 10),
  ]);
  const points = Object.entries(account.points || {});
  const shopIds = [...new Set([...points.map(([shopId]) => shopId),
    ...[...bought.items, ...sold.items].map((order) => order.shop_id)])];
  const shopNames = new Map(await Promise.all(shopIds.map(async (shopId) => [shopId, await shopName(shopId)])));
  const names = points.map(([shopId]) => shopNames.get(shopId));
  if (!cursor) context.listen((kind, data) => kind === "tx" && data.sender === address && context.refresh());
  const roles = account.roles.length
    ? table(["role", "granted by", "at block", "KYC evidence hash"], account.roles.map((role) => {
      const grant = (account.role_grants || {})[role] || {};
      return [badge(role, "role"), field("granted_by", grant.granted_by), field("height", grant.height),
        grant.evidence_hash ? hex(grant.evidence_hash) : h("span", {class: "muted"}, "genesis")];
    }))
    : note("No roles: a buyer account.");
  const historyRows = history.txs.map((tx) => [link("tx", tx.hash), h("span", {class: "txtype"}, tx.type),
    link("block", tx.height), tx.sender === address ? h("span", {class: "muted"}, "this account") : link("account", tx.sender),
    result(tx.ok, tx.code)]);
  const pager = h("p", {class: "pager"},
    cursor ? h("a", {href: `#/account/${address}`}, "← newest") : null,
    history.next ? h("a", {href: `#/account/${address}?cursor=${encodeURIComponent(history.next)}`, id: "history-next"}, "older →") : null);
  return page("Account", null,
    section("Summary", facts([
      ["address", hex(account.address)],
      ["balance", h("span", {title: `${account.balance} µMKT`, class: "amount"}, mkt(account.balance))],
      ["nonce", account.pending_nonce !== account.nonce
        ? `${account.nonce} (${account.pending_nonce - account.nonce} pending)` : integer(account.nonce)],
      ["roles", account.roles.length ? account.roles.map((role) => badge(role, "role")) : "none"],
    ])),
    verifiedSection(context, `/accounts/${address}/proof`, STATE_KEYS.account(address), (record, present) => (present
      ? recordFacts(record, ["balance", "nonce"])
      : [["proven balance", mkt(0)], ["proven nonce", "0 (no account record: balance and nonce are 0)"]])),
    account.roles.length ? section("Roles", roles) : null,
    section("Loyalty points", points.length
      ? table(["shop", "points"], points.map(([shopId, amount], index) => [link("shop", shopId, names[index] || undefined),
        `${integer(amount)} (${mkt(amount)} off)`]))
      : note("No points in any shop.")),
    account.reputation ? section("Merchant reputation", reputationFacts(account.reputation)) : null,
    shops.shops.length ? section("Shops", table(["shop", "trust", "listings", "open"], shops.shops.map((shop) => [
      link("shop", shop.id, shop.name), integer(shop.reputation.trust_score), integer(shop.active_listing_count),
      field("open", shop.open)]))) : null,
    bought.items.length ? section("Orders placed", table(["order", "state", "shop", "qty", "total", "placed"], bought.items.map((order) => orderRow(order, shopNames)))) : null,
    sold.items.length ? section("Orders received", table(["order", "state", "shop", "qty", "total", "placed"], sold.items.map((order) => orderRow(order, shopNames)))) : null,
    section("History", table(["hash", "type", "block", "sender", "result"], historyRows,
      {class: "history", empty: "No transactions."}), pager,
      history.pruned_below ? note(`Older transactions are pruned on this node: it keeps blocks from height ${history.pruned_below} on.`) : null,
    note("Transactions the account sent, is named in, or that act on its orders; newest first.")),
  );
}
