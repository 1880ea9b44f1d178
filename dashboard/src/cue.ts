// The cue for a new high-priority alarm: a banner and a tone pattern (IEC 60601-1-8's high
// priority burst, simplified), which the person may mute for this page.

import type { Alert } from "./alarms";
import { fill, h } from "./dom";

let muted = false;
let audio: AudioContext | null = null;

// Browsers allow sound only after a gesture: the audio context is made on the first one.
addEventListener("pointerdown", () => {
  audio ??= new AudioContext();
});

export function isMuted(): boolean {
  return muted;
}
export function setMuted(m: boolean): void {
  muted = m;
}

function beep(): void {
  if (muted || !audio || audio.state !== "running") return;
  const t0 = audio.currentTime;
  // 3 + 2 pulses, as the high-priority burst.
  [0, 0.2, 0.4, 0.9, 1.1].forEach((at) => {
    const osc = audio!.createOscillator();
    const gain = audio!.createGain();
    osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.15, t0 + at);
    gain.gain.setValueAtTime(0, t0 + at + 0.12);
    osc.connect(gain).connect(audio!.destination);
    osc.start(t0 + at);
    osc.stop(t0 + at + 0.13);
  });
}

export function announce(banner: HTMLElement, a: Alert, deviceName: (id: string) => string): void {
  beep();
  fill(
    banner,
    h("strong", null, "New high-priority alarm: "),
    `${deviceName(a.deviceId)} — ${a.message}`,
    h("button", { type: "button", class: "small", onclick: () => banner.replaceChildren() }, "Dismiss"),
  );
  banner.className = "banner alarm-high flash";
}
