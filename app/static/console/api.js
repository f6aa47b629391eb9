// HTTP client of the console: the public API only, with the browser session cookie.
//
// Every mutating call carries an Idempotency-Key (one per user action, reused if the call is
// retried after a network error) and, for versioned resources, If-Match. Money stays a string
// (Decimal on the server): the console never does arithmetic on it, only shows it.

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message || (body && body.message) || `HTTP ${status}`);
    this.status = status;          // 0 = the network failed / offline
    this.body = body || {};
    this.code = this.body.code || (status === 0 ? "network" : `http_${status}`);
  }
}

const MUTATING = new Set(["POST", "PUT", "PATCH", "DELETE"]);

// The console asks this before sending a mutation: read-only mode (offline) refuses them.
let writeGate = () => null;
export function setWriteGate(fn) { writeGate = fn; }

// Network-level failures are reported here (the offline indicator listens).
let onNetwork = () => {};
export function onNetworkChange(fn) { onNetwork = fn; }

export function newKey() {
  return (crypto.randomUUID && crypto.randomUUID()) ||
    "k-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2);
}

/**
 * request(method, path, {body, ifMatch, idem, query, readOnly})
 * readOnly marks a POST that changes nothing (e.g. /analyze): it is allowed in read-only mode.
 */
export async function request(method, path, opts = {}) {
  return (await send(method, path, opts)).data;
}

async function send(method, path, opts = {}) {
  const { body, ifMatch, query, readOnly = false } = opts;
  const mutating = MUTATING.has(method) && !readOnly;
  if (mutating) {
    const refusal = writeGate();
    if (refusal) throw new ApiError(0, { code: "read_only", message: refusal });
  }
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    if (s) url += (url.includes("?") ? "&" : "?") + s;
  }
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (mutating) headers["Idempotency-Key"] = opts.idem || newKey();
  if (ifMatch !== undefined && ifMatch !== null) headers["If-Match"] = `"${ifMatch}"`;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) init.body = JSON.stringify(body);

  let resp;
  for (let attempt = 0; ; attempt++) {
    try {
      resp = await fetch(url, init);
      onNetwork(true);
      break;
    } catch (err) {
      // Same Idempotency-Key on the retry: if the first attempt did reach the server, the
      // retry gets its answer replayed instead of doing the change twice.
      if (attempt === 0 && navigator.onLine) { await sleep(400); continue; }
      onNetwork(false);
      throw new ApiError(0, { code: "network", message: "the server is unreachable" });
    }
  }
  let data = null;
  const text = await resp.text();
  if (text) { try { data = JSON.parse(text); } catch { data = { message: text.slice(0, 200) }; } }
  if (!resp.ok) throw new ApiError(resp.status, data);
  return { data, headers: resp.headers };
}

export const get = (path, query) => request("GET", path, { query });

/**
 * Every item of a list endpoint. Lists answer one page (a JSON array) and put the pagination
 * in the X-Pagination header ({total, page, next_page, ...}); this follows next_page.
 */
export async function getAll(path, query = {}) {
  const items = [];
  for (let page = 1; page; ) {
    const { data, headers } = await send("GET", path, { query: { ...query, page, page_size: 500 } });
    items.push(...data);
    let meta = {};
    try { meta = JSON.parse(headers.get("X-Pagination") || "{}"); } catch { /* no metadata: one page */ }
    page = meta.next_page;
  }
  return items;
}
export const post = (path, body, opts = {}) => request("POST", path, { ...opts, body });
export const patch = (path, body, opts = {}) => request("PATCH", path, { ...opts, body });
export const del = (path, opts = {}) => request("DELETE", path, opts);

/**
 * An optimistic change: apply() changes local state at once and returns an undo function;
 * send() talks to the server. On failure the change is undone (rolled back) and the error
 * rethrown; on success commit(result) stores the server's answer (it is the authority).
 */
export async function optimistic({ apply, send, commit }) {
  const undo = apply();
  try {
    const result = await send();
    if (commit) commit(result);
    return result;
  } catch (err) {
    undo();
    throw err;
  }
}

export function describe(err) {
  if (!(err instanceof ApiError)) return String(err && err.message || err);
  const b = err.body || {};
  let msg = b.message || err.message;
  const fields = b.errors && (b.errors.json || b.errors.query);
  if (fields) {
    msg += ": " + Object.entries(fields).map(([k, v]) => `${k} ${JSON.stringify(v)}`).join("; ");
  }
  if (b.vetoes) msg += ": " + b.vetoes.map(v => `${v.source}: ${v.message}`).join("; ");
  return `${err.status ? err.status + " " : ""}${msg}`;
}

export const sleep = ms => new Promise(r => setTimeout(r, ms));
