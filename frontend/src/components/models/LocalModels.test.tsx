import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { apiError, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { LocalModels } from "./LocalModels";

const tiny = make.localModel();
const cached = make.localModel({
  id: "org/cached",
  source: "hub-cache",
  format: "gguf",
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

  it("loads a model with the seed's form, POST /model/upload?model_path=<id>", async () => {
    const api = mockApi({
      "GET /model/local-models": make.localModels([tiny]),
      "GET /model/current": make.current(),
      "POST /model/upload": { status: "loaded", message: "Loaded tiny-gpt2 on cpu as float32 in 1.23s.", metadata: make.metadata() },
    });
    const { user } = renderWithProviders(<LocalModels />);

    const load = await screen.findByRole("button", { name: "Load tiny-gpt2" });
    expect(screen.queryByText("Loaded")).not.toBeInTheDocument();
    api.route("GET /model/local-models", make.localModels([{ ...tiny, loaded: true }]));
    await user.click(load);

    expect(await screen.findByText("Loaded")).toBeInTheDocument();
    const [call] = api.calls("POST /model/upload");
    expect(call.url.searchParams.get("model_path")).toBe("tiny-gpt2");
    expect(screen.getByRole("status")).toHaveTextContent("Loaded on cpu as float32 in 1.2 s.");
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toBeDisabled();
  });

  it("shows a load refusal as the API says it, and disables Load while a load runs", async () => {
    let answer: (response: Response) => void = () => {};
    mockApi({
      "GET /model/local-models": make.localModels([tiny, cached]),
      "GET /model/current": make.current(),
      "POST /model/upload": () => new Promise<Response>((resolve) => (answer = resolve)),
    });
    const { user } = renderWithProviders(<LocalModels />);

    await user.click(await screen.findByRole("button", { name: "Load tiny-gpt2" }));
    await waitFor(() => expect(screen.getByRole("button", { name: "Load org/cached" })).toBeDisabled());
    expect(screen.getByRole("button", { name: "Load tiny-gpt2" })).toHaveAttribute("aria-busy", "true");

    answer(apiError(507, "insufficient_memory", "'tiny-gpt2' needs 30.00 GB at float32; 9.50 GB available on cpu."));
    expect(await screen.findByRole("alert")).toHaveTextContent("'tiny-gpt2' needs 30.00 GB at float32; 9.50 GB available on cpu.");
    expect(screen.getByRole("button", { name: "Load org/cached" })).toBeEnabled();
  });
});
