import { screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { LoadedPill } from "./App";
import { mockApi, renderWithProviders } from "./test/api";
import * as make from "./test/factories";

describe("LoadedPill", () => {
  it("names the loaded model and its device", async () => {
    mockApi({ "GET /model/current": make.current({ loaded: true, metadata: make.metadata() }) });
    renderWithProviders(<LoadedPill />);
    expect(await screen.findByRole("link", { name: "Current model: tiny-gpt2 · cpu" })).toHaveAttribute("href", "/current");
  });

  it("says what is loading while a load job prepares, before the cache's slot is taken", async () => {
    const job = make.loadJob({ model_id: "org/big", status: "preparing" });
    mockApi({ "GET /model/current": make.current({ activity: "loading", loading_job: job }) });
    renderWithProviders(<LoadedPill />);
    expect(await screen.findByRole("link", { name: "Current model: Loading org/big…" })).toBeInTheDocument();
  });

  it("says the model is busy generating", async () => {
    mockApi({
      "GET /model/current": make.current({ loaded: true, metadata: make.metadata(), activity: "generating", generations: 2 }),
    });
    renderWithProviders(<LoadedPill />);
    expect(await screen.findByRole("link", { name: "Current model: tiny-gpt2 · generating" })).toBeInTheDocument();
  });

  it("names the adapter chat answers through", async () => {
    mockApi({
      "GET /model/current": make.current({
        loaded: true,
        metadata: make.metadata({ model_id: "tiny-llama", adapter: { id: "train-1", name: "codes-adapter" } }),
      }),
    });
    renderWithProviders(<LoadedPill />);
    expect(await screen.findByRole("link", { name: "Current model: tiny-llama + codes-adapter · cpu" })).toBeInTheDocument();
  });
});
