// The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven by
// Playwright, against the real service with the demo data and the simulator running
// (scripts/browser-test.sh starts them and passes their addresses). REST checks use the
// client generated from the OpenAPI document; the patient's side of the chat is a real
// MQTT client (MQTT.js over TCP). Screenshots of every view go to NC_ARTIFACTS.
//
// Environment: NC_URL (the service), NC_MQTT (mqtt://host:port), NC_SIM_COMMANDS (the
// simulator's command pipe), NC_ARTIFACTS (screenshots, timings), CHROMIUM (the browser).

import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import { after, before, test } from "node:test";

import mqtt from "mqtt";
import createClient from "openapi-fetch";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";

import type { paths } from "../src/openapi";

const URL = need("NC_URL");
const MQTT = need("NC_MQTT");
const SIM = need("NC_SIM_COMMANDS");
const ART = need("NC_ARTIFACTS");
const PASSWORD = "Nephro-demo-2026";
const DOCTOR = "dr.okafor@demo.nephrocare.test";
const PATIENT = "amara.diallo@demo.nephrocare.test";

function need(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
}

let browser: Browser;
const contexts: BrowserContext[] = [];
/** Console errors and uncaught exceptions of every page, with the page they came from. */
const problems: string[] = [];
/**
 * Errors Chromium logs for what a page meets on purpose: the booking conflict (409), and on
 * the page whose account is deactivated, the refused requests and live connection.
 */
const expected: Record<string, RegExp[]> = {
  // The Swagger UI page links no icon, so Chromium asks for /favicon.ico (404) by itself.
  docs: [/Failed to load resource: the server responded with a status of 404 .*\/favicon\.ico\)$/],
  doctor: [/Failed to load resource: the server responded with a status of 409/],
  // The broker cuts the deactivated account's live connection while MQTT.js may be writing
  // to it (a ping, a reconnect's CONNECT): Chromium then logs that the socket is closing.
  technician: [
    /Failed to load resource: the server responded with a status of 401/,
    /WebSocket connection to .* failed/,
    /WebSocket is already in CLOSING or CLOSED state/,
  ],
  // No alert manager yet (404), then an address without a port (422), on purpose.
  settings: [/Failed to load resource: the server responded with a status of (404|422)/],
};

async function login(email: string) {
  const anonymous = createClient<paths>({ baseUrl: URL });
  const r = await anonymous.POST("/api/auth/login", { body: { email, password: PASSWORD } });
  assert.ok(r.data, `login ${email}: ${r.response.status}`);
  const client = createClient<paths>({ baseUrl: URL, headers: { Authorization: `Bearer ${r.data.accessToken}` } });
  return { client, token: r.data.accessToken, user: r.data.user };
}

/**
 * A REST client signed in as `email`, reused while its access token has 10 s left: sign-ins
 * are throttled per account (5 a minute), and the page signs in as the doctor too.
 */
const signedIn = new Map<string, { at: number; session: Awaited<ReturnType<typeof login>> }>();
async function api(email: string) {
  const ttlMs = Number(process.env.NC_TOKEN_TTL_SECS ?? 40) * 1000;
  const cached = signedIn.get(email);
  if (cached && Date.now() - cached.at < ttlMs - 10_000) return cached.session;
  const at = Date.now();
  const session = await login(email);
  signedIn.set(email, { at, session });
  return session;
}

async function open(label: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, locale: "en-GB", timezoneId: "Europe/Berlin" });
  contexts.push(context);
  const page = await context.newPage();
  page.on("console", (m) => {
    const where = m.location().url;
    const text = where ? `${m.text()} (${where})` : m.text();
    if (m.type() === "error" && !(expected[label] ?? []).some((e) => e.test(text))) {
      problems.push(`${label}: console.error ${text}`);
    }
  });
  page.on("pageerror", (e) => problems.push(`${label}: uncaught ${e.message}`));
  return page;
}

async function signIn(page: Page, email: string): Promise<void> {
  await page.goto(`${URL}/`);
  await page.fill("input[name=email]", email);
  await page.fill("input[name=password]", PASSWORD);
  await page.click("form.signin button[type=submit]");
  await page.waitForSelector("header.top", { timeout: 10_000 });
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: `${ART}/${name}.png`, fullPage: true });
}

function simulate(command: string): void {
  appendFileSync(SIM, `${command}\n`);
}

before(async () => {
  mkdirSync(ART, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
});

let doctorPage: Page;
let doctorSignedInAt = 0;

test("a doctor signs in and sees the machines' tiles update within 3 s", async () => {
  const page = await open("doctor");
  doctorPage = page;
  await page.goto(`${URL}/`);
  await shot(page, "sign-in");
  await signIn(page, DOCTOR);
  doctorSignedInAt = Date.now();
  const tiles = page.locator(".tile");
  await tiles.first().waitFor();
  const serials = await tiles.evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.serial));
  assert.deepEqual(serials.sort(), ["DM-001", "DM-002"], "Dr Okafor's two machines");
  const tile = page.locator('.tile[data-serial="DM-001"]');
  await page.waitForFunction(() => document.querySelector<HTMLElement>('.tile[data-serial="DM-001"]')?.dataset.ts, null, { timeout: 5_000 });
  const first = await tile.getAttribute("data-ts");
  const started = Date.now();
  await page.waitForFunction((ts) => document.querySelector<HTMLElement>('.tile[data-serial="DM-001"]')?.dataset.ts !== ts, first, { timeout: 3_000 });
  const second = await tile.getAttribute("data-ts");
  await page.waitForFunction((ts) => document.querySelector<HTMLElement>('.tile[data-serial="DM-001"]')?.dataset.ts !== ts, second, { timeout: 3_000 });
  assert.ok(Date.now() - started < 6_000);
  assert.equal(await page.locator(".live-state").textContent(), "● Live");
  await page.waitForTimeout(500);
  await shot(page, "overview");

  // First paint of the overview, signed in (a reload resumes the session): recorded, not asserted.
  await page.reload();
  await page.locator(".tile").first().waitFor();
  await page.waitForFunction(() => performance.getEntriesByName("nc:overview-data").length > 0, null, { timeout: 10_000 });
  const timing = await page.evaluate(() => ({
    firstContentfulPaintMs: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? null,
    tilesMs: performance.getEntriesByName("nc:overview-tiles")[0]?.startTime ?? null,
    tilesWithDataMs: performance.getEntriesByName("nc:overview-data")[0]?.startTime ?? null,
    transferredBytes: performance.getEntriesByType("resource").reduce((n, r) => n + (r as PerformanceResourceTiming).encodedBodySize, 0),
  }));
  writeFileSync(`${ART}/timing.json`, JSON.stringify(timing, null, 2));
  console.log(`overview timing (reload, signed in): ${JSON.stringify(timing)}`);
});

test("a hypotension episode turns the tile red and adds an alarm; acknowledging it shows over REST and on a second page", async () => {
  const page = doctorPage;
  const doctor = await api(DOCTOR);
  const devices = await doctor.client.GET("/api/devices", { params: { query: { mine: true } } });
  const dm2 = devices.data!.items.find((d) => d.serial === "DM-002")!;
  const patients = await doctor.client.GET("/api/devices/{deviceId}/patients", { params: { path: { deviceId: dm2.id } } });
  const patient = patients.data![0]!;
  // The patient's own limit, raised within 2 s of reading time (a doctor's decision, over the API).
  const limit = await doctor.client.PUT("/api/patients/{patientId}/alert-thresholds", {
    params: { path: { patientId: patient.id } },
    body: { metric: "systolic_bp", low: 90, priority: "high", delaySeconds: 2, hysteresis: 5 },
  });
  assert.ok(limit.response.ok, `threshold: ${limit.response.status}`);

  const second = await open("doctor, second page");
  await signIn(second, DOCTOR);
  await second.goto(`${URL}/#/alarms`);
  await second.locator('table[data-role="alarms"]').waitFor();

  assert.equal(await page.locator('.tile[data-serial="DM-002"]').getAttribute("data-alarm"), "none");
  simulate("episode DM-002 hypotension 90");
  await page.waitForSelector('.tile[data-serial="DM-002"][data-alarm="high"]', { timeout: 20_000 });
  assert.match((await page.locator(".banner").textContent()) ?? "", /New high-priority alarm/);
  await shot(page, "overview-alarm");

  const row = `tr[data-device="${dm2.id}"].priority-high`;
  await second.waitForSelector(row, { timeout: 5_000 });
  const alertId = (await second.locator(row).first().getAttribute("data-alert"))!;
  await page.click('nav a[data-nav="alarms"]');
  await page.waitForSelector(`tr[data-alert="${alertId}"] button[data-action="acknowledge"]`);
  await shot(page, "alarms");
  await page.click(`tr[data-alert="${alertId}"] button[data-action="acknowledge"]`);
  await page.waitForSelector(`tr[data-alert="${alertId}"] [data-state="acknowledged"]`, { timeout: 5_000 });

  const stored = await doctor.client.GET("/api/alerts/{alertId}", { params: { path: { alertId } } });
  assert.equal(stored.data?.state, "acknowledged");
  assert.equal(stored.data?.acknowledgedBy, doctor.user.id);
  await second.waitForSelector(`tr[data-alert="${alertId}"] [data-state="acknowledged"]`, { timeout: 5_000 });
  assert.equal(await second.locator(`tr[data-alert="${alertId}"] button[data-action="acknowledge"]`).count(), 0);

  // Snoozed with a reason from the page; the history shows every step, with who did it.
  await page.click(`tr[data-alert="${alertId}"] button[data-action="snooze"]`);
  await page.selectOption('form[data-role="snooze-form"] select[name="minutes"]', "10");
  await page.fill('form[data-role="snooze-form"] input[name="reason"]', "patient repositioned, re-checking");
  await page.click('form[data-role="snooze-form"] button[type="submit"]');
  await page.waitForSelector(`tr[data-alert="${alertId}"] >> text=snoozed until`, { timeout: 5_000 });
  const snoozed = await doctor.client.GET("/api/alerts/{alertId}", { params: { path: { alertId } } });
  assert.ok(snoozed.data?.snoozedUntil, "snoozed over REST");
  assert.equal(snoozed.data?.snoozeReason, "patient repositioned, re-checking");
  await page.click(`tr[data-alert="${alertId}"] button[data-action="history"]`);
  const steps = page.locator('ol[data-role="alarm-history"] li');
  await steps.first().waitFor({ timeout: 5_000 });
  const events = await steps.evaluateAll((lis) => lis.map((li) => li.getAttribute("data-event")));
  for (const e of ["raised", "notified", "acknowledged", "snoozed"]) assert.ok(events.includes(e), `${e} in ${events}`);
  assert.match((await page.locator('ol[data-role="alarm-history"] li[data-event="snoozed"]').textContent()) ?? "", /re-checking/);
  await shot(page, "alarm-history");
});

test("a chat message typed in the page reaches the patient's MQTT client, and the reply appears live", async () => {
  const page = doctorPage;
  const patient = await api(PATIENT);
  const rooms = await patient.client.GET("/api/chat/rooms");
  const room = rooms.data!.items.find((r) => r.type === "doctor-patient")!;
  const base = `nc/v1/h/${patient.user.hospitalId}/chat/${room.id}`;
  const phone = await mqtt.connectAsync(MQTT, {
    clientId: `${patient.user.id}-browsertest`,
    username: patient.user.id,
    password: patient.token,
    protocolVersion: 5,
    clean: true,
    reconnectPeriod: 0,
  });
  try {
    const inbox: { topic: string; body: Record<string, unknown> }[] = [];
    phone.on("message", (topic, payload) => inbox.push({ topic, body: JSON.parse(payload.toString()) }));
    const granted = await phone.subscribeAsync(`${base}/#`, { qos: 1 });
    assert.deepEqual(granted.map((g) => g.qos), [1]);
    const arrived = async (pred: (m: { topic: string; body: Record<string, unknown> }) => boolean, what: string) => {
      for (let i = 0; i < 100; i++) {
        const m = inbox.find(pred);
        if (m) return m;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`the patient's client did not receive ${what}`);
    };

    await page.goto(`${URL}/#/chat/${room.id}`);
    await page.waitForSelector('[data-role="messages"] li');
    const text = `Please drink less before Friday (${Date.now()})`;
    await page.fill('[data-role="compose"]', text);
    await arrived((m) => m.topic.endsWith("/typing") && m.body.typing === true, "the doctor typing");
    await page.press('[data-role="compose"]', "Enter");
    const got = await arrived((m) => m.topic.endsWith("/messages") && (m.body.message as { message?: string })?.message === text, "the message");
    assert.equal((got.body.message as { senderRole: string }).senderRole, "doctor");

    phone.publish(`${base}/typing`, JSON.stringify({ v: 1, typing: true }), { qos: 0 });
    await page.waitForSelector('[data-role="typing"]:has-text("typing")', { timeout: 5_000 });
    const reply = `Understood, thank you (${Date.now()})`;
    await phone.publishAsync(`${base}/post`, JSON.stringify({ v: 1, clientMessageId: `bt-${Date.now()}`, message: reply }), { qos: 1 });
    await page.waitForSelector(`[data-role="messages"] li.theirs:has-text("${reply}")`, { timeout: 5_000 });
    // MQTT 5: a publish the patient may not make is refused in its PUBACK (0x87, not
    // authorized), and the connection stays.
    const machine = `nc/v1/h/${patient.user.hospitalId}/d/${crypto.randomUUID()}/telemetry`;
    await assert.rejects(phone.publishAsync(machine, "{}", { qos: 1 }), (e: Error & { code?: number }) => e.code === 0x87);
    assert.ok(phone.connected, "still connected after a refused publish");
    // Read on the page: the patient gets the receipt, and sees their message read.
    await arrived((m) => m.topic.endsWith("/read") && m.body.userId !== patient.user.id, "the read receipt");
    await shot(page, "chat");
  } finally {
    await phone.endAsync();
  }
});

test("a booking made in the page appears in GET /api/bookings; a conflicting one shows the error", async () => {
  const page = doctorPage;
  const doctor = await api(DOCTOR);
  await page.goto(`${URL}/#/bookings`);
  await page.waitForSelector('[data-role="board"] table');
  const devices = await doctor.client.GET("/api/devices", { params: { query: { mine: true } } });
  const dm1 = devices.data!.items.find((d) => d.serial === "DM-001")!;
  const patients = await doctor.client.GET("/api/devices/{deviceId}/patients", { params: { path: { deviceId: dm1.id } } });
  const amara = patients.data!.find((p) => p.name === "Amara Diallo")!;
  // A Tuesday at least two days ahead (her series is Monday, Wednesday, Friday mornings).
  const day = new Date();
  day.setUTCDate(day.getUTCDate() + 2);
  while (day.getUTCDay() !== 2) day.setUTCDate(day.getUTCDate() + 1);
  const date = day.toISOString().slice(0, 10);
  const book = async () => {
    await page.selectOption('select[name="deviceId"]', dm1.id);
    await page.selectOption('select[name="patientId"]', amara.id);
    await page.fill('input[name="date"]', date);
    await page.fill('input[name="time"]', "13:00");
    await page.fill('input[name="duration"]', "240");
    await page.click('form[data-role="booking-form"] button[type="submit"]');
  };
  await book();
  await page.waitForSelector('[data-role="booking-message"]:has-text("Booked")', { timeout: 5_000 });
  const listed = await doctor.client.GET("/api/bookings", {
    params: { query: { patientId: amara.id, from: `${date}T00:00:00Z`, to: `${date}T23:59:59Z` } },
  });
  const made = listed.data!.items.filter((b) => b.status !== "cancelled" && b.localStart.startsWith(`${date}T13:00`));
  assert.equal(made.length, 1, JSON.stringify(listed.data));
  assert.equal(made[0]!.deviceId, dm1.id);

  await book();
  const error = page.locator('[data-role="booking-error"]');
  await error.waitFor({ state: "visible", timeout: 5_000 });
  assert.match((await error.textContent()) ?? "", /^Conflict: .*(booked|another session)/);

  // Reschedule it to 14:00 and cancel it, from the board (the week that holds it).
  const chip = page.locator(`button[data-booking="${made[0]!.id}"]`);
  for (let i = 0; i < 3 && !(await chip.isVisible()); i++) {
    await page.click('button[data-action="next"]');
    await page.waitForTimeout(500);
  }
  await chip.click();
  await page.click('button[data-action="reschedule"]');
  await page.fill('input[name="time"]', "14:00");
  await page.click('form[data-role="booking-form"] button[type="submit"]');
  await page.waitForSelector('[data-role="booking-message"]:has-text("Moved")', { timeout: 5_000 });
  await shot(page, "bookings");
  const moved = await doctor.client.GET("/api/bookings/{bookingId}", { params: { path: { bookingId: made[0]!.id } } });
  assert.ok(moved.data?.localStart.startsWith(`${date}T14:00`), JSON.stringify(moved.data));
  await page.click(`button[data-booking="${made[0]!.id}"]`);
  await page.click('button[data-action="cancel"]');
  await page.waitForSelector('[data-role="booking-message"]:has-text("Cancelled")', { timeout: 5_000 });
  const cancelled = await doctor.client.GET("/api/bookings/{bookingId}", { params: { path: { bookingId: made[0]!.id } } });
  assert.equal(cancelled.data?.status, "cancelled");
});

test("the patient and machine views", async () => {
  const page = doctorPage;
  const doctor = await api(DOCTOR);
  const patients = await doctor.client.GET("/api/patients");
  const amara = patients.data!.items.find((p) => p.name === "Amara Diallo")!;
  await page.goto(`${URL}/#/patients/${amara.id}`);
  await page.waitForSelector('[data-role="trend-chart"] .plot canvas', { timeout: 10_000 });
  await page.waitForSelector('[data-role="profile"] [data-field="diagnosis"]');
  await shot(page, "patient-session");
  // 30 days: the past treatments the simulator sent, from the hourly rollups.
  await page.click('button[data-range="30d"]');
  await page.waitForSelector('[data-role="trend-chart"] p:has-text("of 1h")', { timeout: 10_000 });
  assert.ok((await page.locator('[data-role="sessions"] tbody tr').count()) >= 5, "past sessions are listed");
  await page.waitForTimeout(500);
  await shot(page, "patient-trends");
  await page.goto(`${URL}/#/devices`);
  await page.waitForSelector('[data-role="performance-table"] tr[data-device]');
  await shot(page, "machines");
  // The same figures in a tile's detail.
  await page.goto(`${URL}/#/overview`);
  await page.click('.tile[data-serial="DM-001"] button:has-text("Machine performance")');
  await page.waitForSelector('.tile[data-serial="DM-001"] [data-role="performance"] svg.spark');
  assert.match((await page.locator('.tile[data-serial="DM-001"] [data-role="performance"]').textContent()) ?? "", /Treatments/);
});

test("the patients list shows a running treatment, not the one before it, as the dialysis", async () => {
  const page = doctorPage;
  const doctor = await api(DOCTOR);
  const patients = await doctor.client.GET("/api/patients");
  const amara = patients.data!.items.find((p) => p.name === "Amara Diallo")!;
  const sessions = await doctor.client.GET("/api/patients/{patientId}/sessions", { params: { path: { patientId: amara.id }, query: { limit: 1 } } });
  const running = sessions.data!.items[0]!;
  assert.equal(running.status, "active", "Amara is on DM-001 now");
  assert.ok(amara.lastDialysisAt, "her past treatments ended: the last dialysis is the one before");
  assert.equal(amara.treatmentStartedAt, running.startedAt);
  await page.goto(`${URL}/#/patients`);
  const cell = page.locator('table.grid tr:has(a:text-is("Amara Diallo")) td:nth-child(5)');
  await cell.waitFor();
  const shown = (await cell.textContent()) ?? "";
  const format = (iso: string) =>
    page.evaluate(
      (i) => new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }).format(new Date(i)),
      iso,
    );
  assert.equal(shown, `In treatment since ${await format(running.startedAt)}`);
  assert.ok(!shown.includes(await format(amara.lastDialysisAt!)), `not the previous treatment: ${shown}`);
  await shot(page, "patients");
});

test("right after a start, a machine's performance card shows uptime over the time its presence is known, and live ingest lag apart from the back-fill", async () => {
  const page = doctorPage;
  // Away and back: the overview is built anew, every tile's detail closed.
  await page.goto(`${URL}/#/patients`);
  await page.goto(`${URL}/#/overview`);
  const tile = page.locator('.tile[data-serial="DM-001"]');
  await tile.locator('button:has-text("Machine performance")').click();
  await tile.locator('[data-role="performance"] svg.spark').first().waitFor();
  const figure = async (label: string) => ((await tile.locator(`[data-role="performance"] dl div:has(> dt:text-is("${label}")) dd`).textContent()) ?? "").trim();
  // No presence was recorded before this run's machines connected: the days before are
  // unknown, not 0 %; since then the machine has been online.
  const uptime = await figure("Uptime");
  const pct = /^(\d+\.\d) %$/.exec(uptime);
  assert.ok(pct && Number(pct[1]) >= 90, `uptime of a machine online since its presence was recorded: ${uptime}`);
  // The past treatments the simulator back-filled are late readings, not ingest lag.
  const lag = await figure("Ingest lag p50 / p95");
  assert.match(lag, /^\d+ ms \/ \d+ ms$/, `live lag in milliseconds, not days: ${lag}`);
  const late = await figure("Late readings (back-fill)");
  const m = /^(\d+) \(up to (\d+ d \d+ h|\d+ h \d+ min) late\)$/.exec(late);
  assert.ok(m && Number(m[1]) >= 240, `at least one past treatment of 240 readings: ${late}`);
  await shot(page, "overview-performance");
  await tile.locator('button:has-text("Machine performance")').click();
});

test("an expanded tile does not stretch its neighbour on the central station", async () => {
  const page = doctorPage;
  await page.goto(`${URL}/#/patients`);
  await page.goto(`${URL}/#/overview`);
  const one = page.locator('.tile[data-serial="DM-001"]');
  const two = page.locator('.tile[data-serial="DM-002"]');
  await page.waitForFunction(() => document.querySelector<HTMLElement>('.tile[data-serial="DM-002"]')?.dataset.ts, null, { timeout: 5_000 });
  const before = (await two.boundingBox())!;
  const closed = (await one.boundingBox())!;
  assert.ok(Math.abs(closed.y - before.y) < 1, "the two tiles share a row");
  await one.locator('button:has-text("Machine performance")').click();
  await one.locator('[data-role="performance"] svg.spark').first().waitFor();
  const [open, after] = [(await one.boundingBox())!, (await two.boundingBox())!];
  assert.ok(open.height > closed.height + 100, `the tile grew with its detail: ${closed.height} → ${open.height}`);
  assert.ok(Math.abs(after.height - before.height) <= 1, `the neighbour keeps its height: ${before.height} → ${after.height}`);
  assert.ok(Math.abs(after.y - before.y) <= 1 && Math.abs(after.width - before.width) <= 1, "and its place");
  await shot(page, "overview-expanded");
  await one.locator('button:has-text("Machine performance")').click();
});

test("an admin sees the machines' state and performance, and no clinical data", async () => {
  const page = await open("admin");
  await signIn(page, "admin@demo.nephrocare.test");
  await page.waitForSelector(".tile");
  assert.equal(await page.locator(".tile").count(), 4);
  assert.equal(await page.locator(".tile .metrics, .tile .patient").count(), 0, "no readings or patients in the page");
  const nav = await page.locator("nav a").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.nav));
  assert.deepEqual(nav, ["overview", "bookings", "devices", "settings"]);
  await page.goto(`${URL}/#/devices`);
  await page.waitForSelector('[data-role="performance-table"] tr[data-device]');
});

test("an admin sets the alert manager and the unit fallback in the settings, a doctor their alarm e-mail", async () => {
  const page = await open("settings");
  await signIn(page, "admin@demo.nephrocare.test");
  await page.goto(`${URL}/#/settings`);
  const manager = page.locator('[data-role="alert-manager"]');
  await manager.locator("input[name=address]").fill("no-port");
  await manager.locator("button[type=submit]").click();
  await manager.locator(".error").waitFor();
  await manager.locator("input[name=address]").fill("127.0.0.1:2575");
  await manager.locator("input[name=receivingFacility]").fill("WARD-N");
  await manager.locator("button[type=submit]").click();
  await manager.locator('[role="status"]', { hasText: "Saved" }).waitFor();
  const fallback = page.locator('[data-role="fallback"]');
  await fallback.locator("input[name=fallbackEmail]").fill("charge@unit.example.org");
  await fallback.locator("button[type=submit]").click();
  await fallback.locator('[role="status"]', { hasText: "Saved" }).waitFor();
  await shot(page, "dashboard-settings");
  const admin = (await api("admin@demo.nephrocare.test")).client;
  const m = await admin.GET("/api/alerts/alert-manager");
  assert.equal(m.data?.address, "127.0.0.1:2575");
  assert.equal(m.data?.receivingFacility, "WARD-N");
  assert.equal((await admin.GET("/api/alerts/fallback")).data?.email, "charge@unit.example.org");
  // Undone, so the demo's alarms are not reported to an address nobody listens on.
  await manager.locator("[data-action=remove]").click();
  await manager.locator('[role="status"]', { hasText: "Removed" }).waitFor();
  await fallback.locator("input[name=fallbackEmail]").fill("");
  await fallback.locator("button[type=submit]").click();
  await fallback.locator('[role="status"]', { hasText: "Removed" }).waitFor();
  assert.equal((await admin.GET("/api/alerts/alert-manager")).response.status, 404);

  const doctor = await open("settings-doctor");
  await signIn(doctor, DOCTOR);
  await doctor.goto(`${URL}/#/settings`);
  assert.equal(await doctor.locator('[data-role="alert-manager"]').count(), 0, "admins only");
  const box = doctor.locator("input[name=alarmEmail]");
  await box.check();
  await doctor.locator('[data-role="email-preference"] [role="status"]', { hasText: "also come by e-mail" }).waitFor();
  assert.equal((await (await api(DOCTOR)).client.GET("/api/alerts/email-preference")).data?.enabled, true);
  await box.uncheck();
  await doctor.locator('[data-role="email-preference"] [role="status"]', { hasText: "no longer" }).waitFor();
});

test("a patient sees only their own treatment", async () => {
  const page = await open("patient");
  await signIn(page, PATIENT);
  await page.waitForSelector(".tile", { timeout: 10_000 });
  const patient = await api(PATIENT);
  const own = await patient.client.GET("/api/devices");
  const doctor = await api(DOCTOR);
  const all = await doctor.client.GET("/api/devices");
  const mine = own.data!.items.map((d) => d.id);
  assert.equal(mine.length, 1);
  await page.waitForFunction(() => document.querySelector<HTMLElement>(".tile")?.dataset.ts, null, { timeout: 10_000 });
  const tiles = await page.locator(".tile").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.device));
  assert.deepEqual(tiles, mine);
  for (const d of all.data!.items.filter((d) => !mine.includes(d.id))) {
    assert.equal(await page.locator(`[data-device="${d.id}"]`).count(), 0, `${d.serial} is not in the page`);
  }
  const nav = await page.locator("nav a").evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.nav));
  assert.deepEqual(nav, ["me", "alarms", "chat", "bookings"]);
  await page.waitForSelector('[data-role="trend-chart"] .plot canvas', { timeout: 10_000 });
  await shot(page, "patient-own");
});

test("a revoked session returns to sign-in with a clear message", async () => {
  const page = await open("technician");
  await signIn(page, "tech.sato@demo.nephrocare.test");
  await page.waitForSelector(".tile");
  const admin = await api("admin@demo.nephrocare.test");
  const users = await admin.client.GET("/api/users/{role}", { params: { path: { role: "technician" }, query: { q: "Sato" } } });
  const sato = users.data!.items[0]!;
  await admin.client.POST("/api/users/{userId}/deactivate", { params: { path: { userId: sato.id } } });
  try {
    await page.waitForSelector('[data-role="signin-notice"]', { timeout: 10_000 });
    assert.match((await page.locator('[data-role="signin-notice"]').textContent()) ?? "", /session has ended/);
  } finally {
    await admin.client.POST("/api/users/{userId}/activate", { params: { path: { userId: sato.id } } });
  }
  await signIn(page, "tech.sato@demo.nephrocare.test");
  await page.click('[data-action="sign-out"]');
  await page.waitForSelector('[data-role="signin-notice"]:has-text("signed out")');
});

test("the doctor's page renews its session before the token expires and stays live", async () => {
  // The service runs with 40 s access tokens (scripts/browser-test.sh): by now the page has
  // renewed its token several times and its MQTT connection has been closed at an expiry
  // and reopened with a renewed token.
  const page = doctorPage;
  const ttl = Number(process.env.NC_TOKEN_TTL_SECS ?? 40);
  const since = Date.now() - doctorSignedInAt;
  if (since < (ttl + 5) * 1000) await page.waitForTimeout((ttl + 5) * 1000 - since);
  await page.goto(`${URL}/#/overview`);
  await page.waitForFunction(() => document.querySelector<HTMLElement>('.tile[data-serial="DM-001"]')?.dataset.ts, null, { timeout: 5_000 });
  const ts = await page.locator('.tile[data-serial="DM-001"]').getAttribute("data-ts");
  await page.waitForFunction((t) => document.querySelector<HTMLElement>('.tile[data-serial="DM-001"]')?.dataset.ts !== t, ts, { timeout: 5_000 });
  assert.equal(await page.locator(".live-state").textContent(), "● Live");
  assert.equal(await page.locator("form.signin").count(), 0, "still signed in");
});

test("the API docs page runs under its Content-Security-Policy (its inline scripts allowed by hash)", async () => {
  const page = await open("docs");
  await page.goto(`${URL}/docs`);
  const title = page.locator(".swagger-ui .info .title");
  await title.waitFor({ timeout: 15_000 });
  assert.match(await title.innerText(), /Nephrocare API/);
  await shot(page, "docs");
});

test("no page logged a console error", () => {
  assert.deepEqual(problems, []);
});
