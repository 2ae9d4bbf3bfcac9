import { screen } from "@testing-library/react";
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
