// The alarm list: open alarms by priority and age, live, with acknowledge, snooze (a bounded
// time with a reason), clear (technical alarms, or a value back in range) and the alarm's
// full history. The columns and actions are tables below: a new one is an entry each.

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
  /** Runs at once, or opens the row's panel (a form, the history) when it needs more. */
  run: (a: Alert, panel: Panel) => Promise<void>;
}

/** The panel under an alarm's row (one open at a time). */
interface Panel {
  show: (a: Alert, content: Child) => void;
  close: () => void;
}

const SNOOZE_MINUTES = [5, 10, 15, 30];

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
    offered: (a, me) => STAFF.has(me.user.role) && (a.state === "active" || a.latched),
    run: (a) => alarms.acknowledge(a.id),
  },
  {
    label: "Snooze",
    offered: (a, me) => STAFF.has(me.user.role) && a.state !== "cleared" && !a.snoozedUntil,
    run: async (a, panel) => panel.show(a, snoozeForm(a, panel)),
  },
  {
    // The server has the last word (409 condition_persists), shown in words.
    label: "Clear",
    offered: (a, me) => STAFF.has(me.user.role) && a.state !== "cleared" && (a.kind === "technical" || !!a.inRangeSince),
    run: (a) => alarms.clear(a.id),
  },
  {
    label: "History",
    offered: () => true,
    run: async (a, panel) => panel.show(a, historyList(await alarms.history(a.id))),
  },
];

function snoozeForm(a: Alert, panel: Panel): HTMLFormElement {
  const minutes = h("select", { name: "minutes" }, SNOOZE_MINUTES.map((m) => h("option", { value: m }, `${m} min`)));
  const reason = h("input", { name: "reason", required: true, maxlength: 500, placeholder: "why (kept in the history)" });
  const error = h("span", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      class: "booking-form snooze-form",
      "data-role": "snooze-form",
      onsubmit: (e: Event) => {
        e.preventDefault();
        error.textContent = "";
        alarms.snooze(a.id, Number(minutes.value), reason.value.trim()).then(panel.close, (err: Error) => {
          error.textContent = err.message;
        });
      },
    },
    h("label", null, "Snooze for", minutes),
    h("label", null, "Reason", reason),
    h("button", { type: "submit", class: "small" }, "Snooze"),
    h("button", { type: "button", class: "small", onclick: panel.close }, "Cancel"),
    error,
  );
  return form;
}

const EVENT_WORDS: Record<string, string> = {
  raised: "raised",
  notified: "notified",
  escalated: "escalated",
  unreachable: "nobody reachable",
  acknowledged: "acknowledged",
  snoozed: "snoozed",
  realerted: "alerted again after the snooze",
  cleared: "cleared",
};

function historyList(entries: alarms.HistoryEntry[]): HTMLElement {
  return h(
    "ol",
    { class: "alarm-history", "data-role": "alarm-history" },
    entries.map((e) =>
      h(
        "li",
        { "data-event": e.event },
        h("strong", null, `${fmtTime(e.at)} ${EVENT_WORDS[e.event] ?? e.event}`),
        e.tier ? ` · tier ${e.tier}` : null,
        e.actorName ? ` · by ${e.actorName}` : null,
        e.recipients.length ? ` · to ${e.recipients.length} (${e.reachable.length} reachable)` : null,
        e.reason ? ` · “${e.reason}”` : null,
        e.snoozeUntil ? ` · until ${fmtTime(e.snoozeUntil)}` : null,
      ),
    ),
  );
}

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
  let shown: { id: string; content: Child } | null = null;
  const panel: Panel = {
    show: (a, content) => {
      shown = { id: a.id, content };
      draw();
    },
    close: () => {
      shown = null;
      draw();
    },
  };
  const draw = () => {
    const now = Date.now();
    const list = alarms.ordered();
    if (shown && !list.some((a) => a.id === shown?.id)) shown = null;
    empty.hidden = list.length > 0;
    fill(
      body,
      list.map((a) => [
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
                    x.run(a, panel).catch((err: Error) => {
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
        shown?.id === a.id
          ? h("tr", { class: "alarm-panel" }, h("td", { colspan: COLUMNS.length + 1 }, shown.content))
          : null,
      ]),
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
