// Settings: for everyone on staff, whether their alarms also come by e-mail; for admins,
// the hospital's alert manager (IHE PCD ACM over MLLP) and the unit fallback for alarms
// that reach nobody. All through the public REST API (/api/alerts/email-preference,
// /alert-manager, /fallback).

import { ApiError, call, client } from "../api";
import { fill, h } from "../dom";
import type { View } from "../main";

function status(): HTMLElement {
  return h("p", { class: "muted", role: "status", "aria-live": "polite" });
}

function failed(where: HTMLElement, e: unknown): void {
  where.className = "error";
  where.textContent = (e as Error).message;
}

function done(where: HTMLElement, text: string): void {
  where.className = "muted";
  where.textContent = text;
}

function field(label: string, input: HTMLInputElement): HTMLElement {
  return h("label", { class: "field" }, h("span", null, label), input);
}

async function emailPreference(): Promise<HTMLElement> {
  const current = await call("e-mail preference", () => client.GET("/api/alerts/email-preference"));
  const box = h("input", { type: "checkbox", name: "alarmEmail" }) as HTMLInputElement;
  box.checked = current.enabled;
  const said = status();
  box.addEventListener("change", async () => {
    try {
      const r = await call("e-mail preference", () =>
        client.PUT("/api/alerts/email-preference", { body: { enabled: box.checked } }),
      );
      done(said, r.enabled ? "Your alarms also come by e-mail." : "Your alarms no longer come by e-mail.");
    } catch (e) {
      box.checked = !box.checked;
      failed(said, e);
    }
  });
  return h(
    "section",
    { class: "card", "data-role": "email-preference" },
    h("h2", null, "My alarms"),
    h("label", { class: "check" }, box, " Also send my alarms to my e-mail address (no patient data: priority, machine, bay and a link)"),
    said,
  );
}

async function alertManager(): Promise<HTMLElement> {
  const current = await call("alert manager", () => client.GET("/api/alerts/alert-manager")).catch((e) => {
    if (e instanceof ApiError && e.status === 404) return null;
    throw e;
  });
  const input = (name: string, value: string, placeholder = "") =>
    h("input", { name, value, placeholder }) as HTMLInputElement;
  const address = input("address", current?.address ?? "", "host:port");
  const app = input("receivingApplication", current?.receivingApplication ?? "ACM");
  const facility = input("receivingFacility", current?.receivingFacility ?? "");
  const patient = h("input", { type: "checkbox", name: "includePatient" }) as HTMLInputElement;
  patient.checked = current?.includePatient ?? false;
  const tls = h("input", { type: "checkbox", name: "tls" }) as HTMLInputElement;
  tls.checked = current?.tls ?? false;
  const enabled = h("input", { type: "checkbox", name: "enabled" }) as HTMLInputElement;
  enabled.checked = current?.enabled ?? true;
  const said = status();
  const form = h(
    "form",
    { class: "card", "data-role": "alert-manager" },
    h("h2", null, "Alert manager (pagers and phones, IHE PCD ACM)"),
    field("Address", address),
    field("Receiving application", app),
    field("Receiving facility", facility),
    h("label", { class: "check" }, patient, " Include the patient and the value in reports"),
    h("label", { class: "check" }, tls, " Over TLS"),
    h("label", { class: "check" }, enabled, " Send reports"),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save"), h("button", { type: "button", "data-action": "remove" }, "Remove")),
    said,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await call("alert manager", () =>
        client.PUT("/api/alerts/alert-manager", {
          body: {
            address: address.value.trim(),
            receivingApplication: app.value.trim() || "ACM",
            receivingFacility: facility.value.trim(),
            includePatient: patient.checked,
            tls: tls.checked,
            enabled: enabled.checked,
          },
        }),
      );
      done(said, "Saved: every phase of every alarm is reported to it.");
    } catch (e) {
      failed(said, e);
    }
  });
  form.querySelector("[data-action=remove]")!.addEventListener("click", async () => {
    try {
      await call("alert manager", () => client.DELETE("/api/alerts/alert-manager"));
      address.value = "";
      done(said, "Removed: no reports are sent.");
    } catch (e) {
      failed(said, e);
    }
  });
  return form;
}

async function fallback(): Promise<HTMLElement> {
  const current = await call("fallback", () => client.GET("/api/alerts/fallback"));
  const email = h("input", { name: "fallbackEmail", type: "email", value: current.email ?? "", placeholder: "charge-nurse@unit.example" }) as HTMLInputElement;
  const recipient = h("input", { name: "fallbackRecipient", value: current.acmRecipient ?? "", placeholder: "recipient at the alert manager" }) as HTMLInputElement;
  const said = status();
  const form = h(
    "form",
    { class: "card", "data-role": "fallback" },
    h("h2", null, "Unit fallback (an alarm nobody could be reached for)"),
    field("E-mail", email),
    field("Alert manager recipient", recipient),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save")),
    said,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await call("fallback", () =>
        client.PUT("/api/alerts/fallback", {
          body: { email: email.value.trim() || undefined, acmRecipient: recipient.value.trim() || undefined },
        }),
      );
      done(said, email.value.trim() || recipient.value.trim() ? "Saved." : "Removed: no fallback.");
    } catch (e) {
      failed(said, e);
    }
  });
  return form;
}

export const settingsView: View = async (root, me) => {
  const parts: HTMLElement[] = [await emailPreference()];
  if (me.user.role === "admin") parts.push(await alertManager(), await fallback());
  fill(root, h("div", { class: "toolbar" }, h("h1", null, "Settings")), h("div", { class: "settings" }, parts));
};
