// A SharedWorker holding the user's EventSources for every tab of this browser (one set of
// connections however many tabs are open). Dedupe and resume happen here (Stream); each
// tab gets every event once, plus the last 500 when it joins (its feed's history).
import { Stream } from "./stream.js";

const ports = new Set();
const streams = new Map();      // path -> Stream
const recent = [];              // [path, envelope], newest last
let userId = null;

function broadcast(msg) { for (const p of ports) p.postMessage(msg); }

function reset() {
  for (const s of streams.values()) s.close();
  streams.clear();
  recent.length = 0;
}

function start(port, data) {
  if (userId !== data.userId) { reset(); userId = data.userId; }
  for (const path of data.paths) {
    if (streams.has(path)) continue;
    const s = new Stream(path, {
      userId,
      onEvent: (env, st) => {
        recent.push([st.path, env]);
        if (recent.length > 500) recent.shift();
        broadcast({ type: "event", path: st.path, env });
      },
      onStatus: (st, status) => broadcast({ type: "status", path: st.path, status }),
    });
    streams.set(path, s);
    s.open();
  }
  port.postMessage({ type: "hello", recent, statuses: [...streams.values()].map(s => [s.path, s.status]) });
}

self.onconnect = e => {
  const port = e.ports[0];
  ports.add(port);
  port.onmessage = ({ data }) => {
    if (data.type === "start") start(port, data);
    else if (data.type === "close") for (const s of streams.values()) s.close();
    else if (data.type === "open") { for (const s of streams.values()) if (s.status !== "open") s.open(); }
    else if (data.type === "bye") { ports.delete(port); if (!ports.size) { reset(); userId = null; } }
  };
  port.start();
};
