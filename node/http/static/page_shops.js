// Shops, a shop (listings, reputation, reviews with replies, daily statistics), listing
// search across every shop, and a listing.

import {api, collect, optional} from "./api.js";
import {chart, gauge, stars} from "./charts.js";
import {ago, badge, digitalBadge, facts, field, h, hex, integer, link, mkt, note, page, percent, section, table, time}
  from "./dom.js";
import {reputationFacts} from "./page_account.js";
import {recordFacts, STATE_KEYS, verifiedSection} from "./verified_state.js";

const SEARCH_RESULTS = 50;

function tagLinks(tags) {
  if (!tags || !tags.length) return h("span", {class: "muted"}, "none");
  return h("span", {class: "tags"}, tags.map((tag) => h("a", {class: "tag", href: `#/listings?tag=${encodeURIComponent(tag)}`}, tag)));
}

function listingRows(listings, withShop) {
  return listings.map((listing) => [
    [link("listing", listing.id, listing.title), digitalBadge(listing)],
    withShop ? link("shop", listing.shop_id, listing.shop_name || undefined) : null,
    h("span", {class: "amount"}, mkt(listing.price)),
    listing.item_listing ? `${integer(listing.stock)} unique` : integer(listing.stock),
    integer(listing.sold), tagLinks(listing.tags),
    listing.active ? badge("active", "completed") : badge("inactive", "cancelled"),
  ].filter((cell) => cell !== null));
}

function listingHeaders(withShop) {
  return ["title", withShop ? "shop" : null, "price", "stock", "sold", "tags", ""].filter((title) => title !== null);
}

export async function shopsPage() {
  const {items: shops, next} = await collect("/shops", "shops", 100);
  const rows = shops.map((shop) => [link("shop", shop.id, shop.name), gauge(shop.reputation.trust_score, 1000, "trust"),
    shop.reputation.rating_count ? stars(shop.reputation.avg_rating_x100, shop.reputation.rating_count) : "-",
    integer(shop.stats.orders_completed), mkt(shop.stats.revenue), integer(shop.active_listing_count),
    shop.open ? badge("open", "completed") : badge("closed", "cancelled")]);
  return page("Shops", `${shops.length}${next ? "+" : ""}`,
    table(["shop", "trust score", "rating", "sales", "revenue", "listings", ""], rows,
      {class: "shops", empty: "No shops yet."}),
    note("Trust scores (0–1000) and ratings are kept by the state machine itself (R20); ratings come only from verified purchases (R19)."));
}

function dayLabel(day) {
  if (typeof day === "number") {
    const date = new Date(day > 1e11 ? day : day * 86400000);
    return date.toISOString().slice(5, 10);
  }
  return String(day).length >= 10 ? String(day).slice(5, 10) : String(day);
}

function statsCharts(stats) {
  if (!stats) return note("Daily statistics are not served by this node (GET /shops/{id}/stats).");
  const daily = stats.daily || [];
  const labels = daily.map((entry) => dayLabel(entry.day));
  const mktValues = (name) => daily.map((entry) => (entry[name] ?? NaN) / 1e6);
  return [h("div", {class: "charts", id: "shop-charts"},
    chart(labels, [
      {name: "placed", values: daily.map((entry) => entry.orders_placed), kind: "bar", className: "a"},
      {name: "completed", values: daily.map((entry) => entry.orders_completed), kind: "bar", className: "b"},
      {name: "refunded", values: daily.map((entry) => entry.orders_refunded ?? NaN), kind: "bar", className: "c"},
    ], {title: "Orders per day (UTC)", format: (value) => integer(Math.round(value)), empty: "no orders yet"}),
    chart(labels, [
      {name: "revenue", values: mktValues("revenue"), kind: "line", className: "b"},
      {name: "refunds", values: mktValues("refunds"), kind: "line", className: "c"},
    ], {title: "Revenue and refunds per day (MKT)", format: (value) => `${Math.round(value * 100) / 100}`,
      empty: "no revenue yet"})),
  stats.complete === false ? note("The series covers only the most recent orders of this shop.") : null];
}

function reviewCard(review) {
  return h("article", {class: "review"},
    h("header", null, h("span", {class: "stars"}, h("span", {class: "on"}, "★".repeat(review.rating)),
      h("span", {class: "off"}, "★".repeat(5 - review.rating))), " by ", link("account", review.buyer), " · ",
    link("order", review.order_id, "order"), " · ", time(review.time)),
    review.text ? h("p", null, review.text) : h("p", {class: "muted"}, "(no text)"),
    review.reply ? h("blockquote", {class: "reply"}, h("b", null, "Merchant's reply: "), review.reply.text, " ",
      h("span", {class: "muted"}, time(review.reply.time))) : null);
}

export async function shopPage(context) {
  const shopId = context.params[0].toLowerCase();
  const shop = await api(`/shops/${shopId}`);
  const [listings, reviews, orders, stats] = await Promise.all([
    collect(`/listings?shop=${shopId}`, "listings", 50),
    collect(`/shops/${shopId}/reviews`, "reviews", 20),
    collect(`/orders?shop=${shopId}`, "orders", 10),
    optional(`/shops/${shopId}/stats`),
  ]);
  const figures = (stats && stats.stats) || shop.stats;
  return page(shop.name, shop.open ? badge("open", "completed") : badge("closed", "cancelled"),
    shop.description ? h("p", {class: "lead"}, shop.description) : null,
    h("div", {class: "columns"},
      section("Shop", facts([
        ["id", hex(shop.id)], ["owner", link("account", shop.owner, shop.owner)],
        ["opened", [time(shop.created_at), " at ", link("block", shop.height)]],
        ["points", `${percent(shop.points_bps)} back as points; up to ${percent(shop.max_redeem_bps)} of a price redeemable`],
        ["arbiters", shop.arbiters.length ? field("arbiters", shop.arbiters) : "none: returns are unconditional"],
      ])),
      section("Reputation", reputationFacts(shop.reputation))),
    verifiedSection(context, `/shops/${shopId}/proof`, STATE_KEYS.shop(shopId),
      (record) => recordFacts(record, ["owner", "name", "open"])),
    section("Sales", facts([
      ["orders placed", integer(figures.orders_placed ?? shop.stats.orders_placed)],
      ["orders completed", integer(figures.orders_completed ?? shop.stats.orders_completed)],
      ["revenue", mkt(figures.revenue ?? shop.stats.revenue)],
      ["refund rate", percent(figures.refund_rate_bps ?? shop.stats.refund_rate_bps)],
      ["dispute rate", percent(figures.dispute_rate_bps ?? shop.stats.dispute_rate_bps)],
    ]), statsCharts(stats)),
    section(`Listings (${shop.listing_count})`, table(listingHeaders(false), listingRows(listings.items, false),
      {empty: "No listings."})),
    section(`Reviews (${shop.reputation.rating_count})`, reviews.items.length
      ? reviews.items.map(reviewCard) : note("No reviews yet.")),
    section("Recent orders", table(["order", "state", "qty", "total", "placed"], orders.items.map((order) => [
      link("order", order.id), [badge(order.state), digitalBadge(order)], integer(order.quantity), mkt(order.total_price), ago(order.placed_at)]),
    {empty: "No orders yet."})),
  );
}

/** "12.5" MKT → 12500000 µMKT, exactly; null when empty; throws on nonsense. */
function microFromText(text, name) {
  const value = (text || "").trim();
  if (!value) return null;
  const match = /^(\d{1,12})(?:\.(\d{1,6}))?$/.exec(value);
  if (!match) throw Object.assign(new Error(`${name} must be an amount in MKT, e.g. 12.5`), {code: "invalid_query"});
  return Number(match[1]) * 1_000_000 + Number((match[2] || "").padEnd(6, "0"));
}

function searchForm(query) {
  const input = (name, label, attributes = {}) => h("label", null, label,
    h("input", {name, value: query.get(name) || "", ...attributes}));
  const active = query.get("active") || "";
  const form = h("form", {class: "search-form", id: "listing-search"},
    input("q", "words", {placeholder: "e.g. green tea", type: "search", id: "search-q"}),
    input("tag", "tag", {placeholder: "e.g. bike", id: "search-tag"}),
    input("min", "min price (MKT)", {inputmode: "decimal", id: "search-min"}),
    input("max", "max price (MKT)", {inputmode: "decimal", id: "search-max"}),
    h("label", null, "status", h("select", {name: "active"},
      [["", "any"], ["true", "active"], ["false", "inactive"]].map(([value, text]) =>
        h("option", {value, selected: value === active}, text)))),
    h("button", {type: "submit"}, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const parameters = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (String(value).trim()) parameters.set(name, String(value).trim());
    location.hash = `#/listings?${parameters}`;
  });
  return form;
}

export async function listingsPage(context) {
  const query = context.query;
  const parameters = new URLSearchParams();
  if (query.get("q")) parameters.set("q", query.get("q"));
  if (query.get("tag")) parameters.set("tag", query.get("tag"));
  if (query.get("active")) parameters.set("active", query.get("active"));
  const form = searchForm(query);
  let results;
  try {
    const minimum = microFromText(query.get("min"), "min price");
    const maximum = microFromText(query.get("max"), "max price");
    if (minimum !== null) parameters.set("min_price", minimum);
    if (maximum !== null) parameters.set("max_price", maximum);
    const {items, next} = await collect(`/listings?${parameters}`, "listings", SEARCH_RESULTS);
    const described = [...parameters].length ? `${items.length}${next ? "+" : ""} found` : "newest first";
    results = [h("p", {class: "count", id: "search-count"}, described),
      table(listingHeaders(true), listingRows(items, true), {class: "listings", empty: "No listing matches."})];
  } catch (error) {
    if (!error.code) throw error;
    results = h("div", {class: "error", role: "alert"}, h("b", null, "Error "), `${error.code}: ${error.message}`);
  }
  return page("Listings", "across every shop", form, h("div", {id: "search-results"}, results),
    note("Words match title, description and tags (all words must match); prices are per unit, inclusive."));
}

export async function listingPage(context) {
  const listingId = context.params[0].toLowerCase();
  const listing = await api(`/listings/${listingId}`);
  return page(listing.title, [listing.active ? badge("active", "completed") : badge("inactive", "cancelled"),
    digitalBadge(listing)],
    listing.description ? h("p", {class: "lead"}, listing.description) : null,
    section("Listing", facts([
      ["price", h("span", {class: "amount big"}, mkt(listing.price))],
      ["shop", link("shop", listing.shop_id, listing.shop_name || listing.shop_id)],
      ["goods", listing.digital ? [badge("digital", "digital"), " digital: each order is delivered on chain, "
        + "sealed to its buyer (R41)"] : "parcels, shipped by a carrier"],
      ["stock", integer(listing.stock)], ["sold", integer(listing.sold)],
      ["tags", tagLinks(listing.tags)],
      ["listed", [time(listing.created_at), " at ", link("block", listing.height)]],
      ["id", hex(listing.id)],
      ["metadata hash", hex(listing.metadata_hash)],
    ])),
    verifiedSection(context, `/listings/${listingId}/proof`, STATE_KEYS.listing(listingId),
      (record) => recordFacts(record, ["price", "stock", "sold", "active"])),
    listing.item_listing ? section("Unique items", table(["item", "state"], listing.item_ids.map((itemId) => [
      link("item", itemId), listing.reserved_items.includes(itemId) ? badge("reserved", "accepted") : badge("available", "completed")]),
    {empty: "All items sold."})) : null,
  );
}
