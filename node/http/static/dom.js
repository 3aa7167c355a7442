// Building the page safely: every piece of chain data becomes a text node (textContent),
// never markup. No innerHTML anywhere in the explorer.

const SVG_NS = "http://www.w3.org/2000/svg";
const SAFE_HREF = /^(#|\/(?!\/))/;

function append(parent, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const item of child) append(parent, item);
  } else if (child instanceof Node) {
    parent.appendChild(child);
  } else {
    parent.appendChild(document.createTextNode(String(child)));
  }
}

function setAttributes(element, attributes) {
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "href" && !SAFE_HREF.test(String(value))) {
      throw new Error(`refusing link ${value}`);
    } else if (name === "style") {
      throw new Error("use classes, not style attributes (the page's CSP forbids them)");
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
}

/** An HTML element: h("a", {href: "#/"}, "text", child, [more]). */
export function h(tag, attributes, ...children) {
  const element = document.createElement(tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

/** An SVG element, same calling convention as h(). */
export function svg(tag, attributes, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  setAttributes(element, attributes);
  append(element, children);
  return element;
}

// --- formatting --------------------------------------------------------------------

const MICRO = 1_000_000;

/** µMKT as MKT, exact (amounts stay below 2^53, R33). */
export function mkt(micro) {
  if (micro === null || micro === undefined) return "-";
  const whole = Math.floor(micro / MICRO);
  const fraction = String(micro % MICRO).padStart(6, "0").replace(/0+$/, "");
  return `${whole.toLocaleString("en-US")}${fraction ? "." + fraction : ""} MKT`;
}

export function integer(value) {
  return value === null || value === undefined ? "-" : Number(value).toLocaleString("en-US");
}

/** Basis points as a percentage. */
export function percent(bps) {
  return bps === null || bps === undefined ? "-" : `${(bps / 100).toFixed(bps % 100 ? 2 : 0)} %`;
}

function pad(number) {
  return String(number).padStart(2, "0");
}

/** A time in ms as local "YYYY-MM-DD hh:mm:ss". */
export function when(ms) {
  if (ms === null || ms === undefined) return "-";
  const date = new Date(ms);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** "12 s ago", "in 3 d". */
export function relative(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return "";
  const seconds = Math.round((ms - now) / 1000);
  const size = Math.abs(seconds);
  const text = size < 90 ? `${size} s` : size < 5400 ? `${Math.round(size / 60)} min`
    : size < 129600 ? `${Math.round(size / 3600)} h` : `${Math.round(size / 86400)} d`;
  return seconds <= 0 ? `${text} ago` : `in ${text}`;
}

/** A time element that shows both the local time and how long ago; refreshed by tick(). */
export function time(ms) {
  if (ms === null || ms === undefined) return h("span", {class: "muted"}, "-");
  return h("span", {class: "time", title: new Date(ms).toISOString()},
    when(ms), " ", h("span", {class: "ago", "data-time": ms}, `(${relative(ms)})`));
}

/** Just "5 min ago" (the full time as a tooltip): for table cells. */
export function ago(ms) {
  if (ms === null || ms === undefined) return h("span", {class: "muted"}, "-");
  return h("span", {class: "ago bare", "data-time": ms, title: `${when(ms)} (${new Date(ms).toISOString()})`},
    relative(ms));
}

/** Refresh every "… ago" label under root. */
export function tick(root) {
  const now = Date.now();
  for (const label of root.querySelectorAll(".ago[data-time]")) {
    const text = relative(Number(label.dataset.time), now);
    label.textContent = label.classList.contains("bare") ? text : `(${text})`;
  }
}

export function shortHex(hex, size = 10) {
  if (!hex) return "-";
  return hex.length > size + 2 ? `${hex.slice(0, size)}…` : hex;
}

// --- links -------------------------------------------------------------------------

const ROUTES = {block: "block", tx: "tx", account: "account", shop: "shop", listing: "listing",
  order: "order", item: "item"};

/** A link to an explorer page: link("tx", hash) or link("block", 12, "block 12"). */
export function link(kind, id, text) {
  if (id === null || id === undefined || id === "") return h("span", {class: "muted"}, "-");
  const label = text ?? (typeof id === "string" && /^[0-9a-f]{64}$/.test(id) ? shortHex(id) : String(id));
  const hexLike = typeof label === "string" && /^[0-9a-f]+…?$/.test(label);
  return h("a", {href: `#/${ROUTES[kind]}/${encodeURIComponent(id)}`, class: hexLike ? "id" : null,
    title: String(id)}, label);
}

/** A full hash or address in monospace that breaks anywhere. */
export function hex(value) {
  return value ? h("span", {class: "mono"}, value) : h("span", {class: "muted"}, "-");
}

// Which page a field of a record links to, by its name (PROTOCOL's names).
const FIELD_LINKS = {
  order_id: "order", shop_id: "shop", listing_id: "listing", item_id: "item", tx: "tx", hash: "tx",
  to: "account", account: "account", sender: "account", buyer: "account", merchant: "account",
  owner: "account", custodian: "account", producer: "account", actor: "account", carrier: "account",
  arbiter: "account", validator: "account", proposer: "account", granted_by: "account", by: "account",
  height: "block", item_ids: "item", arbiters: "account", voters: "account", reserved_items: "item",
};
const AMOUNT_FIELDS = new Set(["amount", "price", "balance", "escrow", "fee", "buyer_amount",
  "unit_price", "total_price", "max_unit_price", "refunded", "merchant_paid", "revenue"]);
const TIME_FIELDS = new Set(["time", "deadline", "placed_at", "accepted_at", "shipped_at", "delivered_at",
  "requested_at", "opened_at", "ended_at", "created_at", "registered_at", "review_deadline"]);

/**
 * Fields that hold a digital order's goods sealed to its buyer (R41): `order_deliver`'s
 * `content` and the order's `delivery`. The explorer shows their size, never their bytes.
 */
const SEALED_TO_BUYER = new Set(["content", "delivery"]);

/** "delivered (sealed to the buyer, N bytes)" for a digital order's sealed content (hex). */
export function sealedDelivery(contentHex) {
  return h("span", {class: "sealed"}, `delivered (sealed to the buyer, ${integer(contentHex.length / 2)} bytes)`);
}

/** A value of a named field, rendered with the right link or unit. */
export function field(name, value) {
  if (value === null || value === undefined) return h("span", {class: "muted"}, "-");
  if (SEALED_TO_BUYER.has(name) && typeof value === "string") {
    return h("span", {class: "sealed"}, `sealed to the buyer (${integer(value.length / 2)} bytes)`);
  }
  if (Array.isArray(value)) {
    if (!value.length) return h("span", {class: "muted"}, "none");
    return h("span", {class: "list"}, value.map((item) => h("span", null, field(name, item))));
  }
  if (typeof value === "object") return h("code", {class: "json"}, JSON.stringify(value));
  if (name === "tx" && value === "deadline") return h("span", {class: "badge deadline"}, "deadline");
  const kind = FIELD_LINKS[name];
  if (kind === "block" && Number.isInteger(value)) return link("block", value);
  if (kind && kind !== "block") return link(kind, value);
  if (AMOUNT_FIELDS.has(name) && Number.isInteger(value)) return h("span", {title: `${value} µMKT`}, mkt(value));
  if (TIME_FIELDS.has(name) && Number.isInteger(value)) return time(value);
  if (typeof value === "boolean") return h("span", {class: value ? "yes" : "no"}, value ? "yes" : "no");
  if (typeof value === "string" && /^[0-9a-f]{64,}$/.test(value)) return hex(value);
  return String(value);
}

// --- building blocks ---------------------------------------------------------------

/** A two-column table of label → value (values are nodes or text). */
export function facts(pairs) {
  return h("dl", {class: "facts"}, pairs.filter(Boolean).map(([label, value]) => [
    h("dt", null, label), h("dd", null, value)]));
}

/** A table; rows are arrays of cells; wrapped so that it scrolls sideways on a phone. */
export function table(headers, rows, options = {}) {
  const body = h("tbody", null, rows.map((row) => h("tr", null, row.map((cell) => h("td", null, cell)))));
  const element = h("table", {class: options.class || null},
    h("thead", null, h("tr", null, headers.map((title) => h("th", null, title)))), body);
  if (!rows.length) {
    body.appendChild(h("tr", null, h("td", {colspan: headers.length, class: "empty"}, options.empty || "nothing yet")));
  }
  return h("div", {class: "scroll"}, element);
}

export function section(title, ...children) {
  return h("section", {class: "panel"}, h("h2", null, title), children);
}

export function badge(text, kind) {
  return h("span", {class: `badge ${kind || String(text).replace(/[^a-z_]/gi, "")}`}, text);
}

/** A "digital" badge after a digital listing's or order's name or state (R41), else nothing. */
export function digitalBadge(record) {
  return record && record.digital ? [" ", badge("digital", "digital")] : null;
}

export function result(ok, code) {
  return ok ? h("span", {class: "ok"}, "ok") : h("span", {class: "fail"}, code || "failed");
}

export function loading(text = "Loading…") {
  return h("div", {class: "loading", role: "status"}, h("span", {class: "spinner"}), text);
}

/** The API's own error code and message, never a stack trace. */
export function errorBox(error) {
  if (error && error.code === "pruned") {  // 410 (R40): older than this node keeps, or before its state sync
    return h("div", {class: "error pruned", role: "alert"}, h("b", null, "Pruned on this node"), ": ", error.message);
  }
  const code = error && error.code ? `${error.code}: ` : "";
  return h("div", {class: "error", role: "alert"}, h("b", null, "Error "), code, error ? error.message : "unknown");
}

export function note(...children) {
  return h("p", {class: "note"}, children);
}

/** A page: its heading (and the document title), then its content. */
export function page(title, subtitle, ...children) {
  return h("div", {class: "page", "data-title": title},
    h("h1", null, title, subtitle ? h("small", null, subtitle) : null), children);
}
