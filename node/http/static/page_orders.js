// Orders (list, and one order with its timeline, escrow and deadlines) and unique items
// with their provenance chain.

import {api, collect, shopName} from "./api.js";
import {ago, badge, digitalBadge, facts, field, h, hex, integer, link, mkt, note, page, sealedDelivery, section, table,
  time} from "./dom.js";
import {recordFacts, STATE_KEYS, verifiedSection} from "./verified_state.js";

const ORDER_STATES = ["placed", "accepted", "shipped", "delivered", "return_requested", "disputed", "completed",
  "cancelled", "rejected", "expired", "refunded", "resolved"];

/** What happens when an order's deadline passes in each state (R15). */
const DEADLINE_OUTCOME = {
  placed: ["expired", "escrow back to the buyer"],
  accepted: ["expired", "escrow back to the buyer"],
  shipped: ["completed", "escrow to the merchant"],
  delivered: ["completed", "escrow to the merchant"],
  return_requested: ["refunded", "escrow back to the buyer"],
  disputed: ["refunded", "escrow back to the buyer"],
};

const TIMELINE_SKIP = new Set(["event", "state", "time", "height", "tx"]);

function details(entry) {
  const rest = Object.entries(entry).filter(([name]) => !TIMELINE_SKIP.has(name));
  if (!rest.length) return null;
  return h("dl", {class: "inline"}, rest.map(([name, value]) => [h("dt", null, name.replace(/_/g, " ")),
    h("dd", null, field(name, value))]));
}

/** What `order_deliver` left on a digital order (R41): its size, never its bytes. */
function deliveryText(order) {
  return order.delivery ? sealedDelivery(order.delivery) : h("span", {class: "muted"}, "delivered");
}

/** Every state change and shipment update in time order (R18), then the pending deadline. */
function timeline(order) {
  const entries = order.history.map((entry, index) => ({...entry, index}))
    .sort((a, b) => a.time - b.time || a.height - b.height || a.index - b.index);
  const items = [];
  let state = null;
  for (const entry of entries) {
    const changed = entry.state !== state;
    items.push(h("li", {class: `step ${entry.tx === "deadline" ? "by-deadline" : ""}`, "data-event": entry.event},
      h("div", {class: "when"}, time(entry.time), h("span", {class: "at"}, " block ", link("block", entry.height))),
      h("div", {class: "what"},
        h("code", {class: "event-name"}, entry.event),
        changed ? [" ", state ? [badge(state), " → "] : null, badge(entry.state)] : [" ", h("span", {class: "muted"}, "(still "), badge(entry.state), h("span", {class: "muted"}, ")")],
        entry.status ? [" ", h("span", {class: "status"}, entry.status.replace(/_/g, " "))] : null,
        entry.event === "order_deliver" ? [" ", deliveryText(order)] : null),
      details(Object.fromEntries(Object.entries(entry).filter(([name]) => !["status", "index"].includes(name)))),
      h("div", {class: "by"}, entry.tx === "deadline" ? badge("deadline", "deadline") : ["tx ", link("tx", entry.tx)])));
    state = entry.state;
  }
  if (order.review) {
    items.push(h("li", {class: "step review-step", "data-event": "review"},
      h("div", {class: "when"}, time(order.review.time), h("span", {class: "at"}, " block ", link("block", order.review.height))),
      h("div", {class: "what"}, h("code", {class: "event-name"}, "review_submit"), " ",
        h("span", {class: "stars"}, h("span", {class: "on"}, "★".repeat(order.review.rating)),
          h("span", {class: "off"}, "★".repeat(5 - order.review.rating)))),
      order.review.text ? h("p", {class: "quote"}, order.review.text) : null,
      order.review.reply ? h("p", {class: "quote reply"}, h("b", null, "reply: "), order.review.reply.text, " ",
        time(order.review.reply.time)) : null,
      order.review.tx ? h("div", {class: "by"}, "tx ", link("tx", order.review.tx)) : null));
  }
  if (order.deadline !== null && DEADLINE_OUTCOME[order.state]) {
    const [next, money] = DEADLINE_OUTCOME[order.state];
    items.push(h("li", {class: "step future", "data-event": "deadline"},
      h("div", {class: "when"}, time(order.deadline)),
      h("div", {class: "what"}, h("code", {class: "event-name"}, "deadline"), " ", badge(order.state), " → ", badge(next)),
      h("p", {class: "muted"}, `If nothing happens first, the chain itself moves the order at the first block after this time: ${money} (R15).`)));
  }
  return h("ol", {class: "timeline", id: "timeline"}, items);
}

export async function orderPage(context) {
  const orderId = context.params[0].toLowerCase();
  const order = await api(`/orders/${orderId}`);
  const [listing, shop] = await Promise.all([
    api(`/listings/${order.listing_id}`).catch(() => null), shopName(order.shop_id)]);
  // Shipment updates, reviews and deadline moves all come in blocks: re-read the order on each.
  context.listen((kind, data) => {
    if (kind === "block" || kind === "resync" || (kind === "order" && data.order_id === orderId)) context.refresh();
  });
  const paid = order.total_price - order.redeem_points;
  return page("Order", [badge(order.state), digitalBadge(order)],
    h("div", {class: "columns"},
      section("Order", facts([
        ["id", hex(order.id)],
        ["state", badge(order.state)],
        ["listing", link("listing", order.listing_id, listing ? listing.title : undefined)],
        ["shop", link("shop", order.shop_id, shop || undefined)],
        ["quantity", `${integer(order.quantity)} × ${mkt(order.unit_price)}`],
        ["buyer", link("account", order.buyer)], ["merchant", link("account", order.merchant)],
        ["arbiter", order.arbiter ? link("account", order.arbiter) : "none (unconditional returns)"],
        order.digital && ["goods", [badge("digital", "digital"), " delivered on chain by the merchant's order_deliver (R41)"]],
        order.digital && ["delivery", order.delivery ? [sealedDelivery(order.delivery), "; only the buyer's key opens it"]
          : h("span", {class: "muted"}, "not delivered yet")],
        ["carrier", order.carrier ? [link("account", order.carrier), order.tracking ? ` · tracking ${order.tracking}` : ""]
          : order.digital ? "none: digital goods" : "-"],
        ["items", order.item_ids.length ? field("item_ids", order.item_ids) : "-"],
        ["shipping address", order.shipping ? `sealed to the merchant (${order.shipping.length / 2} bytes); nodes never see it` : "-"],
      ])),
      section("Escrow", facts([
        ["price", mkt(order.total_price)],
        order.redeem_points ? ["points redeemed", `${integer(order.redeem_points)} (−${mkt(order.redeem_points)})`] : null,
        ["paid into escrow", mkt(paid)],
        ["held now", h("span", {class: "amount big", id: "escrow"}, mkt(order.escrow))],
        ["refunded", mkt(order.refunded)],
        ["paid to merchant", mkt(order.merchant_paid)],
        ["points rate", `${order.points_bps / 100} %`],
      ]),
      h("h3", null, "Deadlines"),
      facts([
        ["current", order.deadline !== null
          ? [time(order.deadline), ` → ${DEADLINE_OUTCOME[order.state] ? DEADLINE_OUTCOME[order.state][0] : "?"}`]
          : "none: a terminal state"],
        ["review until", order.review_deadline !== null ? time(order.review_deadline) : "-"],
        ["placed", time(order.placed_at)], order.accepted_at && ["accepted", time(order.accepted_at)],
        order.shipped_at && ["shipped", time(order.shipped_at)], order.delivered_at && ["delivered", time(order.delivered_at)],
        order.requested_at && ["return requested", time(order.requested_at)], order.opened_at && ["dispute opened", time(order.opened_at)],
        order.ended_at && ["ended", time(order.ended_at)],
      ]))),
    verifiedSection(context, `/orders/${orderId}/proof`, STATE_KEYS.order(orderId),
      (record) => recordFacts(record, ["state", "escrow", "buyer", "merchant"])),  // never `delivery` (R41)
    section("Timeline", timeline(order)),
  );
}

export async function ordersPage(context) {
  const state = context.query.get("state") || "";
  const filter = state ? `?state=${encodeURIComponent(state)}` : "";
  const {items, next} = await collect(`/orders${filter}`, "orders", 50);
  context.listen((kind) => kind === "order" && context.refresh());
  const chips = h("p", {class: "chips"}, h("a", {href: "#/orders", class: state ? "" : "active"}, "all"),
    ORDER_STATES.map((name) => h("a", {href: `#/orders?state=${name}`, class: name === state ? "active" : ""}, name.replace("_", " "))));
  const rows = items.map((order) => [link("order", order.id), [badge(order.state), digitalBadge(order)], link("shop", order.shop_id),
    link("account", order.buyer), integer(order.quantity), mkt(order.total_price), mkt(order.escrow), ago(order.placed_at)]);
  return page("Orders", state ? state.replace("_", " ") : "newest first", chips,
    table(["order", "state", "shop", "buyer", "qty", "total", "escrow", "placed"], rows,
      {empty: "No order in this state."}),
    next ? note("More orders exist; filter by state to narrow them down.") : null);
}

const CHAIN_KINDS = new Set(["registered", "transfer", "listed", "sold"]);

/** Fields each chain-written kind already says in its one-line summary. */
const SUMMARIZED = {transfer: ["to", "custody_only"], listed: ["listing_id"], sold: ["order_id"]};

function provenanceStep(entry) {
  const hidden = new Set(["kind", "time", "height", "tx", "actor", "location", ...(SUMMARIZED[entry.kind] || [])]);
  const rest = Object.entries(entry).filter(([name]) => !hidden.has(name));
  const summary = entry.kind === "transfer"
    ? [entry.custody_only ? "custody to " : "ownership and custody to ", link("account", entry.to)]
    : entry.kind === "sold" ? ["sold", entry.order_id ? [" in order ", link("order", entry.order_id)] : null]
      : entry.kind === "listed" ? ["listed in ", link("listing", entry.listing_id)] : null;
  const chainKind = CHAIN_KINDS.has(entry.kind);
  return h("li", {class: `step ${chainKind ? "chain-kind" : "custom-kind"}`, "data-kind": entry.kind},
    h("div", {class: "when"}, time(entry.time), h("span", {class: "at"}, " block ", link("block", entry.height))),
    h("div", {class: "what"}, badge(entry.kind, chainKind ? entry.kind : "custom"), " ", summary,
      entry.location ? [" at ", h("span", {class: "place"}, entry.location)] : null),
    h("dl", {class: "inline"}, entry.actor ? [h("dt", null, "by"), h("dd", null, link("account", entry.actor))] : null,
      rest.map(([name, value]) => [h("dt", null, name.replace(/_/g, " ")), h("dd", null, field(name, value))])),
    entry.tx ? h("div", {class: "by"}, "tx ", link("tx", entry.tx)) : null);
}

export async function itemPage(context) {
  const itemId = context.params[0];
  const item = await api(`/items/${encodeURIComponent(itemId)}`);
  return page(item.id, "unique item",
    item.description ? h("p", {class: "lead"}, item.description) : null,
    section("Item", facts([
      ["owner", link("account", item.owner, item.owner)],
      ["custodian", item.custodian === item.owner ? "the owner" : link("account", item.custodian, item.custodian)],
      ["producer", link("account", item.producer)],
      ["registered", time(item.registered_at)],
      ["listed in", item.listing_id ? link("listing", item.listing_id) : "no active listing"],
      ["reserved by", item.order_id ? link("order", item.order_id) : "-"],
      ["certificate hash", hex(item.metadata_hash)],
    ])),
    verifiedSection(context, `/items/${encodeURIComponent(itemId)}/proof`, STATE_KEYS.item(itemId),
      (record) => recordFacts(record, ["owner", "custodian", "history_length"])),
    section(`Provenance (${item.history_length} entries)`,
      h("ol", {class: "timeline provenance", id: "provenance"}, item.history.map(provenanceStep)),
      item.history.length < item.history_length ? note(`Showing ${item.history.length} of ${item.history_length}.`) : null,
      note("registered, transfer, listed and sold are written by the chain itself; other kinds are events reported by the owner, custodian or an inspector (R22).")),
  );
}

