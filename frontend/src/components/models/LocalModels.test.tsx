import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { apiError, json, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { LocalModels } from "./LocalModels";

const tiny = make.localModel();
const cached = make.localModel({
  id: "org/cached",
  source: "hub-cache",
  format: "gguf",
  quantization: "Q4_K_M",
  context_length: 32768,
  num_parameters: 7_241_732_096,
  size_bytes: 4_100_000_000,
  path: "/home/me/.cache/huggingface/hub/models--org--cached",
});

describe("LocalModels", () => {
  it("lists each model with its format, parameters and size", async () => {
    mockApi({ "GET /model/local-models": make.localModels([tiny, cached]), "GET /model/current": make.current() });
    renderWithProviders(<LocalModels />);

    const region = await screen.findByRole("region", { name: "Local models" });
    const items = await within(region).findAllByRole("listitem");
    expect(items).toHaveLength(2);
    expect(within(items[0]).getByText("tiny-gpt2")).toBeInTheDocument();
    expect(within(items[0]).getByText("safetensors")).toBeInTheDocument();
    expect(within(items[0]).getByText("124M")).toBeInTheDocument();
    expect(within(items[0]).getByText("548 MB")).toBeInTheDocument();
    expect(within(items[1]).getByText("org/cached")).toBeInTheDocument();
    expect(within(items[1]).getByText("7.2B")).toBeInTheDocument();
    expect(within(items[1]).getByText("Hub cache")).toBeInTheDocument();
    expect(within(items[1]).getByText("GGUF · Q4_K_M")).toBeInTheDocument();
    expect(within(items[1]).getByText("32,768 tokens")).toBeInTheDocument();
  });

  it("says what to do when there are no local models", async () => {
    mockApi({ "GET /model/local-models": make.localModels([]), "GET /model/current": make.current() });
    renderWithProviders(<LocalModels />);

    expect(await screen.findByText("No local models yet")).toBeInTheDocument();
    expect(screen.getByText(/Download one from the Hub above, or upload a model folder or .zip below/)).toBeInTheDocument();
  });

  it("asks before deleting, and deletes only when confirmed", async () => {
    const api = mockApi({
      "GET /model/local-models": make.localModels([tiny, cached]),
      "GET /model/current": make.current(),
      "DELETE /model/local-models/tiny-gpt2": { model_id: "tiny-gpt2", path: tiny.path, freed_bytes: 548_000_000 },
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Delete tiny-gpt2" }));
    let dialog = screen.getByRole("dialog", { name: "Delete this model?" });
    expect(dialog).toHaveTextContent(tiny.path);
    await user.click(within(dialog).getByRole("button", { name: "Cancel" }));
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
    expect(api.calls("DELETE /model/local-models/tiny-gpt2")).toHaveLength(0);

    await user.click(screen.getByRole("button", { name: "Delete tiny-gpt2" }));
    dialog = screen.getByRole("dialog", { name: "Delete this model?" });
    api.route("GET /model/local-models", make.localModels([cached]));
    await user.click(within(dialog).getByRole("button", { name: "Delete" }));

    await waitFor(() => expect(screen.queryByText("tiny-gpt2")).not.toBeInTheDocument());
    expect(api.calls("DELETE /model/local-models/tiny-gpt2")).toHaveLength(1);
    expect(screen.getByRole("status")).toHaveTextContent("Deleted; 548 MB freed.");
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
  });

  it("shows why a delete was refused", async () => {
    mockApi({
      "GET /model/local-models": make.localModels([make.localModel({ loaded: true })]),
      "GET /model/current": make.current(),
      "DELETE /model/local-models/tiny-gpt2": apiError(409, "model_busy", "'tiny-gpt2' is loaded; unload it before deleting it."),
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Delete tiny-gpt2" }));
    await user.click(within(screen.getByRole("dialog")).getByRole("button", { name: "Delete" }));

    expect(await screen.findByRole("alert")).toHaveTextContent("'tiny-gpt2' is loaded; unload it before deleting it.");
  });

  it("loads a model with a load job, following its progress until it is ready", async () => {
    const api = mockApi({
      "GET /model/local-models": make.localModels([tiny, cached]),
      "GET /model/current": make.current(),
      "POST /model/load": () => json(make.loadJob({ status: "queued", progress: { completed: 0, unit: "tensors" } }), 202),
      "GET /jobs/load-1": make.loadJob(),
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Load tiny-gpt2" }));

    // The job's live state (polled here: jsdom has no EventSource), under the model it loads.
    const bar = await screen.findByRole("progressbar", { name: "Load progress for tiny-gpt2" });
    const [row] = await screen.findAllByRole("listitem");
    expect(row).toContainElement(bar);
    await waitFor(() => expect(bar).toHaveAttribute("aria-valuenow", "41"));
    expect(within(row).getByText("120 of 290 tensors")).toBeInTheDocument();
    expect(within(row).getByText(/Loading the weights into memory/)).toBeInTheDocument();
    expect(within(row).getByRole("button", { name: "Cancel load of tiny-gpt2" })).toBeInTheDocument();
    expect(within(row).getByRole("button", { name: "Load tiny-gpt2" })).toHaveAttribute("aria-busy", "true");
    expect(screen.getByRole("button", { name: "Load org/cached" })).toBeDisabled();
    const [call] = api.calls("POST /model/load");
    expect(await call.request.json()).toEqual({ model_id: "tiny-gpt2" });
    expect(api.calls("POST /model/upload")).toHaveLength(0);

    // It ends: the notice says how it went, and the models are read again (tiny-gpt2 now loaded).
    const listed = api.calls("GET /model/local-models").length;
    api.route("GET /model/local-models", make.localModels([{ ...tiny, loaded: true }, cached]));
    api.route("GET /jobs/load-1", make.loadJob({ status: "ready", progress: { completed: 290, total: 290, percent: 100, unit: "tensors" }, result: make.metadata() }));

    expect(await screen.findByRole("status", {}, { timeout: 3000 })).toHaveTextContent("Loaded on cpu as float32 in 1.2 s.");
    expect(screen.queryByRole("progressbar")).not.toBeInTheDocument();
    expect(await screen.findByText("Loaded")).toBeInTheDocument();
    expect(api.calls("GET /model/local-models").length).toBeGreaterThan(listed);
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toBeDisabled();
    expect(screen.getByRole("button", { name: "Load org/cached" })).toBeEnabled();
  });

  it("shows a failed load job's error as the API says it", async () => {
    const message = "'tiny-gpt2' needs 30.00 GB at float32; 9.50 GB available on cpu.";
    mockApi({
      "GET /model/local-models": make.localModels([tiny]),
      "GET /model/current": make.current(),
      "POST /model/load": () => json(make.loadJob({ status: "queued" }), 202),
      "GET /jobs/load-1": make.loadJob({
        status: "failed",
        resumable: true,
        error: { code: "insufficient_memory", message, details: { required_gb: 30 } },
        finished_at: "2025-01-02T10:00:03Z",
      }),
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Load tiny-gpt2" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not load the model");
    expect(alert).toHaveTextContent(message);
    expect(alert).toHaveTextContent("insufficient_memory");
    expect(screen.queryByRole("progressbar")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toBeEnabled();
    await user.click(within(alert).getByRole("button", { name: "Dismiss error" }));
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("cancels a running load", async () => {
    const running = make.loadJob();
    const api = mockApi({
      "GET /model/local-models": make.localModels([tiny]),
      "GET /model/current": make.current(),
      "POST /model/load": () => json(make.loadJob({ status: "queued" }), 202),
      "GET /jobs/load-1": running,
      "DELETE /jobs/load-1": () => {
        api.route("GET /jobs/load-1", { ...running, status: "cancelled", resumable: true });
        return { job: { ...running, status: "cancelled", resumable: true }, purged_bytes: 0 };
      },
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Load tiny-gpt2" }));
    await user.click(await screen.findByRole("button", { name: "Cancel load of tiny-gpt2" }));

    expect(await screen.findByRole("status")).toHaveTextContent("Stopped loading tiny-gpt2");
    expect(api.calls("DELETE /jobs/load-1")).toHaveLength(1);
    expect(screen.queryByRole("progressbar")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toBeEnabled();
  });

  it("follows a load started elsewhere (another tab, the API) that the server reports", async () => {
    const running = make.loadJob({ model_id: "org/cached", title: "Load org/cached" });
    mockApi({
      "GET /model/local-models": make.localModels([tiny, cached]),
      "GET /model/current": make.current({ activity: "loading", loading: "org/cached", loading_job: running }),
      "GET /jobs/load-1": running,
    });
    renderWithProviders(<LocalModels />);

    const bar = await screen.findByRole("progressbar", { name: "Load progress for org/cached" });
    const rows = screen.getAllByRole("listitem");
    expect(rows[1]).toContainElement(bar);
    expect(within(rows[1]).getByRole("button", { name: "Load org/cached" })).toHaveAttribute("aria-busy", "true");
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toBeDisabled();
  });

  it("shows a load refusal as the API says it, and disables Load while the request runs", async () => {
    let answer: (response: Response) => void = () => {};
    mockApi({
      "GET /model/local-models": make.localModels([tiny, cached]),
      "GET /model/current": make.current(),
      "POST /model/load": () => new Promise<Response>((resolve) => (answer = resolve)),
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Load tiny-gpt2" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Load org/cached" })).toBeDisabled());
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toHaveAttribute("aria-busy", "true");

    answer(apiError(409, "model_busy", "'org/big' is loading now (job j9); wait for it or cancel it, then retry."));
    expect(await screen.findByRole("alert")).toHaveTextContent("'org/big' is loading now (job j9); wait for it or cancel it, then retry.");
    expect(screen.getByRole("button", { name: "Load org/cached" })).toBeEnabled();
  });
});
