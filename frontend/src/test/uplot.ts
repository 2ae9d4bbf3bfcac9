// A stand-in for uPlot in jsdom, which has no canvas: it keeps what the chart was given, so a test can check the
// data drawn. Use it with `vi.mock("uplot", async () => ({ default: (await import("../../test/uplot")).FakePlot }))`.
import { vi } from "vitest";

export class FakePlot {
  static instances: FakePlot[] = [];
  opts: { series: Array<{ label?: string }> } & Record<string, unknown>;
  data: unknown[][];
  target: HTMLElement;
  setData = vi.fn((data: unknown[][]) => {
    this.data = data;
  });
  setSize = vi.fn();
  destroy = vi.fn();

  constructor(opts: FakePlot["opts"], data: unknown[][], target: HTMLElement) {
    this.opts = opts;
    this.data = data;
    this.target = target;
    FakePlot.instances.push(this);
  }

  /** The chart now on the page (the last one made and not destroyed). */
  static live(): FakePlot | undefined {
    return FakePlot.instances.filter((plot) => plot.destroy.mock.calls.length === 0).at(-1);
  }
}
