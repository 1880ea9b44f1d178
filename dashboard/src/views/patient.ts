// A patient: profile and medical information (the fields the policy gives this person),
// the current treatment live, trend charts (session, 24 h, 30 days; zoom refines the
// resolution), and past sessions with their summaries.

import { call, client, type S } from "../api";
import { BP_HR, MACHINE, TrendChart } from "../charts";
import { fill, fmtDateTime, fmtDuration, fmtNum, h } from "../dom";
import { follow, snapshot, viaFor } from "../follow";
import { rememberDevice, type View } from "../main";
import type { Me } from "../session";
import { Tile } from "../tile";

export const myTreatment: View = async (root, me) => {
  if (!me.patientId) {
    fill(root, h("p", { class: "notice" }, "Your account is not linked to a patient record yet: ask your doctor or the unit."));
    return;
  }
  return patientDetail(root, me, me.patientId);
};

export const patientsView: View = async (root, me, params) => {
  if (params[0]) return patientDetail(root, me, params[0]);
  const page = await call("patients", () => client.GET("/api/patients", { params: { query: { limit: 200 } } }));
  fill(
    root,
    h("div", { class: "toolbar" }, h("h1", null, "Patients")),
    h(
      "table",
      { class: "grid" },
      h("thead", null, h("tr", null, ["Name", "Number", "Age", "Dry weight", "Last dialysis"].map((c) => h("th", null, c)))),
      h(
        "tbody",
        null,
        page.items.map((p) =>
          h(
            "tr",
            { "data-patient": p.id },
            h("td", null, h("a", { href: `#/patients/${p.id}` }, p.name)),
            h("td", null, p.patientNumber),
            h("td", null, fmtNum(p.age)),
            h("td", null, p.dryWeightKg ? `${fmtNum(p.dryWeightKg, 1)} kg` : "—"),
            // While a treatment runs, the running one (the last dialysis is the one before).
            p.treatmentStartedAt
              ? h("td", { "data-role": "dialysis", class: "running" }, `In treatment since ${fmtDateTime(p.treatmentStartedAt)}`)
              : h("td", { "data-role": "dialysis" }, fmtDateTime(p.lastDialysisAt)),
          ),
        ),
      ),
    ),
  );
};

const FIELDS: [keyof S["PatientOut"], string, (v: unknown) => string][] = [
  ["patientNumber", "Patient number", String],
  ["dateOfBirth", "Date of birth", String],
  ["age", "Age", (v) => `${v} years`],
  ["gender", "Gender", String],
  ["bloodGroup", "Blood group", String],
  ["dryWeightKg", "Dry weight", (v) => `${fmtNum(v as number, 1)} kg`],
  ["vascularAccess", "Vascular access", (v) => String(v).replaceAll("_", " ")],
  ["diagnosis", "Diagnosis", String],
  ["allergies", "Allergies", String],
  ["medications", "Medications", String],
  ["notes", "Notes", String],
  ["treatmentStartedAt", "In treatment since", (v) => fmtDateTime(v as string)],
  ["lastDialysisAt", "Last dialysis", (v) => fmtDateTime(v as string)],
  ["dialysisSchedule", "Schedule", (v) => schedule(v)],
];

function schedule(v: unknown): string {
  const s = v as { days?: string[]; start?: string; durationMinutes?: number } | null;
  if (!s || !s.days?.length) return "";
  return `${s.days.join(", ")} at ${s.start ?? "?"} for ${s.durationMinutes ?? "?"} min`;
}

type Range = "session" | "24h" | "30d";

async function patientDetail(root: HTMLElement, me: Me, patientId: string) {
  const p = await call("patient", () => client.GET("/api/patients/{patientId}", { params: { path: { patientId } } }));
  const sessions = await call("sessions", () =>
    client.GET("/api/patients/{patientId}/sessions", { params: { path: { patientId }, query: { limit: 20 } } }),
  );
  const active = sessions.items.find((s) => s.status === "active") ?? null;
  const deviceId = active?.deviceId ?? p.assignedDeviceId ?? null;
  const stops: (() => void)[] = [];

  // The treatment, live.
  const liveBox = h("div", { class: "tiles single" });
  let tile: Tile | null = null;
  if (deviceId) {
    const device = await call("device", () => client.GET("/api/devices/{deviceId}", { params: { path: { deviceId } } })).catch(() => null);
    if (device) rememberDevice(device.id, `${device.serial} (${device.name})`);
    tile = new Tile({
      deviceId,
      serial: device?.serial ?? "Machine",
      name: device?.name ?? "",
      status: device?.status ?? "active",
      location: device?.location,
      online: device?.online ?? null,
      patientId: p.id,
      patientName: p.name,
      session: active ? { startedAt: active.startedAt } : null,
      reading: null,
      clinical: true,
    });
    liveBox.appendChild(tile.el);
    const via = viaFor(me, p.id);
    stops.push(follow(tile, me, via));
    void snapshot(tile, via).catch(() => undefined);
    const ticker = setInterval(() => tile?.render(), 1000);
    stops.push(() => clearInterval(ticker));
  } else {
    liveBox.appendChild(h("p", { class: "muted" }, "No machine assigned."));
  }

  // Trends.
  let range: Range = active ? "session" : "24h";
  const rangeOf = (r: Range): [Date, Date] => {
    const now = new Date();
    if (r === "session") {
      const s = active ?? sessions.items[0];
      if (s) return [new Date(s.startedAt), s.endedAt ? new Date(s.endedAt) : now];
      return [new Date(now.getTime() - 4 * 3_600_000), now];
    }
    return [new Date(now.getTime() - (r === "24h" ? 1 : 30) * 86_400_000), now];
  };
  const zoomTo = (from: Date, to: Date) => {
    zoomNote.hidden = false;
    void Promise.all(charts.map((c) => c.load(from, to))).catch(showError);
  };
  const charts = [new TrendChart(patientId, BP_HR, "Blood pressure and heart rate", zoomTo), new TrendChart(patientId, MACHINE, "Machine", zoomTo)];
  const error = h("p", { class: "error", role: "alert" });
  const showError = (e: Error) => (error.textContent = e.message);
  const zoomNote = h("button", { type: "button", class: "small", hidden: true, onclick: () => select(range) }, "Reset zoom");
  const buttons = (["session", "24h", "30d"] as Range[]).map((r) =>
    h("button", { type: "button", class: "small", "data-range": r, onclick: () => select(r) }, r === "session" ? "Session" : r === "24h" ? "24 h" : "30 days"),
  );
  const select = (r: Range) => {
    range = r;
    zoomNote.hidden = true;
    buttons.forEach((b) => b.classList.toggle("active", b.dataset.range === r));
    const [from, to] = rangeOf(r);
    void Promise.all(charts.map((c) => c.load(from, to))).catch(showError);
  };
  if (tile && active) {
    // The session chart grows with the live readings.
    const orig = tile.render.bind(tile);
    let last = "";
    tile.render = (now?: number) => {
      orig(now);
      const r = tile!.state.reading;
      if (range === "session" && zoomNote.hidden && r && r.ts !== last) {
        last = r.ts;
        charts.forEach((c) => c.append(r.ts, r));
      }
    };
  }

  fill(
    root,
    h("div", { class: "toolbar" }, h("h1", null, p.name), h("span", { class: "muted" }, ` ${p.patientNumber}`)),
    error,
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "card", "data-role": "profile" },
        h("h2", null, "Profile and medical information"),
        h(
          "dl",
          { class: "facts" },
          FIELDS.filter(([k]) => p[k] !== null && p[k] !== undefined && p[k] !== "").map(([k, label, show]) => {
            const text = show(p[k]);
            return text ? h("div", null, h("dt", null, label), h("dd", { "data-field": k }, text)) : null;
          }),
        ),
      ),
      h("section", { class: "card" }, h("h2", null, "Current treatment"), liveBox),
    ),
    h("section", { class: "card" }, h("h2", null, "Trends"), h("div", { class: "toolbar" }, buttons, zoomNote), charts.map((c) => c.el)),
    h("section", { class: "card" }, h("h2", null, "Past sessions"), sessionsTable(sessions.items)),
  );
  select(range);
  return () => {
    stops.forEach((f) => f());
    charts.forEach((c) => c.destroy());
  };
}

function sessionsTable(items: S["SessionOut"][]): HTMLElement {
  if (!items.length) return h("p", { class: "muted" }, "No sessions yet.");
  return h(
    "table",
    { class: "grid", "data-role": "sessions" },
    h(
      "thead",
      null,
      h("tr", null, ["Started", "Duration", "Status", "UF rate (mL/kg/h)", "Nadir systolic (mmHg)", "Completeness", "Readings"].map((c) => h("th", null, c))),
    ),
    h(
      "tbody",
      null,
      items.map((s) =>
        h(
          "tr",
          null,
          h("td", null, fmtDateTime(s.startedAt)),
          h("td", null, fmtDuration((s.endedAt ? Date.parse(s.endedAt) : Date.now()) - Date.parse(s.startedAt))),
          h("td", null, s.status),
          h("td", null, fmtNum(s.ufRateMlKgH, 1)),
          h("td", null, fmtNum(s.nadirSystolic)),
          h("td", null, s.completenessPct === null || s.completenessPct === undefined ? "—" : `${fmtNum(s.completenessPct, 1)} %`),
          h("td", null, String(s.readingsReceived)),
        ),
      ),
    ),
  );
}
