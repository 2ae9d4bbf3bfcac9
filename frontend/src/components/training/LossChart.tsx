// The loss curve, drawn with uPlot (MIT, ~50 kB, canvas): train loss and eval loss by step. Eval points are sparser
// (the eval runs every few steps), so both lines span the steps where they have no value. The chart is made once
// and given new data as the job's history grows, so a running job redraws without flicker; a line of text under it
// says the same in words, for screen readers and for a glance.
import { useEffect, useMemo, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import type { TrainPoint } from "../../api/queries";

const HEIGHT = 240;
const TRAIN = "#16a34a"; // brand-600
const EVAL = "#d97706"; // amber-600
const AXIS = "#71717a"; // zinc-500: readable on light and dark
const GRID = "rgba(113, 113, 122, 0.18)";

/** uPlot's columns: steps, train loss, eval loss (null where that step has none). */
export function lossSeries(history: TrainPoint[]): uPlot.AlignedData {
  return [history.map((p) => p.step), history.map((p) => p.loss ?? null), history.map((p) => p.eval_loss ?? null)];
}

function formatLoss(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : value.toPrecision(3);
}

/** "train loss 2.10 → 0.820 · eval loss 2.40 → 0.950 · 4 points to step 60" */
export function lossSummary(history: TrainPoint[]): string {
  const train = history.filter((p) => p.loss != null);
  const evals = history.filter((p) => p.eval_loss != null);
  const parts: string[] = [];
  if (train.length) parts.push(`train loss ${formatLoss(train[0].loss)} → ${formatLoss(train[train.length - 1].loss)}`);
  if (evals.length) parts.push(`eval loss ${formatLoss(evals[0].eval_loss)} → ${formatLoss(evals[evals.length - 1].eval_loss)}`);
  const last = history[history.length - 1];
  if (last) parts.push(`${history.length} ${history.length === 1 ? "point" : "points"} to step ${last.step}`);
  return parts.join(" · ");
}

function options(width: number): uPlot.Options {
  const axis = { stroke: AXIS, grid: { stroke: GRID, width: 1 }, ticks: { stroke: GRID, width: 1 } };
  return {
    width,
    height: HEIGHT,
    scales: { x: { time: false } },
    axes: [
      { ...axis, label: "step" },
      { ...axis, label: "loss", values: (_u, ticks) => ticks.map((t) => t.toPrecision(2)) },
    ],
    series: [
      { label: "step" },
      { label: "train loss", stroke: TRAIN, width: 2, spanGaps: true, points: { show: false }, value: (_u, v) => formatLoss(v) },
      {
        label: "eval loss",
        stroke: EVAL,
        width: 2,
        dash: [6, 4],
        spanGaps: true,
        points: { show: true, size: 6, stroke: EVAL, fill: EVAL },
        value: (_u, v) => formatLoss(v),
      },
    ],
    legend: { show: true },
  };
}

export function LossChart({ history, label }: { history: TrainPoint[]; label: string }) {
  const holder = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  const data = useMemo(() => lossSeries(history), [history]);
  const latest = useRef(data);
  latest.current = data;

  useEffect(() => {
    const element = holder.current;
    if (!element) return;
    const plot = new uPlot(options(element.clientWidth || 600), latest.current, element);
    chart.current = plot;
    // Follow the card's width (a narrow phone, a resized window); the height stays.
    const observer =
      typeof ResizeObserver === "undefined"
        ? null
        : new ResizeObserver(() => {
            if (element.clientWidth > 0) plot.setSize({ width: element.clientWidth, height: HEIGHT });
          });
    observer?.observe(element);
    return () => {
      observer?.disconnect();
      plot.destroy();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    chart.current?.setData(data);
  }, [data]);

  return (
    <figure aria-label={label} className="space-y-1">
      <div ref={holder} className="w-full min-w-0 text-xs text-zinc-600 dark:text-zinc-400" aria-hidden="true" />
      <figcaption className="text-xs text-zinc-600 tabular-nums dark:text-zinc-400">{lossSummary(history)}</figcaption>
    </figure>
  );
}
