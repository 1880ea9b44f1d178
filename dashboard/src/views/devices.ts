// Machines: performance per machine (uptime, drops, treatments, utilization, reading gaps,
// rejected messages, ingest lag, alarms, maintenance), with sparklines.

import { call, client } from "../api";
import { fill, fmtDateTime, h } from "../dom";
import type { View } from "../main";
import { FIGURE_LABELS, fetchPerformance, figures, sparkline } from "../performance";

export const devicesView: View = async (root) => {
  const span = h("select", { "aria-label": "Period" }, h("option", { value: "7" }, "Last 7 days"), h("option", { value: "30" }, "Last 30 days"));
  const table = h("div", { class: "scroll" });
  fill(root, h("div", { class: "toolbar" }, h("h1", null, "Machines"), h("span", { class: "spacer" }), span), table);
  const devices = await call("devices", () => client.GET("/api/devices", { params: { query: { limit: 200 } } }));
  const load = async () => {
    const n = Number(span.value);
    fill(table, h("p", { class: "muted" }, "Loading…"));
    const rows = await Promise.all(
      devices.items.map(async (d) => ({ d, p: await fetchPerformance(d.id, n).catch((e: Error) => e) })),
    );
    const head = ["Machine", "Status", ...FIGURE_LABELS, "Treatment hours / day", "Next maintenance"];
    fill(
      table,
      h(
        "table",
        { class: "grid", "data-role": "performance-table" },
        h("thead", null, h("tr", null, head.map((c) => h("th", null, c)))),
        h(
          "tbody",
          null,
          rows.map(({ d, p }) =>
            h(
              "tr",
              { "data-device": d.id },
              h("td", null, h("strong", null, d.serial), h("div", { class: "muted" }, d.name)),
              h("td", null, `${d.status}${d.online ? " · online" : " · offline"}`),
              p instanceof Error
                ? h("td", { colspan: head.length - 2, class: "error" }, p.message)
                : [
                    figures(p).map(([, v]) => h("td", null, v)),
                    h("td", null, sparkline(p.days.map((x) => x.treatmentHours), `${d.serial} treatment hours per day`)),
                    h("td", null, fmtDateTime(d.maintenanceDueAt)),
                  ],
            ),
          ),
        ),
      ),
    );
  };
  span.addEventListener("change", () => void load());
  await load();
};
