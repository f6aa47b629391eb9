// Live streams: one EventSource per SSE route of the user's enabled plugins.
//
// - Messages are unnamed (onmessage), `id: <event_seq>`, data = the event envelope.
// - One set of EventSources per browser, not per tab: browsers allow ~6 HTTP/1.1 connections
//   per host, so three streams in each of two tabs would starve every fetch. A SharedWorker
//   (stream-worker.js) holds the streams and fans events out to the tabs; where SharedWorker
//   is missing each tab opens its own.
// - Resume: the browser sends Last-Event-ID itself when it reconnects an EventSource; when we
//   open a new one (back online, the server refused and the source closed) we pass
//   ?last_seq=<last seq we applied>.
// - Dedupe: an event whose event_id we have seen, or whose seq is not after the last one
//   applied, is dropped (counted in `duplicates`), so a replay never applies anything twice.

const SEEN_MAX = 5000;
// A tab keeps its last seqs in sessionStorage (a reload resumes); the worker in memory.
const memory = new Map();
const store = typeof sessionStorage !== "undefined" ? sessionStorage
  : { getItem: k => memory.get(k) ?? null, setItem: (k, v) => memory.set(k, v) };

export class Stream {
  constructor(path, { userId, onEvent, onStatus }) {
    this.path = path;
    this.key = `tradeloop.lastSeq.${userId}.${path}`;
    this.lastSeq = Number(store.getItem(this.key) || 0);
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.seen = new Set();
    this.seenOrder = [];
    this.duplicates = 0;
    this.status = "closed";
    this.es = null;
    this.retryTimer = null;
    this.failures = 0;
    this.wanted = false;
  }

  open() {
    this.wanted = true;
    clearTimeout(this.retryTimer);
    if (this.es) this.es.close();
    const url = `${this.path}?last_seq=${this.lastSeq}`;
    const es = new EventSource(url, { withCredentials: true });
    this.es = es;
    this.setStatus("connecting");
    es.onopen = () => { this.failures = 0; this.setStatus("open"); };
    es.onmessage = msg => this.receive(msg);
    // The server's reset signal (docs/security.md): our last seq is beyond the stream's head
    // (a restored database); everything follows again from the start, so forget what we saw.
    es.addEventListener("reset", () => {
      this.lastSeq = 0;
      store.setItem(this.key, "0");
      this.seen.clear();
      this.seenOrder = [];
    });
    es.onerror = () => {
      if (es !== this.es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. an HTTP error while the server restarted): reopen
        // ourselves from the last applied seq, with a growing delay.
        this.setStatus("connecting");
        const delay = Math.min(1000 * 2 ** this.failures++, 10000);
        this.retryTimer = setTimeout(() => { if (this.wanted) this.open(); }, delay);
      } else {
        this.setStatus("connecting");  // the browser retries with Last-Event-ID itself
      }
    };
  }

  close() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    if (this.es) { this.es.close(); this.es = null; }
    this.setStatus("closed");
  }

  setStatus(s) {
    if (s === this.status) return;
    this.status = s;
    this.onStatus(this, s);
  }

  receive(msg) {
    let env;
    try { env = JSON.parse(msg.data); } catch { return; }
    const seq = Number(msg.lastEventId || env.event_seq);
    if (this.seen.has(env.event_id) || seq <= this.lastSeq) { this.duplicates++; return; }
    this.seen.add(env.event_id);
    this.seenOrder.push(env.event_id);
    if (this.seenOrder.length > SEEN_MAX) this.seen.delete(this.seenOrder.shift());
    this.lastSeq = seq;
    store.setItem(this.key, String(seq));
    if (this.status !== "open") this.setStatus("open");
    this.onEvent(env, this);
  }
}

/** The version store: apply a representation only if it is newer than what we hold. */
export class VersionedMap {
  constructor() { this.items = new Map(); this.gone = new Map(); }
  get(id) { return this.items.get(id); }
  values() { return [...this.items.values()]; }
  version(id) {
    const it = this.items.get(id);
    return Math.max(it ? it.version : 0, this.gone.get(id) || 0);
  }
  /** Upsert `rep` (which has .version); returns true when it changed our state. */
  put(rep) {
    if (!rep || !rep.id) return false;
    if (rep.version <= this.version(rep.id) && !this.items.get(rep.id)?._pending) return false;
    this.items.set(rep.id, rep);
    return true;
  }
  /** The aggregate is gone (deleted, filled, cancelled) as of `version`. */
  remove(id, version) {
    if (version !== undefined && version < this.version(id)) return false;
    if (version !== undefined) this.gone.set(id, Math.max(version, this.gone.get(id) || 0));
    return this.items.delete(id);
  }
  setRaw(id, rep) { if (rep) this.items.set(id, rep); else this.items.delete(id); }
  /** Show `next` (or remove the item when null) at once; returns the undo, which restores
   *  what was there only if nothing newer arrived meanwhile. */
  optimistic(id, next) {
    const before = this.items.get(id);
    if (next) this.items.set(id, { ...next, _pending: true }); else this.items.delete(id);
    return () => {
      const now = this.items.get(id);
      const untouched = next ? (now && now._pending) : (!now && this.version(id) <= (before ? before.version : 0));
      if (!untouched) return;
      if (before) this.items.set(id, before); else this.items.delete(id);
    };
  }
  /** The server answered with `rep`: it replaces our pending copy, else the newer wins. */
  settle(id, rep) {
    if (this.items.get(id)?._pending) this.items.delete(id);
    return this.put(rep);
  }
  replaceAll(reps) {
    const fresh = new Map();
    for (const r of reps) {
      const held = this.items.get(r.id);
      fresh.set(r.id, held && !held._pending && held.version > r.version ? held : r);
    }
    this.items = fresh;
  }
}

/**
 * The tab's view of the user's streams: events (deduped again by event_id here, so a replayed
 * buffer never shows twice), per-stream status, and open()/close() for online/offline.
 */
export function connectStreams({ userId, paths, onEvent, onStatus }) {
  const statuses = new Map(paths.map(p => [p, "connecting"]));
  const seen = new Set();
  const deliver = (env, path) => {
    if (seen.has(env.event_id)) return;
    seen.add(env.event_id);
    onEvent(env, { path });
  };
  const api = { statuses, allOpen: () => [...statuses.values()].every(s => s === "open"), duplicates: () => 0 };
  if (typeof SharedWorker !== "undefined") {
    const worker = new SharedWorker("/static/console/stream-worker.js", { type: "module", name: `tradeloop-streams-${userId}` });
    const port = worker.port;
    port.onmessage = ({ data }) => {
      if (data.type === "hello") {
        for (const [p, s] of data.statuses) statuses.set(p, s);
        for (const [p, env] of data.recent) deliver(env, p);
        onStatus();
      } else if (data.type === "event") deliver(data.env, data.path);
      else if (data.type === "status") { statuses.set(data.path, data.status); onStatus(); }
    };
    port.start();
    port.postMessage({ type: "start", userId, paths });
    api.open = () => port.postMessage({ type: "open" });
    api.close = () => port.postMessage({ type: "close" });
    api.stop = () => port.postMessage({ type: "bye" });
    addEventListener("pagehide", api.stop);
    api.mode = "shared-worker";
    return api;
  }
  const streams = paths.map(path => new Stream(path, {
    userId, onEvent: (env, st) => deliver(env, st.path),
    onStatus: (st, s) => { statuses.set(st.path, s); onStatus(); },
  }));
  streams.forEach(s => s.open());
  api.open = () => streams.forEach(s => { if (s.status !== "open") s.open(); });
  api.close = () => streams.forEach(s => s.close());
  api.stop = api.close;
  api.duplicates = () => streams.reduce((a, s) => a + s.duplicates, 0);
  api.mode = "per-tab";
  return api;
}
