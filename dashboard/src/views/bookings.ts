// Bookings: a day or week board per machine with the free slots of `available-slots`;
// booking, rescheduling, confirming and cancelling, with the API's conflicts in words.

import { ApiError, call, client, type S } from "../api";
import { fill, h } from "../dom";
import type { View } from "../main";
import { addDays, mondayOf, todayIn, weekdayLabel, zonedToUtc } from "../zoned";

type Booking = S["BookingOut"];
const SLOTS_SHOWN = 6;

export const bookingsView: View = async (root, me) => {
  const settings = await call("booking settings", () => client.GET("/api/bookings/settings"));
  const tz = settings.timeZone;
  const devices = (await call("devices", () => client.GET("/api/devices", { params: { query: { limit: 200 } } }))).items;
  const books = me.user.role !== "technician";
  const staffBooks = me.user.role === "doctor" || me.user.role === "admin";
  const patients = staffBooks ? (await call("patients", () => client.GET("/api/patients", { params: { query: { limit: 200 } } }))).items : [];

  let mode: "week" | "day" = "week";
  let start = mondayOf(todayIn(tz));
  let moving: Booking | null = null;
  const board = h("div", { class: "scroll", "data-role": "board" });
  const message = h("p", { class: "notice", role: "status", "data-role": "booking-message" });
  const error = h("p", { class: "error", role: "alert", "data-role": "booking-error" });
  const actions = h("div", { class: "booking-actions" });

  // The form (also filled by a click on a free slot, or to move a booking).
  const deviceSel = h("select", { name: "deviceId", "aria-label": "Machine" }, devices.map((d) => h("option", { value: d.id }, `${d.serial} — ${d.name}`)));
  const patientSel = h("select", { name: "patientId", "aria-label": "Patient" }, patients.map((p) => h("option", { value: p.id }, p.name)));
  const date = h("input", { type: "date", name: "date", required: true, value: addDays(todayIn(tz), 1) });
  const time = h("input", { type: "time", name: "time", required: true, value: "07:00", step: 60 });
  const duration = h("input", { type: "number", name: "duration", min: 15, max: 720, step: 15, value: 240, class: "narrow" });
  const submit = h("button", { type: "submit", "data-action": "book" }, "Book");
  const form = h(
    "form",
    { class: "booking-form", "data-role": "booking-form" },
    h("label", null, "Machine ", deviceSel),
    staffBooks && h("label", null, "Patient ", patientSel),
    h("label", null, "Date ", date),
    h("label", null, `Start (${tz}) `, time),
    h("label", null, "Minutes ", duration),
    submit,
  );
  const resetForm = () => {
    moving = null;
    submit.textContent = "Book";
    submit.dataset.action = "book";
  };
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const scheduledDate = zonedToUtc(date.value, time.value, tz).toISOString();
    const minutes = Number(duration.value);
    error.textContent = "";
    message.textContent = "";
    submit.disabled = true;
    const done = moving
      ? call("reschedule", () =>
          client.PUT("/api/bookings/{bookingId}", {
            params: { path: { bookingId: moving!.id } },
            body: { scheduledDate, deviceId: deviceSel.value, duration: minutes },
          }),
        ).then((b) => `Moved: ${describe(b)}.`)
      : call("book", () =>
          client.POST("/api/bookings", {
            body: { deviceId: deviceSel.value, scheduledDate, duration: minutes, ...(staffBooks ? { patientId: patientSel.value } : {}) },
          }),
        ).then((b) => `Booked: ${describe(b)}.`);
    done
      .then((text) => {
        message.textContent = text;
        resetForm();
        fill(actions);
        return load();
      })
      .catch(showError)
      .finally(() => (submit.disabled = false));
  });
  const showError = (e: unknown) => {
    error.textContent = e instanceof ApiError ? e.message : (e as Error).message;
  };

  const describe = (b: Booking) =>
    `${b.deviceName ?? "machine"} ${weekdayLabel(b.localStart.slice(0, 10))} ${b.localStart.slice(11, 16)}–${b.localEnd.slice(11, 16)}${b.patientName ? ` for ${b.patientName}` : ""}`;

  const select = (b: Booking) => {
    fill(
      actions,
      h("strong", null, describe(b)),
      ` (${b.status}) `,
      books &&
        h(
          "button",
          {
            type: "button",
            class: "small",
            "data-action": "reschedule",
            onclick: () => {
              moving = b;
              deviceSel.value = b.deviceId;
              date.value = b.localStart.slice(0, 10);
              time.value = b.localStart.slice(11, 16);
              duration.value = String(b.duration);
              submit.textContent = "Move booking";
              submit.dataset.action = "move";
              message.textContent = "Choose the new time, then Move booking.";
            },
          },
          "Reschedule",
        ),
      staffBooks &&
        b.status === "scheduled" &&
        h("button", { type: "button", class: "small", "data-action": "confirm", onclick: () => change(b, { status: "confirmed" }, "Confirmed") }, "Confirm"),
      books &&
        h(
          "button",
          {
            type: "button",
            class: "small danger",
            "data-action": "cancel",
            onclick: () =>
              void call("cancel", () => client.DELETE("/api/bookings/{bookingId}", { params: { path: { bookingId: b.id } } }))
                .then(() => {
                  message.textContent = `Cancelled: ${describe(b)}.`;
                  fill(actions);
                  return load();
                })
                .catch(showError),
          },
          "Cancel booking",
        ),
    );
  };
  const change = (b: Booking, body: S["UpdateBookingIn"], what: string) =>
    void call("update", () => client.PUT("/api/bookings/{bookingId}", { params: { path: { bookingId: b.id } }, body }))
      .then((nb) => {
        message.textContent = `${what}: ${describe(nb)}.`;
        return load();
      })
      .catch(showError);

  const load = async () => {
    const days = mode === "week" ? 7 : 1;
    const dates = Array.from({ length: days }, (_, i) => addDays(start, i));
    const from = zonedToUtc(start, "00:00", tz).toISOString();
    const to = zonedToUtc(addDays(start, days), "00:00", tz).toISOString();
    const [bookings, slots] = await Promise.all([
      call("bookings", () => client.GET("/api/bookings", { params: { query: { from, to, limit: 200 } } })),
      books
        ? call("free slots", () => client.GET("/api/bookings/available-slots", { params: { query: { from, to, duration: Number(duration.value) || 240 } } })).catch(
            () => null,
          )
        : Promise.resolve(null),
    ]);
    const live = bookings.items.filter((b) => b.status !== "cancelled");
    fill(
      board,
      h(
        "table",
        { class: "grid board" },
        h("thead", null, h("tr", null, h("th", null, "Machine"), dates.map((d) => h("th", null, weekdayLabel(d))))),
        h(
          "tbody",
          null,
          devices.map((d) =>
            h(
              "tr",
              { "data-device": d.id },
              h("th", null, d.serial, h("div", { class: "muted" }, d.name)),
              dates.map((day) => {
                const here = live.filter((b) => b.deviceId === d.id && b.localStart.startsWith(day));
                const free = (slots?.slots ?? []).filter((s) => s.deviceIds.includes(d.id) && s.localStart.startsWith(day));
                const shown = mode === "day" ? free : free.slice(0, SLOTS_SHOWN);
                return h(
                  "td",
                  { "data-date": day },
                  here.map((b) =>
                    h(
                      "button",
                      { type: "button", class: `booking ${b.status}`, "data-booking": b.id, onclick: () => select(b) },
                      `${b.localStart.slice(11, 16)}–${b.localEnd.slice(11, 16)} ${b.patientName ?? ""}`,
                    ),
                  ),
                  shown.map((s) =>
                    h(
                      "button",
                      {
                        type: "button",
                        class: "slot",
                        "data-slot": s.localStart,
                        onclick: () => {
                          deviceSel.value = d.id;
                          date.value = s.localStart.slice(0, 10);
                          time.value = s.localStart.slice(11, 16);
                        },
                      },
                      s.localStart.slice(11, 16),
                    ),
                  ),
                  free.length > shown.length && h("span", { class: "muted small" }, ` +${free.length - shown.length} free`),
                );
              }),
            ),
          ),
        ),
      ),
    );
  };

  const nav = (n: number) => {
    start = addDays(start, n * (mode === "week" ? 7 : 1));
    void load().catch(showError);
  };
  const modeSel = h("select", { "aria-label": "View" }, h("option", { value: "week" }, "Week"), h("option", { value: "day" }, "Day"));
  modeSel.addEventListener("change", () => {
    mode = modeSel.value as "week" | "day";
    start = mode === "week" ? mondayOf(start) : todayIn(tz);
    void load().catch(showError);
  });
  duration.addEventListener("change", () => void load().catch(showError));
  fill(
    root,
    h(
      "div",
      { class: "toolbar" },
      h("h1", null, "Bookings"),
      h("span", { class: "spacer" }),
      modeSel,
      h("button", { type: "button", class: "small", "data-action": "previous", "aria-label": "Previous", onclick: () => nav(-1) }, "◀"),
      h(
        "button",
        {
          type: "button",
          class: "small",
          onclick: () => {
            start = mode === "week" ? mondayOf(todayIn(tz)) : todayIn(tz);
            void load().catch(showError);
          },
        },
        "Today",
      ),
      h("button", { type: "button", class: "small", "data-action": "next", "aria-label": "Next", onclick: () => nav(1) }, "▶"),
    ),
    books ? form : h("p", { class: "muted" }, "Technicians see their machines' bookings; planning maintenance windows is in the API."),
    message,
    error,
    actions,
    board,
  );
  await load();
};

