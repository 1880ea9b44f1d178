// The alarm list: open alarms by priority and age, live, with acknowledge. The columns and
// actions are tables below, so the alarm-system issue's snooze, history and escalation
// are an entry each.

import * as alarms from "../alarms";
import type { Alert } from "../alarms";
import { call, client } from "../api";
import { ago, fill, fmtTime, h, type Child } from "../dom";
import { loadPatientNames, patientNames } from "../follow";
import type { View } from "../main";
import type { Me } from "../session";

interface Column {
  label: string;
  cell: (a: Alert, now: number) => Child;
}

interface Action {
  label: string;
  /** Whether the action is offered for this alarm to this person. */
  offered: (a: Alert, me: Me) => boolean;
  run: (a: Alert) => Promise<void>;
}

const STAFF = new Set(["doctor", "technician"]);

const COLUMNS: Column[] = [
  { label: "Priority", cell: (a) => h("span", { class: `badge priority-${a.priority}` }, a.priority) },
  { label: "Machine", cell: (a) => deviceLabel(a.deviceId) },
  { label: "Patient", cell: (a) => (a.patientId ? patientNames.get(a.patientId) ?? "—" : "—") },
  { label: "Alarm", cell: (a) => [h("div", null, a.message), h("small", { class: "muted" }, `${a.kind} · ${a.code}`)] },
  { label: "Raised", cell: (a, now) => [fmtTime(a.raisedAt), h("div", { class: "muted" }, ago(a.raisedAt, now))] },
  {
    label: "State",
    cell: (a) => [
      h("span", { class: `state-${a.state}`, "data-state": a.state }, a.state),
      a.latched ? h("div", { class: "muted" }, "latched: cleared before acknowledged") : null,
      a.acknowledgedAt ? h("div", { class: "muted" }, `acknowledged ${fmtTime(a.acknowledgedAt)}`) : null,
      a.snoozedUntil ? h("div", { class: "muted" }, `snoozed until ${fmtTime(a.snoozedUntil)}`) : null,
    ],
  },
  { label: "Escalation", cell: (a) => (a.escalationLevel ? `tier ${a.escalationLevel}` : "—") },
];

const ACTIONS: Action[] = [
  {
    label: "Acknowledge",
    offered: (a, me) => STAFF.has(me.user.role) && a.state === "active",
    run: (a) => alarms.acknowledge(a.id),
  },
];

let devices = new Map<string, string>();
const deviceLabel = (id: string) => devices.get(id) ?? id.slice(0, 8);

export const alarmsView: View = async (root, me) => {
  const body = h("tbody");
  const error = h("p", { class: "error", role: "alert" });
  const empty = h("p", { class: "muted", "data-role": "no-alarms" }, "No open alarms.");
  const table = h(
    "table",
    { class: "grid alarms", "data-role": "alarms" },
    h("thead", null, h("tr", null, COLUMNS.map((c) => h("th", null, c.label)), h("th", null, ""))),
    body,
  );
  fill(root, h("div", { class: "toolbar" }, h("h1", null, "Alarms")), error, table, empty);
  const draw = () => {
    const now = Date.now();
    const list = alarms.ordered();
    empty.hidden = list.length > 0;
    fill(
      body,
      list.map((a) =>
        h(
          "tr",
          { class: `alarm-row priority-${a.priority} state-${a.state}`, "data-alert": a.id, "data-device": a.deviceId },
          COLUMNS.map((c) => h("td", null, c.cell(a, now))),
          h(
            "td",
            { class: "actions" },
            ACTIONS.filter((x) => x.offered(a, me)).map((x) =>
              h(
                "button",
                {
                  type: "button",
                  class: "small",
                  "data-action": x.label.toLowerCase(),
                  onclick: (e: Event) => {
                    (e.currentTarget as HTMLButtonElement).disabled = true;
                    error.textContent = "";
                    x.run(a).catch((err: Error) => {
                      error.textContent = err.message;
                      draw();
                    });
                  },
                },
                x.label,
              ),
            ),
          ),
        ),
      ),
    );
  };
  // Machine serials and patient names first, so the rows never show bare ids.
  const [list] = await Promise.all([
    call("devices", () => client.GET("/api/devices", { params: { query: { limit: 200 } } })),
    loadPatientNames().catch(() => undefined),
  ]);
  devices = new Map(list.items.map((d) => [d.id, d.serial]));
  const stop = alarms.onAlarms(draw);
  const ticker = setInterval(draw, 5000);
  draw();
  return () => {
    stop();
    clearInterval(ticker);
  };
};
