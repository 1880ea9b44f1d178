// The central station: a tile per machine the person may see, live.

import * as alarms from "../alarms";
import { call, client } from "../api";
import { fill, h } from "../dom";
import { follow, loadPatientNames, patientNames, snapshot } from "../follow";
import { rememberDevice, type View } from "../main";
import { performanceDetail } from "../performance";
import { prefs, setPrefs } from "../prefs";
import { Tile } from "../tile";

export const overview: View = async (root, me) => {
  const clinical = me.user.role !== "admin";
  const grid = h("div", { class: "tiles", "data-role": "tiles" });
  const staleInput = h("input", { type: "number", min: 2, max: 3600, value: prefs().staleAfterSeconds, class: "narrow", "aria-label": "Grey readings older than (s)" });
  staleInput.addEventListener("change", () => setPrefs({ staleAfterSeconds: Number(staleInput.value) }));
  fill(
    root,
    h(
      "div",
      { class: "toolbar" },
      h("h1", null, "Central station"),
      h("span", { class: "spacer" }),
      h("label", { class: "inline" }, "Grey readings older than ", staleInput, " s"),
    ),
    clinical ? null : h("p", { class: "muted" }, "Administrators see the machines' state; clinical data is for the care team."),
    grid,
  );
  const devices = await call("devices", () =>
    client.GET("/api/devices", { params: { query: { limit: 200, ...(clinical ? { mine: true } : {}) } } }),
  );
  if (devices.items.length === 0) {
    fill(grid, h("p", { class: "muted" }, "No machines are assigned to you."));
    return;
  }
  const tiles = devices.items.map((d) => {
    rememberDevice(d.id, `${d.serial} (${d.name})`);
    return new Tile(
      {
        deviceId: d.id,
        serial: d.serial,
        name: d.name,
        status: d.status,
        location: d.location,
        online: d.online,
        patientId: null,
        patientName: null,
        session: null,
        reading: null,
        clinical,
      },
      (patientId) => (location.hash = `#/patients/${patientId}`),
      (tile) => void toggleDetail(tile),
    );
  });
  fill(grid, tiles.map((t) => t.el));
  performance.mark("nc:overview-tiles");
  const stops = tiles.map((t) => follow(t, me, { kind: "device" }));
  stops.push(alarms.onAlarms(() => tiles.forEach((t) => t.render())));
  const ticker = setInterval(() => tiles.forEach((t) => t.render()), 1000);
  if (clinical) {
    await loadPatientNames().catch(() => undefined);
    await Promise.all(tiles.map((t) => snapshot(t, { kind: "device" }).catch((e) => console.warn((e as Error).message))));
    for (const t of tiles) if (t.state.patientId) t.state.patientName = patientNames.get(t.state.patientId) ?? t.state.patientName;
    performance.mark("nc:overview-data");
  }
  return () => {
    clearInterval(ticker);
    stops.forEach((f) => f());
  };
};

async function toggleDetail(tile: Tile): Promise<void> {
  if (!tile.detail.hidden) {
    tile.detail.hidden = true;
    return;
  }
  tile.detail.hidden = false;
  fill(tile.detail, h("p", { class: "muted" }, "Loading…"));
  try {
    fill(tile.detail, await performanceDetail(tile.state.deviceId, 7));
  } catch (e) {
    fill(tile.detail, h("p", { class: "error" }, (e as Error).message));
  }
}
