// Keeps a tile live: its machine's (or, for a patient, their own treatment's) telemetry,
// session and status topics, and a REST snapshot at start and after every reconnect.

import { call, client } from "./api";
import { onResync, topics, watch } from "./live";
import type { Me } from "./session";
import type { Reading, Tile } from "./tile";

/** Names of the patients the person may see, by id (filled by the views). */
export const patientNames = new Map<string, string>();

export async function loadPatientNames(): Promise<void> {
  const page = await call("patients", () => client.GET("/api/patients", { params: { query: { limit: 200 } } }));
  for (const p of page.items) patientNames.set(p.id, p.name);
}

/**
 * How a tile follows its data: a machine's own topics (its staff), or a patient's treatment
 * (the patient themself, and doctors who may read the patient but not that machine).
 */
export type Via = { kind: "device" } | { kind: "patient"; patientId: string };

export function viaFor(me: Me, patientId?: string): Via {
  if (me.user.role === "patient" && me.patientId) return { kind: "patient", patientId: me.patientId };
  if (me.user.role === "doctor" && patientId) return { kind: "patient", patientId };
  return { kind: "device" };
}

/** The running treatment and the newest reading of a tile's machine (or patient), over REST. */
export async function snapshot(tile: Tile, via: Via): Promise<void> {
  const s = tile.state;
  if (!s.clinical) return;
  const sessions =
    via.kind === "patient"
      ? await call("sessions", () =>
          client.GET("/api/patients/{patientId}/sessions", { params: { path: { patientId: via.patientId }, query: { limit: 1 } } }),
        )
      : await call("sessions", () =>
          client.GET("/api/devices/{deviceId}/sessions", { params: { path: { deviceId: s.deviceId }, query: { status: "active", limit: 1 } } }),
        );
  const active = sessions.items.find((x) => x.status === "active" && x.deviceId === s.deviceId) ?? null;
  s.session = active ? { startedAt: active.startedAt } : null;
  const patient = active?.patientId ?? s.patientId;
  if (patient) {
    s.patientId = patient;
    s.patientName = patientNames.get(patient) ?? s.patientName;
    const r = await client.GET("/api/health-metrics/current/{patientId}", { params: { path: { patientId: patient } } });
    const cur = r.data;
    if (cur && cur.deviceId === s.deviceId) s.reading = { ...(cur.reading as object), ts: cur.time } as Reading;
  }
  tile.render();
}

/** Follows the tile live; returns the function that stops it. */
export function follow(tile: Tile, me: Me, via: Via): () => void {
  const s = tile.state;
  const h = me.user.hospitalId;
  const stops: (() => void)[] = [];
  const onStatus = (_t: string, p: unknown) => {
    s.online = (p as { state?: string }).state === "online";
    tile.render();
  };
  const onTelemetry = (_t: string, p: unknown) => {
    const r = p as Reading;
    s.reading = r;
    if (r.patientId && r.patientId !== s.patientId) {
      s.patientId = r.patientId;
      s.patientName = patientNames.get(r.patientId) ?? null;
    }
    if (!s.session) s.session = { startedAt: r.ts };
    tile.render();
  };
  const onSession = (_t: string, p: unknown) => {
    const m = p as { event?: string; ts?: string; patientId?: string };
    if (m.event === "start" && m.ts) {
      s.session = { startedAt: m.ts };
      if (m.patientId) {
        s.patientId = m.patientId;
        s.patientName = patientNames.get(m.patientId) ?? null;
      }
    } else if (m.event === "end") {
      s.session = null;
    }
    tile.render();
  };
  const device = topics.device(h, s.deviceId);
  stops.push(watch(`${device}/status`, onStatus));
  if (s.clinical) {
    if (via.kind === "patient") {
      const p = topics.patient(h, via.patientId);
      stops.push(watch(`${p}/telemetry`, onTelemetry), watch(`${p}/session`, onSession));
    } else {
      stops.push(watch(`${device}/telemetry`, onTelemetry), watch(`${device}/session`, onSession));
    }
    stops.push(onResync(() => void snapshot(tile, via).catch(() => undefined)));
  }
  return () => stops.forEach((f) => f());
}
