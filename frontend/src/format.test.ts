import { describe, expect, it } from "vitest";
import { formatBytes, formatDuration, formatGb, formatParams } from "./format";

describe("format", () => {
  it("writes bytes in decimal units", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1_500_000)).toBe("1.5 MB");
    expect(formatBytes(14_200_000_000)).toBe("14.2 GB");
    expect(formatBytes(250_000_000_000)).toBe("250 GB");
    expect(formatBytes(null)).toBe("—");
  });
  it("writes parameter counts the way model cards do", () => {
    expect(formatParams(124_439_808)).toBe("124M");
    expect(formatParams(7_241_732_096)).toBe("7.2B");
    expect(formatParams(53_000)).toBe("53.0K");
  });
  it("writes durations and small GB figures", () => {
    expect(formatDuration(0.2)).toBe("<1 s");
    expect(formatDuration(75)).toBe("1 min 15 s");
    expect(formatGb(0.004)).toBe("4.0 MB");
    expect(formatGb(3.456)).toBe("3.46 GB");
  });
});
