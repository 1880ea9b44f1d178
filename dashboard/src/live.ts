// Live data over MQTT (MQTT.js over WebSocket), with the person's own token: one connection
// per page, clean session, the topics of topics.md. The broker lets a person subscribe only
// to what the policy allows, so the page can never receive another's data; a refused
// filter is logged as an error (it would be a bug of the page).
//
// Views `watch` topic filters with handlers; subscriptions are counted, made on connect and
// again after every reconnect (then `onResync` listeners reload what they show from REST,
// so nothing sent while disconnected is missed). The connection is closed by the broker
// when the access token expires: the next attempt uses the renewed one.

import type { MqttClient } from "mqtt";
import { accessToken, current, onTokenChange, verify } from "./session";

type Handler = (topic: string, payload: unknown) => void;
export type LiveState = "connecting" | "live" | "offline";

let client: MqttClient | null = null;
const handlers = new Map<string, Set<Handler>>();
const stateListeners = new Set<(s: LiveState) => void>();
const resyncListeners = new Set<() => void>();
let state: LiveState = "offline";
let everConnected = false;

export function liveState(): LiveState {
  return state;
}
export function onLiveState(f: (s: LiveState) => void): () => void {
  stateListeners.add(f);
  f(state);
  return () => stateListeners.delete(f);
}
/** Called after a reconnect: reload from REST what may have been missed. */
export function onResync(f: () => void): () => void {
  resyncListeners.add(f);
  return () => resyncListeners.delete(f);
}
function setState(s: LiveState): void {
  state = s;
  for (const f of stateListeners) f(s);
}

/** The broker's WebSocket address: the server names it in the page (`{host}`: this page's host). */
function brokerUrl(): string {
  const meta = document.querySelector<HTMLMetaElement>('meta[name="nc-mqtt-ws"]')?.content ?? "";
  const template = meta && !meta.startsWith("%") ? meta : `ws://{host}:8083/mqtt`;
  return template.replace("{host}", location.hostname);
}

export async function connect(): Promise<void> {
  const me = current();
  if (!me || client) return;
  const { default: mqtt } = await import("mqtt");
  const suffix = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  setState("connecting");
  const c = mqtt.connect(brokerUrl(), {
    clientId: `${me.user.id}-dash${suffix}`,
    username: me.user.id,
    password: accessToken() ?? "",
    clean: true,
    // MQTT 5: refusals come with reason codes and strings, and a notification that is no
    // longer news (`expiresAt`) is not delivered after a reconnect (topics.md "MQTT 5").
    protocolVersion: 5,
    reconnectPeriod: 1000,
    connectTimeout: 10_000,
    resubscribe: false,
    // Plain timers: MQTT.js's worker timers start a Worker from a blob URL, which the CSP
    // (worker-src 'self', Trusted Types) refuses. Background tabs run timers at most once a
    // minute, hence a keepalive the broker tolerates (1.5 × 60 s).
    timerVariant: "native",
    keepalive: 60,
  });
  client = c;
  const stopTokens = onTokenChange((t) => {
    c.options.password = t;
  });
  c.on("connect", () => {
    setState("live");
    const filters = [...handlers.keys()];
    if (filters.length) subscribe(filters);
    if (everConnected) for (const f of resyncListeners) f();
    everConnected = true;
  });
  c.on("reconnect", () => setState("connecting"));
  c.on("offline", () => setState("offline"));
  c.on("close", () => {
    if (state === "live") setState("connecting");
  });
  c.on("error", (e: Error & { code?: number }) => {
    // CONNACK 0x86 (bad credentials: e.g. an expired token) or 0x87 (not authorized): is
    // the session still valid? If not, the session ends and the sign-in page says why.
    if (e.code === 0x86 || e.code === 0x87) {
      void verify().then((ok) => {
        if (ok) c.options.password = accessToken() ?? "";
      });
    } else {
      console.warn("live connection:", e.message);
    }
  });
  c.on("message", (topic, payload) => {
    let data: unknown;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    for (const [filter, set] of handlers) {
      if (matches(filter, topic)) for (const h of set) h(topic, data);
    }
  });
  c.once("end", () => stopTokens());
}

export function disconnect(): void {
  client?.end(true);
  client = null;
  handlers.clear();
  everConnected = false;
  setState("offline");
}

function subscribe(filters: string[]): void {
  client?.subscribe(filters, { qos: 1 }, (err, granted) => {
    if (err) return;
    for (const g of granted ?? []) {
      if (g.qos >= 0x80) console.error(`live: the broker refused ${g.topic} (reason 0x${g.qos.toString(16)})`);
    }
  });
}

/** Calls `handler` for every message on `filter` until the returned function is called. */
export function watch(filter: string, handler: Handler): () => void {
  let set = handlers.get(filter);
  if (!set) {
    set = new Set();
    handlers.set(filter, set);
    if (client?.connected) subscribe([filter]);
  }
  set.add(handler);
  return () => {
    const s = handlers.get(filter);
    if (!s) return;
    s.delete(handler);
    if (s.size === 0) {
      handlers.delete(filter);
      if (client?.connected) client.unsubscribe(filter);
    }
  };
}

export function publish(topic: string, payload: unknown, qos: 0 | 1 = 0): void {
  client?.publish(topic, JSON.stringify(payload), { qos, retain: false });
}

/** MQTT topic matching with `+` and `#`. */
export function matches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length || (f[i] !== "+" && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

export const topics = {
  device: (h: string, d: string) => `nc/v1/h/${h}/d/${d}`,
  patient: (h: string, p: string) => `nc/v1/h/${h}/p/${p}`,
  room: (h: string, r: string) => `nc/v1/h/${h}/chat/${r}`,
  notifications: (h: string, u: string) => `nc/v1/h/${h}/u/${u}/notifications`,
};
