// A machine's tile on the central station: patient, treatment and elapsed time, the
// latest values, online state, stale data greyed, and the border in the IEC colour of the
// highest open alarm (red high, yellow medium, cyan low).

import { highestFor } from "./alarms";
import { ago, fill, fmtElapsed, fmtNum, fmtTime, h } from "./dom";
import { prefs } from "./prefs";

/** A reading as the machine sent it (topics.md: telemetry). */
export interface Reading {
  ts: string;
  seq?: number;
  systemStatus?: string;
  patientId?: string | null;
  bloodPressure?: number;
  diastolicPressure?: number;
  heartRate?: number;
  flowRate?: number;
  venousPressure?: number;
  transmembranePressure?: number;
  conductivity?: number;
  ufVolume?: number;
  ufGoal?: number;
  [k: string]: unknown;
}

export interface TileState {
  deviceId: string;
  serial: string;
  name: string;
  status: string;
  location?: string | null;
  online: boolean | null;
  patientId: string | null;
  patientName: string | null;
  session: { startedAt: string } | null;
  reading: Reading | null;
  /** Clinical data shown (not for admins). */
  clinical: boolean;
}

const METRICS: [label: string, unit: string, get: (r: Reading) => string][] = [
  ["BP", "mmHg", (r) => (r.bloodPressure === undefined ? "—" : `${fmtNum(r.bloodPressure)}/${fmtNum(r.diastolicPressure)}`)],
  ["HR", "/min", (r) => fmtNum(r.heartRate)],
  ["Qb", "mL/min", (r) => fmtNum(r.flowRate)],
  ["VP", "mmHg", (r) => fmtNum(r.venousPressure)],
  ["TMP", "mmHg", (r) => fmtNum(r.transmembranePressure)],
  ["Cond", "mS/cm", (r) => fmtNum(r.conductivity, 1)],
  ["UF", "mL", (r) => (r.ufVolume === undefined ? "—" : `${fmtNum(r.ufVolume)}${r.ufGoal ? ` / ${fmtNum(r.ufGoal)}` : ""}`)],
];

export class Tile {
  readonly el: HTMLElement;
  readonly detail: HTMLElement;
  private body: HTMLElement;

  constructor(
    readonly state: TileState,
    onOpenPatient?: (patientId: string) => void,
    onDetail?: (tile: Tile) => void,
  ) {
    this.body = h("div", { class: "tile-body" });
    this.detail = h("div", { class: "tile-detail", hidden: true });
    this.el = h(
      "article",
      { class: "tile", "data-device": state.deviceId, "data-serial": state.serial, "aria-label": `Machine ${state.serial}` },
      this.body,
      onDetail && h("button", { class: "link small", type: "button", onclick: () => onDetail(this) }, "Machine performance"),
      this.detail,
    );
    if (onOpenPatient) {
      this.el.addEventListener("click", (e) => {
        const target = e.target as HTMLElement;
        if (target.closest("[data-open-patient]") && this.state.patientId) onOpenPatient(this.state.patientId);
      });
    }
    this.render();
  }

  render(now = Date.now()): void {
    const s = this.state;
    const r = s.reading;
    const stale = !r || now - Date.parse(r.ts) > prefs().staleAfterSeconds * 1000;
    const alarm = highestFor(s.deviceId);
    this.el.className = [
      "tile",
      alarm ? `alarm-${alarm.priority}` : "",
      alarm?.unacknowledged ? "unacknowledged" : "",
      s.online === false ? "offline" : "",
      s.status !== "active" ? "out-of-service" : "",
    ]
      .filter(Boolean)
      .join(" ");
    this.el.dataset.alarm = alarm?.priority ?? "none";
    this.el.dataset.stale = String(stale);
    this.el.dataset.ts = r?.ts ?? "";
    const online = s.online === null ? "unknown" : s.online ? "online" : "offline";
    fill(
      this.body,
      h(
        "header",
        null,
        h("span", { class: `dot ${online}`, title: online, "aria-label": online }),
        h("strong", null, s.serial),
        h("span", { class: "muted" }, ` ${s.name}`),
        s.status !== "active" && h("span", { class: "badge" }, s.status),
      ),
      s.clinical
        ? [
            h(
              "div",
              { class: "patient" },
              s.patientName
                ? h("button", { class: "link", type: "button", "data-open-patient": true }, s.patientName)
                : h("span", { class: "muted" }, "No patient"),
            ),
            h(
              "div",
              { class: "session" },
              s.session
                ? [`Treatment since ${fmtTime(s.session.startedAt)} · `, h("span", { class: "elapsed" }, fmtElapsed(now - Date.parse(s.session.startedAt)))]
                : h("span", { class: "muted" }, "No treatment running"),
            ),
            h(
              "dl",
              { class: stale ? "metrics stale" : "metrics" },
              METRICS.map(([label, unit, get]) =>
                h(
                  "div",
                  { class: label === "UF" || label === "BP" ? "wide" : null },
                  h("dt", null, label),
                  h("dd", null, r ? get(r) : "—", h("small", null, ` ${unit}`)),
                ),
              ),
            ),
            h(
              "footer",
              { class: "muted" },
              r ? `Last reading ${ago(r.ts, now)}` : "No reading yet",
              r?.systemStatus && r.systemStatus !== "normal" && h("span", { class: `badge ${r.systemStatus}` }, ` machine: ${r.systemStatus}`),
            ),
          ]
        : h("div", { class: "muted" }, s.location ?? ""),
    );
  }
}
