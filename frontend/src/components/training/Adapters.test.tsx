import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { AttachAdapterRequest } from "../../api/queries";
import { apiError, json, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { Adapters } from "./Adapters";

const tinyLlama = make.current({ loaded: true, metadata: make.metadata({ model_id: "tiny-llama" }) });
const withAdapter = make.current({
  loaded: true,
  metadata: make.metadata({ model_id: "tiny-llama", adapter: { id: "train-1", name: "codes-adapter" } }),
});

function api(routes: Parameters<typeof mockApi>[0] = {}) {
  return mockApi({
    "GET /adapters": { adapters: [make.adapter()] },
    "GET /model/current": tinyLlama,
    "GET /jobs": { jobs: [] },
    ...routes,
  });
}

describe("Adapters", () => {
  it("lists each adapter with its base model, dataset, losses, steps, size and date", async () => {
    api();
    renderWithProviders(<Adapters />);

    const row = await screen.findByRole("listitem", { name: "codes-adapter" });
    const facts = Object.fromEntries(within(row).getAllByRole("term").map((term) => [term.textContent, term.nextElementSibling?.textContent]));
    expect(facts).toMatchObject({
      "Base model": "tiny-llama",
      Dataset: "codes",
      "Train loss": "0.0500",
      "Eval loss": "0.120",
      Steps: "150",
      Size: "410 kB",
    });
    expect(within(row).getByRole("button", { name: "Use codes-adapter in chat" })).toBeInTheDocument();
  });

  it("shows why the server refused to put an adapter on the model, and offers no override where there is none", async () => {
    const message = "Adapter 'codes-adapter' was trained on 'tiny-llama', but 'tiny-gpt2' is loaded; load 'tiny-llama' first.";
    const server = api({
      "GET /model/current": make.current({ loaded: true, metadata: make.metadata() }), // tiny-gpt2
      "POST /model/adapter": apiError(409, "model_not_loaded", message, { adapter_id: "train-1", base_model_id: "tiny-llama", loaded: "tiny-gpt2" }),
    });
    const { user } = renderWithProviders(<Adapters />);

    const row = await screen.findByRole("listitem", { name: "codes-adapter" });
    expect(row).toHaveTextContent("To use it in chat, load tiny-llama first (tiny-gpt2 is loaded).");
    await user.click(within(row).getByRole("button", { name: "Use codes-adapter in chat" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not use “codes-adapter” in chat");
    expect(alert).toHaveTextContent(message);
    expect(alert).toHaveTextContent("model_not_loaded");
    expect(screen.queryByRole("button", { name: "Use anyway" })).not.toBeInTheDocument();
    expect(await server.calls("POST /model/adapter")[0].request.json()).toEqual({ adapter_id: "train-1" });
  });

  it("offers Use anyway when only the chat template differs, and sends force", async () => {
    const message =
      "Adapter 'codes-adapter' was trained with a different chat template than 'tiny-llama' has now: its answers would not match its training. Pass force=true to attach it anyway.";
    const server = api({
      "POST /model/adapter": async (request) =>
        ((await request.clone().json()) as AttachAdapterRequest).force
          ? json(withAdapter.metadata)
          : apiError(409, "chat_template_mismatch", message, { adapter_id: "train-1" }),
    });
    const { user } = renderWithProviders(<Adapters />);

    await user.click(await screen.findByRole("button", { name: "Use codes-adapter in chat" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(message);
    server.route("GET /model/current", withAdapter);
    await user.click(screen.getByRole("button", { name: "Use anyway" }));

    expect(await screen.findByRole("status")).toHaveTextContent("“codes-adapter” is on tiny-llama: chat and the API answer through it.");
    expect(await server.calls("POST /model/adapter")[1].request.json()).toEqual({ adapter_id: "train-1", force: true });
    const row = screen.getByRole("listitem", { name: "codes-adapter" });
    expect(await within(row).findByText("In chat")).toBeInTheDocument();
    expect(within(row).getByRole("button", { name: "Take codes-adapter off the model" })).toBeInTheDocument();
  });

  it("says generations are in the way without offering an override", async () => {
    api({
      "POST /model/adapter": apiError(409, "model_busy", "2 generation(s) are running on 'tiny-llama'; stop them or wait for them to finish, then retry.", {
        model_id: "tiny-llama",
        generations: 2,
      }),
    });
    const { user } = renderWithProviders(<Adapters />);

    await user.click(await screen.findByRole("button", { name: "Use codes-adapter in chat" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("2 generation(s) are running");
    expect(screen.queryByRole("button", { name: "Use anyway" })).not.toBeInTheDocument();
  });

  it("takes an attached adapter off", async () => {
    const server = api({ "GET /model/current": withAdapter, "DELETE /model/adapter": make.metadata({ model_id: "tiny-llama" }) });
    const { user } = renderWithProviders(<Adapters />);

    const takeOff = await screen.findByRole("button", { name: "Take codes-adapter off the model" });
    server.route("GET /model/current", tinyLlama);
    await user.click(takeOff);
    expect(await screen.findByRole("status")).toHaveTextContent("Taken off: tiny-llama answers on its own again.");
    expect(await screen.findByRole("button", { name: "Use codes-adapter in chat" })).toBeInTheDocument();
  });

  it("merges an adapter into a new model and follows the merge job", async () => {
    const merging = make.mergeJob();
    const server = api({
      "POST /adapters/train-1/merge": () => json(merging, 202),
      "GET /jobs/merge-1": { ...merging, status: "ready", result: "tiny-llama-codes", finished_at: "2025-01-02T10:06:00Z" },
    });
    const { user } = renderWithProviders(<Adapters />);

    await user.click(await screen.findByRole("button", { name: "Merge codes-adapter into a new model" }));
    const name = screen.getByLabelText("New model name");
    expect(name).toHaveValue("tiny-llama-codes-adapter");
    await user.clear(name);
    await user.type(name, "tiny-llama-codes");
    await user.click(screen.getByRole("button", { name: "Start merge" }));

    expect(await screen.findByText(/Merged into “tiny-llama-codes”: it is under/)).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Local models" })).toHaveAttribute("href", "/models");
    expect(await server.calls("POST /adapters/train-1/merge")[0].request.json()).toEqual({ name: "tiny-llama-codes" });
  });

  it("deletes an adapter after asking, and shows the server's refusal while it is on the model", async () => {
    const message = "Adapter 'codes-adapter' is on the loaded model; take it off first (DELETE /model/adapter).";
    const server = api({ "DELETE /adapters/train-1": apiError(409, "model_busy", message, { adapter_id: "train-1" }) });
    const { user } = renderWithProviders(<Adapters />);

    await user.click(await screen.findByRole("button", { name: "Delete codes-adapter" }));
    await user.click(within(screen.getByRole("dialog", { name: "Delete this adapter?" })).getByRole("button", { name: "Delete" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not delete the adapter");
    expect(alert).toHaveTextContent(message);
    expect(screen.queryByRole("button", { name: "Use anyway" })).not.toBeInTheDocument();

    server.route("DELETE /adapters/train-1", { id: "train-1", freed_bytes: 410_000 });
    server.route("GET /adapters", { adapters: [] });
    await user.click(screen.getByRole("button", { name: "Delete codes-adapter" }));
    await user.click(within(screen.getByRole("dialog", { name: "Delete this adapter?" })).getByRole("button", { name: "Delete" }));
    expect(await screen.findByText("Deleted; 410 kB freed.")).toBeInTheDocument();
    expect(await screen.findByText("No adapters yet")).toBeInTheDocument();
  });
});
