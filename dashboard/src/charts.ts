// Trend charts (uPlot, loaded when first needed) over `GET /api/patients/{id}/health-trends`.
// Selecting a stretch with the mouse zooms in: the stretch is asked for again at a finer
// resolution, so the server's rollup tier follows the zoom.

import type uPlot from "uplot";
import { call, client, type S } from "./api";
import { fill, h } from "./dom";

export interface Series {
  metric: string;
  label: string;
  stroke: string;
}

export const BP_HR: Series[] = [
  { metric: "bloodPressure", label: "Systolic BP (mmHg)", stroke: "#c0392b" },
  { metric: "diastolicPressure", label: "Diastolic BP (mmHg)", stroke: "#e67e73" },
  { metric: "heartRate", label: "Heart rate (/min)", stroke: "#2471a3" },
];
export const MACHINE: Series[] = [
  { metric: "venousPressure", label: "Venous pressure (mmHg)", stroke: "#7d3c98" },
  { metric: "transmembranePressure", label: "TMP (mmHg)", stroke: "#117a65" },
  { metric: "flowRate", label: "Blood flow (mL/min)", stroke: "#b9770e" },
];

type Resolution = S["Resolution"];
const RESOLUTION_SECONDS: Record<Resolution, number> = { "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "1d": 86400 };

/** A resolution giving a few hundred buckets (at most about a thousand) over `seconds`. */
export function resolutionFor(seconds: number): Resolution {
  const h = seconds / 3600;
  if (h <= 5) return "1m";
  if (h <= 25) return "5m";
  if (h <= 75) return "15m";
  if (h <= 1000) return "1h";
  if (h <= 6000) return "6h";
  return "1d";
}

export class TrendChart {
  readonly el: HTMLElement;
  private plot: uPlot | null = null;
  private data: (number | null)[][] = [];
  private caption = h("p", { class: "muted small" });

  constructor(
    private patientId: string,
    private series: Series[],
    title: string,
    private onZoom: (from: Date, to: Date) => void,
  ) {
    this.el = h("figure", { class: "chart", "data-role": "trend-chart" }, h("figcaption", null, title), this.caption);
  }

  /** Loads [from, to) at the resolution that suits it. */
  async load(from: Date, to: Date): Promise<void> {
    const resolution = resolutionFor((to.getTime() - from.getTime()) / 1000);
    const t = await call("trends", () =>
      client.GET("/api/patients/{patientId}/health-trends", {
        params: {
          path: { patientId: this.patientId },
          query: { from: from.toISOString(), to: to.toISOString(), resolution, metrics: this.series.map((s) => s.metric).join(",") },
        },
      }),
    );
    // A bucket without readings is absent from the answer: a null there breaks the line
    // (between two treatments) instead of joining across the gap.
    const step = RESOLUTION_SECONDS[t.resolution];
    const xs: number[] = [];
    const ys: (number | null)[][] = this.series.map(() => []);
    for (const b of t.buckets) {
      const x = Date.parse(b.bucket) / 1000;
      const prev = xs[xs.length - 1];
      if (prev !== undefined && x - prev > 1.5 * step) {
        xs.push(prev + step);
        ys.forEach((y) => y.push(null));
      }
      xs.push(x);
      this.series.forEach((s, i) => ys[i]!.push(b.stats.find((st) => st.metric === s.metric)?.avg ?? null));
    }
    this.data = [xs, ...ys];
    this.caption.textContent = `${t.buckets.length} buckets of ${t.resolution} (${t.source}) · drag across the chart to zoom in`;
    await this.draw(from, to);
  }

  /** Adds a live reading (the session view). */
  append(ts: string, reading: Record<string, unknown>): void {
    if (!this.plot || this.data.length === 0) return;
    this.data[0]!.push(Date.parse(ts) / 1000);
    this.series.forEach((s, i) => {
      const v = reading[s.metric];
      this.data[i + 1]!.push(typeof v === "number" ? v : null);
    });
    this.plot.setData(this.data as uPlot.AlignedData);
  }

  private async draw(from: Date, to: Date): Promise<void> {
    const { default: UPlot } = await import("uplot");
    this.plot?.destroy();
    const width = Math.max(320, Math.min(1100, (this.el.parentElement?.clientWidth ?? 800) - 16));
    const opts: uPlot.Options = {
      width,
      height: 220,
      scales: { x: { time: true, min: from.getTime() / 1000, max: to.getTime() / 1000 } },
      series: [{}, ...this.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 1.5, spanGaps: false }))],
      axes: [{}, {}],
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: {
        setSelect: [
          (u: uPlot) => {
            if (u.select.width < 5) return;
            const a = u.posToVal(u.select.left, "x");
            const b = u.posToVal(u.select.left + u.select.width, "x");
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
            this.onZoom(new Date(a * 1000), new Date(b * 1000));
          },
        ],
      },
    };
    const holder = h("div", { class: "plot" });
    this.el.querySelector(".plot")?.remove();
    this.el.appendChild(holder);
    this.plot = new UPlot(opts, this.data as uPlot.AlignedData, holder);
  }

  destroy(): void {
    this.plot?.destroy();
    fill(this.el);
  }
}
