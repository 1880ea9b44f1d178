// A machine's performance (the technician's view): `GET /api/devices/{id}/performance`,
// computed by the server in SQL over stored data; shown as figures and sparklines.

import { call, client, type S } from "./api";
import { fmtDuration, fmtNum, h, svg } from "./dom";

export type Performance = S["DevicePerformanceOut"];

export async function fetchPerformance(deviceId: string, days: number): Promise<Performance> {
  const to = new Date();
  const from = new Date(to.getTime() - days * 86_400_000);
  return call("performance", () =>
    client.GET("/api/devices/{deviceId}/performance", {
      params: { path: { deviceId }, query: { from: from.toISOString(), to: to.toISOString() } },
    }),
  );
}

/** A small line of `values` (oldest first), scaled to its own maximum. */
export function sparkline(values: number[], label: string, max?: number): SVGElement {
  const w = 120;
  const hgt = 28;
  const top = Math.max(max ?? 0, ...values, 1e-9);
  const step = values.length > 1 ? w / (values.length - 1) : w;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(hgt - 2 - (v / top) * (hgt - 4)).toFixed(1)}`).join(" ");
  const el = svg("svg", { viewBox: `0 0 ${w} ${hgt}`, width: w, height: hgt, class: "spark", role: "img", "aria-label": label });
  el.appendChild(svg("polyline", { points: points || `0,${hgt - 2} ${w},${hgt - 2}`, fill: "none", "stroke-width": 1.5 }));
  return el;
}

/** Milliseconds, or a duration when long (a live reading buffered through a short outage). */
const lag = (ms: number | null | undefined) => (ms === null || ms === undefined ? "—" : ms < 10_000 ? `${fmtNum(ms)} ms` : fmtDuration(ms));
const pct = (v: number | null | undefined) => (v === null || v === undefined ? "—" : `${fmtNum(v, 1)} %`);
/** Uptime is unknown (not 0 %) while no connection or disconnection of the machine was recorded. */
const uptime = (v: number | null | undefined) => (v === null || v === undefined ? "unknown" : pct(v));
/** Back-filled readings (stored more than 5 min after their time): how many, and the oldest. */
const late = (n: number, maxMs: number | null | undefined) =>
  n === 0 ? "0" : maxMs === null || maxMs === undefined ? String(n) : `${n} (up to ${fmtDuration(maxMs)} late)`;
const days = (v: number | null | undefined) => (v === null || v === undefined ? "—" : `${fmtNum(v, 0)} d`);

export const FIGURE_LABELS = [
  "Uptime",
  "Connection drops",
  "Treatments",
  "Treatment hours",
  "Utilization",
  "Missing readings",
  "Rejected messages",
  "Ingest lag p50 / p95",
  "Late readings (back-fill)",
  "Alarms technical / physiological",
  "Since maintenance",
  "Until maintenance",
];

/** The figures of one machine (in the order of FIGURE_LABELS), for the tile's detail and the machines view. */
export function figures(p: Performance): [string, string][] {
  return [
    ["Uptime", uptime(p.uptimePct)],
    ["Connection drops", String(p.connectionDrops)],
    ["Treatments", String(p.treatments)],
    ["Treatment hours", fmtNum(p.treatmentHours, 1)],
    ["Utilization", pct(p.utilizationPct)],
    ["Missing readings", String(p.missingReadings)],
    ["Rejected messages", String(p.rejectedMessages)],
    ["Ingest lag p50 / p95", p.ingestLagP50Ms === null || p.ingestLagP50Ms === undefined ? "—" : `${lag(p.ingestLagP50Ms)} / ${lag(p.ingestLagP95Ms)}`],
    ["Late readings (back-fill)", late(p.lateReadings, p.lateLagMaxMs)],
    ["Alarms technical / physiological", `${p.technicalAlarms} / ${p.physiologicalAlarms}`],
    ["Since maintenance", days(p.daysSinceMaintenance)],
    ["Until maintenance", p.daysUntilMaintenance !== null && p.daysUntilMaintenance !== undefined && p.daysUntilMaintenance < 0 ? `overdue ${fmtNum(-p.daysUntilMaintenance, 0)} d` : days(p.daysUntilMaintenance)],
  ];
}

/** Uptime per day, leaving out the days it is unknown (before the machine's presence was first recorded). */
function uptimeDays(p: Performance): Node {
  const known = p.days.flatMap((d) => d.uptimePct ?? []);
  if (known.length > 1) return sparkline(known, "uptime per day", 100);
  return h("span", { class: "muted" }, known.length ? `${pct(known[0])} (one day recorded)` : "unknown");
}

export async function performanceDetail(deviceId: string, span: number): Promise<HTMLElement> {
  const p = await fetchPerformance(deviceId, span);
  return h(
    "div",
    { class: "performance", "data-role": "performance" },
    h("p", { class: "muted" }, `Last ${span} days (${p.timeZone})`),
    h("dl", { class: "figures" }, figures(p).map(([k, v]) => h("div", { "data-figure": k }, h("dt", null, k), h("dd", null, v)))),
    h(
      "div",
      { class: "sparks" },
      h("span", null, "Treatment hours per day ", sparkline(p.days.map((d) => d.treatmentHours), "treatment hours per day")),
      h("span", null, "Uptime per day ", uptimeDays(p)),
    ),
  );
}
