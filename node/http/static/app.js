// The explorer: a hash-routed single page over the node's JSON API (docs/api.md).
// #/ home · #/blocks · #/block/H · #/tx/HASH · #/account/ADDRESS · #/shops · #/shop/ID
// #/listings?q=&tag=&min=&max= · #/listing/ID · #/orders?state= · #/order/ID · #/item/ID
// #/validators

import {api} from "./api.js";
import {errorBox, h, loading, tick} from "./dom.js";
import {Live} from "./live.js";
import {accountPage} from "./page_account.js";
import {blockPage, txPage} from "./page_chain.js";
import {blocksPage, homePage} from "./page_home.js";
import {itemPage, orderPage, ordersPage} from "./page_orders.js";
import {listingPage, listingsPage, shopPage, shopsPage} from "./page_shops.js";
import {validatorsPage} from "./page_validators.js";

const ROUTES = [
  [/^$/, homePage, "home"],
  [/^blocks$/, blocksPage, "blocks"],
  [/^block\/(\d+)$/, blockPage, "blocks"],
  [/^tx\/([0-9a-fA-F]{64})$/, txPage, "blocks"],
  [/^account\/([0-9a-fA-F]{64})$/, accountPage, ""],
  [/^shops$/, shopsPage, "shops"],
  [/^shop\/([0-9a-fA-F]{64})$/, shopPage, "shops"],
  [/^listings$/, listingsPage, "listings"],
  [/^listing\/([0-9a-fA-F]{64})$/, listingPage, "listings"],
  [/^orders$/, ordersPage, "orders"],
  [/^order\/([0-9a-fA-F]{64})$/, orderPage, "orders"],
  [/^item\/([A-Za-z0-9._:-]{1,64})$/, itemPage, "items"],
  [/^validators$/, validatorsPage, "validators"],
];

const view = document.getElementById("view");
const live = new Live();
let current = {token: 0, cleanups: []};

function parseHash() {
  const text = location.hash.replace(/^#\/?/, "");
  const mark = text.indexOf("?");
  const path = mark < 0 ? text : text.slice(0, mark);
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // a malformed escape: match the raw text, which then finds no page
  }
  return {path: decoded.replace(/\/$/, ""), query: new URLSearchParams(mark < 0 ? "" : text.slice(mark + 1))};
}

function leave() {
  clearTimeout(current.refreshTimer);
  for (const cleanup of current.cleanups) {
    try {
      cleanup();
    } catch (error) {
      console.warn("cleanup failed", error);
    }
  }
}

async function render(options = {}) {
  leave();
  const token = current.token + 1;
  const page = {token, cleanups: []};
  current = page;
  const {path, query} = parseHash();
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const anchor of document.querySelectorAll("nav a[data-section]")) {
    anchor.classList.toggle("active", Boolean(route) && anchor.dataset.section === route[2]);
  }
  view.setAttribute("aria-busy", "true");
  if (!options.quiet) view.replaceChildren(loading());
  const context = {
    params: route ? path.match(route[0]).slice(1) : [],
    query,
    live,
    /** Run `cleanup` when the page is left. */
    onLeave: (cleanup) => page.cleanups.push(cleanup),
    /** Whether this page is still the one on screen. */
    isCurrent: () => current === page,
    /** Subscribe to live events for as long as the page is shown. */
    listen: (listener) => page.cleanups.push(live.subscribe(listener)),
    /** Render the page again (fresh data), if it is still the one on screen. */
    refresh: () => {
      clearTimeout(page.refreshTimer);  // one re-read for a burst of events
      page.refreshTimer = setTimeout(() => {
        if (current === page) render({quiet: true});
      }, 250);
    },
    /** Call `fn` every `ms` while the page is shown. */
    every: (ms, fn) => {
      const timer = setInterval(fn, ms);
      page.cleanups.push(() => clearInterval(timer));
    },
  };
  try {
    if (!route) throw Object.assign(new Error(`no page ${location.hash}`), {code: "not_found"});
    const content = await route[1](context);
    if (current !== page) return;
    view.replaceChildren(content);
    document.title = `${content.dataset.title || "marketchain"} · marketchain explorer`;
  } catch (error) {
    if (current !== page) return;
    console.warn(error);
    view.replaceChildren(h("div", {class: "page"}, errorBox(error),
      h("p", null, h("a", {href: location.hash || "#/", onclick: () => setTimeout(render)}, "Try again"),
        " · ", h("a", {href: "#/"}, "Home"))));
  } finally {
    if (current === page) view.setAttribute("aria-busy", "false");
  }
}

// --- the search box ----------------------------------------------------------------

const HEX64 = /^[0-9a-f]{64}$/;
const ITEM_ID = /^[A-Za-z0-9._:-]{1,64}$/;

async function exists(path) {
  try {
    await api(path);
    return true;
  } catch {
    return false;
  }
}

/** A block height, a tx/order/shop/listing id, an address, an item id or words of a listing. */
async function search(text) {
  const query = text.trim();
  if (!query) return;
  if (/^\d{1,15}$/.test(query)) {
    location.hash = `#/block/${query}`;
    return;
  }
  const lower = query.toLowerCase();
  if (HEX64.test(lower)) {
    for (const [kind, path] of [["tx", "txs"], ["order", "orders"], ["shop", "shops"], ["listing", "listings"]]) {
      if (await exists(`/${path}/${lower}`)) {
        location.hash = `#/${kind}/${lower}`;
        return;
      }
    }
    location.hash = `#/account/${lower}`;
    return;
  }
  if (ITEM_ID.test(query) && /\d/.test(query) && await exists(`/items/${encodeURIComponent(query)}`)) {
    location.hash = `#/item/${encodeURIComponent(query)}`;
    return;
  }
  location.hash = `#/listings?q=${encodeURIComponent(query)}`;
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("query");
  search(input.value).then(() => {
    input.value = "";
    input.blur();
  });
});

// --- the live indicator in the header ----------------------------------------------

const indicator = document.getElementById("live");
const LABELS = {live: "live", polling: "polling", connecting: "connecting…", offline: "offline"};
live.onMode((mode) => {
  indicator.className = `live ${mode}`;
  indicator.textContent = LABELS[mode] || mode;
  indicator.title = mode === "live" ? "new blocks arrive over server-sent events (/events)"
    : mode === "polling" ? "this node has no /events: polling /status every 3 s" : "";
});
live.subscribe((kind, data) => {
  if (kind === "block") document.getElementById("tip").textContent = `height ${data.height}`;
});
api("/status").then((status) => {
  document.getElementById("tip").textContent = `height ${status.height}`;
  document.getElementById("chain").textContent = status.chain_id;
  if (live.height === null) live.height = status.height;
}, () => {});

window.addEventListener("hashchange", () => render());
setInterval(() => tick(view), 1000);
live.start();
render();
