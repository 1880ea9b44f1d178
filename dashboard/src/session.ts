// The signed-in person: tokens, renewal before expiry, sign-out.
//
// Where the secrets live: the access token (15 min) only in memory. The refresh token
// (single use, rotated at every renewal) also in memory while the page lives; it is put in
// this tab's sessionStorage only while the page is being unloaded (`pagehide`) and taken
// out again (and deleted) when the page starts, so a reload stays signed in, closing the
// tab ends it, and a duplicated tab (which copies sessionStorage) cannot reuse it: two
// pages renewing with one refresh token would make the server end the whole login
// (refresh-token reuse detection). Nothing goes to localStorage except the page's
// display preferences.

import { call, client, setAuth, type S } from "./api";

const STORE_KEY = "nc.refresh";
/** Renew this long before the access token expires. */
const RENEW_AHEAD_MS = 60_000;

export interface Me {
  user: S["UserOut"];
  /** A patient's own record (patients only). */
  patientId: string | null;
}

interface Tokens {
  access: string;
  refresh: string;
  expiresAt: number;
}

let tokens: Tokens | null = null;
let me: Me | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
let renewing: Promise<boolean> | null = null;
const tokenListeners = new Set<(token: string) => void>();
let onEnded: (message: string) => void = () => {};

setAuth({ token: () => tokens?.access ?? null, renew: () => renew() });

addEventListener("pagehide", () => {
  if (tokens) sessionStorage.setItem(STORE_KEY, tokens.refresh);
});

export function current(): Me | null {
  return me;
}
export function accessToken(): string | null {
  return tokens?.access ?? null;
}
export function onTokenChange(f: (token: string) => void): () => void {
  tokenListeners.add(f);
  return () => tokenListeners.delete(f);
}
/** Called with a message when the session ends (sign-out, revocation, expiry). */
export function whenEnded(f: (message: string) => void): void {
  onEnded = f;
}

async function adopt(pair: S["TokenPair"]): Promise<void> {
  tokens = { access: pair.accessToken, refresh: pair.refreshToken, expiresAt: Date.now() + pair.expiresIn * 1000 };
  clearTimeout(timer);
  timer = setTimeout(() => void renew(), Math.max(5_000, pair.expiresIn * 1000 - RENEW_AHEAD_MS));
  for (const f of tokenListeners) f(pair.accessToken);
}

async function loadProfile(): Promise<Me> {
  const user = await call("profile", () => client.GET("/api/users/profile"));
  me = { user, patientId: user.patientId ?? null };
  return me;
}

export async function signIn(email: string, password: string): Promise<Me> {
  const r = await client.POST("/api/auth/login", { body: { email, password } });
  if (!r.data) {
    const body = r.error as { message?: string } | undefined;
    if (r.response.status === 401) throw new Error("Wrong e-mail or password, or the account is not active.");
    if (r.response.status === 429) {
      throw new Error(`Too many attempts: wait ${r.response.headers.get("Retry-After") ?? "a minute"} s and try again.`);
    }
    throw new Error(body?.message ?? `Sign-in failed (${r.response.status}).`);
  }
  await adopt(r.data);
  return loadProfile();
}

/** Resumes the session of this tab after a reload, if there is one. */
export async function resume(): Promise<Me | null> {
  const refresh = sessionStorage.getItem(STORE_KEY);
  sessionStorage.removeItem(STORE_KEY);
  if (!refresh) return null;
  const r = await client.POST("/api/auth/refresh", { body: { refreshToken: refresh } });
  if (!r.data) return null;
  await adopt(r.data);
  return loadProfile();
}

/** Renews the access token (once at a time). False when the session is over. */
export function renew(): Promise<boolean> {
  if (!tokens) return Promise.resolve(false);
  renewing ??= (async () => {
    const used = tokens?.refresh;
    try {
      for (;;) {
        if (!tokens || tokens.refresh !== used) return tokens !== null;
        let r;
        try {
          r = await client.POST("/api/auth/refresh", { body: { refreshToken: used } });
        } catch {
          // The network, not the session: retry until the access token has expired.
          if (Date.now() > (tokens?.expiresAt ?? 0)) {
            end("Your session expired while the server could not be reached. Please sign in again.");
            return false;
          }
          await new Promise((r) => setTimeout(r, 5_000));
          continue;
        }
        if (r.data) {
          await adopt(r.data);
          return true;
        }
        end(
          r.response.status === 401
            ? "Your session has ended (signed out elsewhere, revoked, or expired). Please sign in again."
            : `Your session could not be renewed (${r.response.status}). Please sign in again.`,
        );
        return false;
      }
    } finally {
      renewing = null;
    }
  })();
  return renewing;
}

/** Checks the session is still valid (e.g. after the live connection was refused). */
export async function verify(): Promise<boolean> {
  const r = await client.GET("/api/users/profile");
  if (r.response.ok) return true;
  if (r.response.status === 401) return renew();
  return true;
}

export async function signOut(): Promise<void> {
  if (tokens) {
    const refreshToken = tokens.refresh;
    await client.POST("/api/auth/logout", { body: { refreshToken } }).catch(() => undefined);
  }
  end("You are signed out.");
}

function end(message: string): void {
  clearTimeout(timer);
  tokens = null;
  me = null;
  sessionStorage.removeItem(STORE_KEY);
  onEnded(message);
}
