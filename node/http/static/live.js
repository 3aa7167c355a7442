// Live updates: server-sent events from GET /events (`block`, `tx`, `order`; `gap` and
// `dropped` when events were missed), or, on a
// node without that endpoint or while it is unreachable, polling GET /status every few
// seconds and turning new blocks into the same `block` and `tx` events.

import {api} from "./api.js";

const POLL_MS = 3000;
const SSE_RETRY_MS = 30000;
const KINDS = ["block", "tx", "order"];
const MAX_POLLED_TXS = 20;

export class Live {
  constructor() {
    this.listeners = new Set();
    this.modeListeners = new Set();
    this.mode = "connecting";
    this.height = null;
    this.source = null;
    this.pollTimer = null;
    this.polling = false;
  }

  /** Call `listener(kind, data)` for every event; returns the function that stops it. */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Call `listener(mode)` when the mode changes: "live", "polling", "connecting". */
  onMode(listener) {
    this.modeListeners.add(listener);
    listener(this.mode);
  }

  emit(kind, data) {
    if (kind === "block" && Number.isInteger(data.height)) this.height = Math.max(this.height || 0, data.height);
    for (const listener of [...this.listeners]) {
      try {
        listener(kind, data);
      } catch (error) {
        console.warn("live listener failed", error);
      }
    }
  }

  setMode(mode) {
    if (mode === this.mode) return;
    this.mode = mode;
    for (const listener of this.modeListeners) listener(mode);
  }

  start() {
    if (typeof EventSource === "undefined") {
      this.startPolling();
      return;
    }
    this.connect();
  }

  connect() {
    const source = new EventSource("/events");
    this.source = source;
    let opened = false;
    source.onopen = () => {
      if (opened) this.emit("resync", {});  // events may have been missed while reconnecting
      opened = true;
      this.stopPolling();
      this.setMode("live");
    };
    for (const kind of KINDS) {
      source.addEventListener(kind, (event) => this.receive(kind, event.data));
    }
    // The node no longer held every event since our last one: re-read what is shown.
    source.addEventListener("gap", () => this.emit("resync", {}));
    // We fell too far behind and the node ended the stream: the browser reconnects.
    source.addEventListener("dropped", () => this.emit("resync", {}));
    source.onmessage = (event) => {  // unnamed events that say their kind in the data
      try {
        const data = JSON.parse(event.data);
        const kind = data.event || data.kind || data.type;
        if (KINDS.includes(kind)) this.emit(kind, data.data || data);
      } catch {
        // a comment or keep-alive line: nothing to show
      }
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // No /events on this node (404) or a wrong content type: poll, try again later.
        source.close();
        this.source = null;
        this.startPolling();
        setTimeout(() => {
          if (!this.source) this.connect();
        }, SSE_RETRY_MS);
      } else {
        this.setMode("connecting");  // the browser reconnects by itself; poll meanwhile
        this.startPolling();
      }
    };
  }

  receive(kind, text) {
    try {
      this.emit(kind, JSON.parse(text));
    } catch {
      console.warn(`unreadable ${kind} event`);
    }
  }

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    const poll = async () => {
      if (!this.polling) return;
      try {
        await this.pollOnce();
        if (!this.source || this.source.readyState !== EventSource.OPEN) this.setMode("polling");
      } catch {
        this.setMode("offline");
      }
      if (this.polling) this.pollTimer = setTimeout(poll, POLL_MS);
    };
    poll();
  }

  stopPolling() {
    this.polling = false;
    clearTimeout(this.pollTimer);
  }

  async pollOnce() {
    const status = await api("/status");
    const previous = this.height;
    if (previous === null) {
      this.height = status.height;
      return;
    }
    if (status.height <= previous) return;
    const count = Math.min(status.height - previous, 20);
    const page = await api(`/blocks?limit=${count}&before=${status.height + 1}`);
    const blocks = page.blocks.slice().reverse();
    for (const block of blocks) {
      this.emit("block", {height: block.height, hash: block.hash, time: block.header.time,
        tx_count: block.tx_count, proposer: block.header.proposer});
    }
    const recent = blocks.flatMap((block) => block.txs.map((hash, index) => [hash, index, block.height]))
      .slice(-MAX_POLLED_TXS);
    const views = await Promise.all(recent.map(([hash]) => api(`/txs/${hash}`).catch(() => null)));
    recent.forEach(([hash, index, height], position) => {
      const view = views[position];
      if (!view || !view.result) return;
      this.emit("tx", {hash, height, index, type: view.type, sender: view.sender, ok: view.result.ok,
        code: view.result.code});
    });
  }
}
