// Display preferences of this browser (not secrets): kept in localStorage.

const KEY = "nc.prefs";

export interface Prefs {
  /** A tile's readings are greyed when older than this (seconds). */
  staleAfterSeconds: number;
}

const defaults: Prefs = { staleAfterSeconds: 10 };

export function prefs(): Prefs {
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) ?? "{}") as Partial<Prefs>;
    const stale = Number(stored.staleAfterSeconds);
    return { staleAfterSeconds: Number.isFinite(stale) && stale >= 2 && stale <= 3600 ? stale : defaults.staleAfterSeconds };
  } catch {
    return defaults;
  }
}

export function setPrefs(p: Partial<Prefs>): void {
  localStorage.setItem(KEY, JSON.stringify({ ...prefs(), ...p }));
}
