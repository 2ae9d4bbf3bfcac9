import { screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { apiError, mockApi, renderWithProviders } from "../test/api";
import * as make from "../test/factories";
import { CurrentModelPage } from "./CurrentModelPage";

describe("CurrentModelPage", () => {
  it("shows the loaded model, its memory, and unloads it", async () => {
    const api = mockApi({
      "GET /model/current": make.current({ loaded: true, metadata: make.metadata() }),
      "POST /model/unload": { status: "unloaded", message: "Unloaded tiny-gpt2.", model_id: "tiny-gpt2", freed_gb: 0.5 },
    });
    const { user } = renderWithProviders(<CurrentModelPage />);

    expect(screen.getByRole("heading", { level: 1, name: "Current model" })).toBeInTheDocument();
    expect(await screen.findByRole("heading", { name: "tiny-gpt2" })).toBeInTheDocument();
    expect(screen.getByText("GPT2LMHeadModel")).toBeInTheDocument();
    expect(screen.getByText("124M")).toBeInTheDocument();
    expect(screen.getByText("float32")).toBeInTheDocument();
    expect(screen.getByText("1,024 tokens")).toBeInTheDocument();
    expect(screen.getByText("Yes")).toBeInTheDocument(); // chat template
    expect(screen.getByText("1.2 s")).toBeInTheDocument();
    expect(screen.getByText("Local folder")).toBeInTheDocument();
    expect(screen.getByText("/home/me/.orchard/models/tiny-gpt2")).toBeInTheDocument();
    const meter = screen.getByRole("meter", { name: "System memory" });
    expect(meter).toHaveAttribute("aria-valuetext", expect.stringContaining("model 0.50 GB"));

    api.route("GET /model/current", make.current());
    await user.click(screen.getByRole("button", { name: "Unload" }));

    expect(await screen.findByText("No model loaded")).toBeInTheDocument();
    expect(api.calls("POST /model/unload")).toHaveLength(1);
    expect(screen.getByRole("status")).toHaveTextContent("Unloaded; 0.50 GB given back.");
    expect(screen.queryByRole("button", { name: "Unload" })).not.toBeInTheDocument();
  });

  it("shows the adapter on the model, and takes it off", async () => {
    const plain = make.metadata({ model_id: "tiny-llama" });
    const api = mockApi({
      "GET /model/current": make.current({ loaded: true, metadata: { ...plain, adapter: { id: "train-1", name: "codes-adapter" } } }),
      "DELETE /model/adapter": plain,
    });
    const { user } = renderWithProviders(<CurrentModelPage />);

    const adapter = await screen.findByText("codes-adapter");
    expect(adapter.closest("dd")).toHaveTextContent("codes-adapter chat answers through it");
    api.route("GET /model/current", make.current({ loaded: true, metadata: plain }));
    await user.click(screen.getByRole("button", { name: "Take codes-adapter off the model" }));

    expect(await screen.findByRole("status")).toHaveTextContent("Adapter taken off: tiny-llama answers on its own again.");
    expect(api.calls("DELETE /model/adapter")).toHaveLength(1);
    expect(await screen.findByText("none")).toBeInTheDocument();
  });

  it("says nothing is loaded and links to the models page", async () => {
    mockApi({ "GET /model/current": make.current() });
    renderWithProviders(<CurrentModelPage />);

    expect(await screen.findByText("No model loaded")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Load or download one on the Models page" })).toHaveAttribute("href", "/models");
    expect(screen.getByRole("meter", { name: "System memory" })).toBeInTheDocument();
  });

  it("shows a load in progress", async () => {
    mockApi({ "GET /model/current": make.current({ loading: "org/big" }) });
    renderWithProviders(<CurrentModelPage />);

    const model = await screen.findByText("org/big");
    expect(model.closest("[role=status]")).toHaveTextContent("Loading org/big… this page updates when it is ready.");
    expect(screen.queryByText("No model loaded")).not.toBeInTheDocument();
  });

  it("shows what is loading with the load job's progress, followed live, until the model is current", async () => {
    const loading = make.loadJob({ model_id: "org/big" });
    const api = mockApi({
      "GET /model/current": make.current({ activity: "loading", loading: "org/big", loading_job: loading }),
      // The job's own endpoint is ahead of the snapshot in /model/current.
      "GET /jobs/load-1": make.loadJob({ model_id: "org/big", progress: { completed: 200, total: 290, percent: 68.97, unit: "tensors" } }),
    });
    renderWithProviders(<CurrentModelPage />);

    const bar = await screen.findByRole("progressbar", { name: "Load progress for org/big" });
    await waitFor(() => expect(bar).toHaveAttribute("aria-valuenow", "69"));
    expect(screen.getByText("200 of 290 tensors")).toBeInTheDocument();
    expect(screen.getByText(/Loading the weights into memory/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Cancel load of org/big" })).toBeInTheDocument();
    expect(screen.getByText("org/big").closest("[role=status]")).toHaveTextContent("Loading org/big…");

    // It ends: the page reads the current model again and shows it.
    api.route("GET /jobs/load-1", make.loadJob({ model_id: "org/big", status: "ready", result: make.metadata({ model_id: "org/big" }) }));
    api.route("GET /model/current", make.current({ loaded: true, metadata: make.metadata({ model_id: "org/big" }) }));
    expect(await screen.findByRole("heading", { name: "org/big" }, { timeout: 3000 })).toBeInTheDocument();
    expect(screen.queryByRole("progressbar", { name: "Load progress for org/big" })).not.toBeInTheDocument();
    expect(screen.queryByText(/this page updates when it is ready/)).not.toBeInTheDocument();
  });

  it("shows a download's loading phase with the download's own bar", async () => {
    const downloading = make.job({ status: "loading", progress: { completed: 1e9, total: 1e9, percent: 100, unit: "bytes" } });
    mockApi({
      "GET /model/current": make.current({ activity: "loading", loading: "org/tiny", loading_job: downloading }),
      "GET /jobs/job-1": downloading,
    });
    renderWithProviders(<CurrentModelPage />);

    expect(await screen.findByRole("progressbar", { name: "Download progress for org/tiny" })).toBeInTheDocument();
    expect(screen.getByText(/Loading the model into memory/)).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Cancel download of org/tiny" })).toBeInTheDocument();
  });

  it("says when chat replies are being generated, and follows them closely", async () => {
    const api = mockApi({
      "GET /model/current": make.current({ loaded: true, metadata: make.metadata(), activity: "generating", generations: 2 }),
    });
    renderWithProviders(<CurrentModelPage />);

    expect(await screen.findByText("Generating: 2 chat replies running")).toBeInTheDocument();
    expect(screen.getByRole("heading", { name: "tiny-gpt2" })).toBeInTheDocument();
    // Polled every second while it generates (every five when idle): the count changes as replies finish.
    api.route("GET /model/current", make.current({ loaded: true, metadata: make.metadata(), activity: "generating", generations: 1 }));
    expect(await screen.findByText("Generating: 1 chat reply running", {}, { timeout: 3000 })).toBeInTheDocument();
    api.route("GET /model/current", make.current({ loaded: true, metadata: make.metadata() }));
    await waitFor(() => expect(screen.queryByText(/^Generating/)).not.toBeInTheDocument(), { timeout: 3000 });
  });

  it("shows the API's error", async () => {
    mockApi({
      "GET /model/current": make.current({ loaded: true, metadata: make.metadata() }),
      "POST /model/unload": apiError(409, "model_busy", "A generation is running; try again when it ends."),
    });
    const { user } = renderWithProviders(<CurrentModelPage />);

    await user.click(await screen.findByRole("button", { name: "Unload" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("A generation is running; try again when it ends.");
    expect(screen.getByRole("heading", { name: "tiny-gpt2" })).toBeInTheDocument();
  });
});
