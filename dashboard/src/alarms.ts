// The open alarms the person may see, kept live: loaded over REST (`openOnly`), then
// changed by the alert events on MQTT (the person's notifications for staff, the patient's
// own alerts topic for patients). Every event carries the alert as it now is, so new event
// kinds (snoozed, escalated, realerted: the alarm-system issue) update the list without
// code of their own; `latched` alarms stay listed until acknowledged.

import { call, client, type S } from "./api";
import { onResync, topics, watch } from "./live";
import type { Me } from "./session";

export type Alert = S["AlertOut"];
export type HistoryEntry = S["AlertHistoryEntry"];
export type Priority = "high" | "medium" | "low";

const RANK: Record<string, number> = { high: 3, medium: 2, low: 1 };
/** Events after which a high-priority alarm sounds again. */
const SOUNDING = new Set(["raised", "realerted", "escalated"]);

const open = new Map<string, Alert>();
const listeners = new Set<() => void>();
const newHighListeners = new Set<(a: Alert) => void>();
let stop: (() => void)[] = [];

export function isOpen(a: Alert): boolean {
  return a.state !== "cleared" || a.latched === true;
}

/** Highest priority first; unacknowledged before acknowledged; then the oldest first. */
export function ordered(): Alert[] {
  return [...open.values()].sort(
    (a, b) =>
      (RANK[b.priority] ?? 0) - (RANK[a.priority] ?? 0) ||
      Number(a.state !== "active") - Number(b.state !== "active") ||
      Date.parse(a.raisedAt) - Date.parse(b.raisedAt),
  );
}

/** The highest priority among a device's open alarms, if any. */
export function highestFor(deviceId: string): { priority: Priority; unacknowledged: boolean } | null {
  let best: Alert | null = null;
  let unacknowledged = false;
  for (const a of open.values()) {
    if (a.deviceId !== deviceId) continue;
    if (!best || (RANK[a.priority] ?? 0) > (RANK[best.priority] ?? 0)) best = a;
    if (a.state === "active" && a.priority === best.priority) unacknowledged = true;
  }
  return best ? { priority: best.priority as Priority, unacknowledged } : null;
}

export function onAlarms(f: () => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}
export function onNewHigh(f: (a: Alert) => void): () => void {
  newHighListeners.add(f);
  return () => newHighListeners.delete(f);
}
function changed(): void {
  for (const f of listeners) f();
}

export function upsert(a: Alert, event?: string): void {
  const before = open.get(a.id);
  if (isOpen(a)) open.set(a.id, a);
  else open.delete(a.id);
  if (event && SOUNDING.has(event) && a.priority === "high" && a.state === "active" && (event !== "raised" || !before)) {
    for (const f of newHighListeners) f(a);
  }
  changed();
}

async function load(): Promise<void> {
  const page = await call("alerts", () => client.GET("/api/alerts", { params: { query: { openOnly: true, limit: 200 } } }));
  open.clear();
  for (const a of page.items) if (isOpen(a)) open.set(a.id, a);
  changed();
}

/** Starts following the alarms `me` may see (not for admins: they read no clinical data). */
export async function start(me: Me): Promise<void> {
  stopAll();
  if (me.user.role === "admin") return;
  const h = me.user.hospitalId;
  const onEvent = (_topic: string, payload: unknown) => {
    const p = payload as { type?: string; event?: string; alert?: Alert };
    if (p.alert && (p.type === undefined || p.type === "alert")) upsert(p.alert, p.event);
  };
  stop.push(
    me.user.role === "patient" && me.patientId
      ? watch(`${topics.patient(h, me.patientId)}/alerts`, onEvent)
      : watch(topics.notifications(h, me.user.id), onEvent),
  );
  stop.push(onResync(() => void load()));
  await load();
}

export function stopAll(): void {
  for (const s of stop) s();
  stop = [];
  open.clear();
}

export async function acknowledge(id: string): Promise<void> {
  const a = await call("acknowledge", () => client.POST("/api/alerts/{alertId}/acknowledge", { params: { path: { alertId: id } } }));
  upsert(a, "acknowledged");
}

/** Silences an alarm for `minutes`, with a reason; it re-alerts if still present after. */
export async function snooze(id: string, minutes: number, reason: string): Promise<void> {
  const a = await call("snooze", () =>
    client.POST("/api/alerts/{alertId}/snooze", { params: { path: { alertId: id } }, body: { minutes, reason } }),
  );
  upsert(a, "snoozed");
}

/** Clears an alarm by hand (the server refuses a physiological one whose value is still out of range). */
export async function clear(id: string): Promise<void> {
  const a = await call("clear", () => client.POST("/api/alerts/{alertId}/clear", { params: { path: { alertId: id } } }));
  upsert(a, "cleared");
}

/** Every step of an alarm, oldest first. */
export async function history(id: string): Promise<HistoryEntry[]> {
  return call("history", () => client.GET("/api/alerts/{alertId}/history", { params: { path: { alertId: id } } }));
}
