// The node's JSON API (docs/api.md), read with fetch from the same origin.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET a JSON document; a 4xx answer throws ApiError with the API's code and message. */
export async function api(path) {
  let response;
  try {
    response = await fetch(path, {headers: {Accept: "application/json"}, cache: "no-store"});
  } catch (error) {
    throw new ApiError(0, "unreachable", `the node did not answer ${path} (${error.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    if (response.ok) throw new ApiError(response.status, "bad_response", `${path} did not return JSON`);
  }
  if (!response.ok) {
    const error = body && body.error;
    throw new ApiError(response.status, error ? error.code : `http_${response.status}`,
      error ? error.message : `${path}: HTTP ${response.status}`);
  }
  return body;
}

/** GET, or null on 404 (an optional endpoint or a record that may not exist). */
export async function optional(path) {
  try {
    return await api(path);
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}

/**
 * Up to `want` items of a paged list, following `next` cursors: a selective filter
 * may give short pages with a non-null `next` (docs/api.md, Paging).
 * Returns {items, next}.
 */
export async function collect(path, key, want, maxRequests = 6) {
  const items = [];
  let cursor = null;
  const separator = path.includes("?") ? "&" : "?";
  for (let request = 0; request < maxRequests; request++) {
    const page = await api(`${path}${separator}limit=${Math.min(100, want - items.length)}` +
      (cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""));
    items.push(...page[key]);
    cursor = page.next;
    if (!cursor || items.length >= want) break;
  }
  return {items, next: cursor};
}

const shopNames = new Map();

/** A shop's name, cached for the session (names change rarely; this is only a label). */
export async function shopName(shopId) {
  if (!shopNames.has(shopId)) {
    shopNames.set(shopId, optional(`/shops/${shopId}`).then((shop) => (shop ? shop.name : null), () => null));
  }
  return shopNames.get(shopId);
}

/** A Prometheus sample `name` (no labels) from GET /metrics text, or null. */
export function metric(text, name) {
  if (!text) return null;
  const match = new RegExp(`^${name} ([0-9.eE+-]+)$`, "m").exec(text);
  return match ? Number(match[1]) : null;
}

/** GET /metrics as text, or null where the node does not serve it. */
export async function metricsText() {
  try {
    const response = await fetch("/metrics", {cache: "no-store"});
    return response.ok ? await response.text() : null;
  } catch {
    return null;
  }
}
