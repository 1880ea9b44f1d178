// The dashboard: sign-in, then the views the person's role allows, all client of the
// public REST + MQTT contract (nothing private): what the API or the broker refuses, the
// page cannot show.

import * as alarms from "./alarms";
import { announce, isMuted, setMuted } from "./cue";
import { fill, h } from "./dom";
import { connect, disconnect, onLiveState } from "./live";
import { current, resume, signIn, signOut, whenEnded, type Me } from "./session";
import { signInView } from "./views/signin";

export type Cleanup = () => void;
export type View = (root: HTMLElement, me: Me, params: string[]) => Cleanup | void | Promise<Cleanup | void>;

interface Route {
  path: string;
  label: string;
  roles: string[];
  load: () => Promise<View>;
}

const ROUTES: Route[] = [
  { path: "overview", label: "Central station", roles: ["doctor", "technician", "admin"], load: async () => (await import("./views/overview")).overview },
  { path: "me", label: "My treatment", roles: ["patient"], load: async () => (await import("./views/patient")).myTreatment },
  { path: "alarms", label: "Alarms", roles: ["doctor", "technician", "patient"], load: async () => (await import("./views/alarms")).alarmsView },
  { path: "patients", label: "Patients", roles: ["doctor", "technician"], load: async () => (await import("./views/patient")).patientsView },
  { path: "chat", label: "Chat", roles: ["doctor", "technician", "patient"], load: async () => (await import("./views/chat")).chatView },
  { path: "bookings", label: "Bookings", roles: ["doctor", "technician", "admin", "patient"], load: async () => (await import("./views/bookings")).bookingsView },
  { path: "devices", label: "Machines", roles: ["doctor", "technician", "admin"], load: async () => (await import("./views/devices")).devicesView },
  { path: "settings", label: "Settings", roles: ["doctor", "technician", "admin"], load: async () => (await import("./views/settings")).settingsView },
];

const app = document.getElementById("app")!;
let cleanup: Cleanup | null = null;
let endedMessage = "";
const deviceNames = new Map<string, string>();

export function rememberDevice(id: string, name: string): void {
  deviceNames.set(id, name);
}

whenEnded((message) => {
  endedMessage = message;
  alarms.stopAll();
  disconnect();
  location.hash = "#/signin";
  void render();
});

function homeOf(me: Me): string {
  return me.user.role === "patient" ? "me" : "overview";
}

async function render(): Promise<void> {
  cleanup?.();
  cleanup = null;
  const me = current();
  const [path = "", ...params] = location.hash.replace(/^#\/?/, "").split("/");
  if (!me) {
    fill(app, signInView(endedMessage, async (email, password) => {
      const who = await signIn(email, password);
      endedMessage = "";
      await started(who);
    }));
    return;
  }
  const route = ROUTES.find((r) => r.path === path && r.roles.includes(me.user.role));
  if (!route) {
    location.hash = `#/${homeOf(me)}`;
    return;
  }
  const content = h("section", { class: "content", "data-view": route.path });
  fill(app, shell(me, route.path), content);
  try {
    const view = await route.load();
    const c = await view(content, me, params.map(decodeURIComponent));
    cleanup = c ?? null;
  } catch (e) {
    fill(content, h("p", { class: "error", role: "alert" }, (e as Error).message));
  }
}

const banner = h("div", { class: "banner", role: "alert" });
const liveBadge = h("span", { class: "live-state" });
onLiveState((s) => {
  liveBadge.textContent = s === "live" ? "● Live" : s === "connecting" ? "◌ Connecting…" : "○ Offline";
  liveBadge.className = `live-state ${s}`;
});

function shell(me: Me, active: string): HTMLElement {
  const mute = h("button", { type: "button", class: "small", "aria-pressed": String(isMuted()) }, isMuted() ? "Alarm sound: muted" : "Alarm sound: on");
  mute.addEventListener("click", () => {
    setMuted(!isMuted());
    mute.textContent = isMuted() ? "Alarm sound: muted" : "Alarm sound: on";
    mute.setAttribute("aria-pressed", String(isMuted()));
  });
  return h(
    "div",
    { class: "shell" },
    h(
      "header",
      { class: "top" },
      h("span", { class: "brand" }, "Nephrocare"),
      h(
        "nav",
        null,
        ROUTES.filter((r) => r.roles.includes(me.user.role)).map((r) =>
          h("a", { href: `#/${r.path}`, class: r.path === active ? "active" : "", "data-nav": r.path }, r.label),
        ),
      ),
      h("span", { class: "spacer" }),
      liveBadge,
      me.user.role !== "admin" && mute,
      h("span", { class: "who" }, `${me.user.name} (${me.user.role})`),
      h("button", { type: "button", class: "small", "data-action": "sign-out", onclick: () => void signOut() }, "Sign out"),
    ),
    banner,
  );
}

alarms.onNewHigh((a) => announce(banner, a, (id) => deviceNames.get(id) ?? "a machine"));

async function started(me: Me): Promise<void> {
  await connect();
  await alarms.start(me).catch((e) => console.warn("alarms:", (e as Error).message));
  if (!location.hash || location.hash === "#/signin") location.hash = `#/${homeOf(me)}`;
  else await render();
}

addEventListener("hashchange", () => void render());

(async () => {
  const me = await resume().catch(() => null);
  if (me) await started(me);
  else await render();
})();
