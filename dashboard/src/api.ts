// The REST client: openapi-fetch typed by the types openapi-typescript generates from the
// server's own OpenAPI document (`nephrocare openapi`), the same contract integrators use.
// Every call carries the access token; a 401 renews the session once and retries, and
// errors become `ApiError`s whose text is the server's own words.

import createClient from "openapi-fetch";
import type { components, paths } from "./openapi";

export type S = components["schemas"];
export type ErrorBody = S["ErrorBody"];

export const client = createClient<paths>({ baseUrl: "" });

/** What the session provides to the client (set once signed in). */
interface Auth {
  token(): string | null;
  /** Renews the access token; false when the session is over (the sign-in page is shown). */
  renew(): Promise<boolean>;
}
let auth: Auth = { token: () => null, renew: async () => false };
export function setAuth(a: Auth): void {
  auth = a;
}

client.use({
  onRequest({ request }) {
    const t = auth.token();
    if (t && !request.headers.has("Authorization")) request.headers.set("Authorization", `Bearer ${t}`);
    return request;
  },
});

const CONFLICT_WORDS: Record<string, string> = {
  device_booked: "the machine is already booked then",
  patient_booked: "the patient already has a session then",
  device_maintenance: "the machine is in maintenance then",
  device_not_bookable: "the machine cannot be booked (retired or in maintenance)",
  outside_opening_hours: "the unit is closed then",
  in_the_past: "that time has passed",
  too_far_ahead: "that is too far ahead",
  time_does_not_exist: "that local time does not exist (daylight saving change)",
};

export class ApiError extends Error {
  constructor(
    readonly what: string,
    readonly status: number,
    readonly body: ErrorBody | null,
  ) {
    super(ApiError.words(what, status, body));
  }

  get code(): string {
    return this.body?.code ?? "";
  }

  static words(what: string, status: number, body: ErrorBody | null): string {
    if (!body) return `${what}: the server answered ${status}`;
    const parts = [body.message];
    for (const f of body.fields ?? []) if (!body.message.includes(f.message)) parts.push(`${f.field}: ${f.message}`);
    const reasons = [...new Set((body.conflicts ?? []).map((c) => CONFLICT_WORDS[c.reason] ?? c.reason))];
    if (reasons.length) parts.push(`(${reasons.join("; ")})`);
    const prefix =
      status === 403 ? "Not allowed: " : status === 404 ? "Not found: " : status === 409 ? "Conflict: " : "";
    return prefix + parts.join(" ");
  }
}

type Result<T> = { data?: T; error?: unknown; response: Response };

/**
 * Runs a call; on 401 renews the session once and runs it again. Resolves with the data
 * (undefined for 204), or rejects with an ApiError.
 */
export async function call<T>(what: string, run: () => Promise<Result<T>>): Promise<T> {
  let r = await run();
  if (r.response.status === 401 && auth.token() && (await auth.renew())) r = await run();
  if (!r.response.ok) throw new ApiError(what, r.response.status, (r.error as ErrorBody | undefined) ?? null);
  return r.data as T;
}
