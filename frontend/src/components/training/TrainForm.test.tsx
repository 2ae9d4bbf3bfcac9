import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { TrainRequest } from "../../api/queries";
import { apiError, json, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { TrainForm } from "./TrainForm";
import { buildRequest, emptyFields, parseNumber } from "./trainForm";

const config = {
  device: "cpu",
  dtype: "float32",
  recommended_batch_size: null,
  settings: { train_epochs: 3, train_learning_rate: 0.0002, train_batch_size: null, lora_r: 8, train_max_seq_length: 512 },
};
const loaded = make.current({ loaded: true, metadata: make.metadata({ model_id: "tiny-llama" }) });

function api(routes: Parameters<typeof mockApi>[0] = {}) {
  return mockApi({
    "GET /config": config,
    "GET /datasets": { datasets: [make.dataset()] },
    "GET /model/local-models": make.localModels([make.localModel({ id: "tiny-llama", loaded: true }), make.localModel({ id: "tiny-base" })]),
    "GET /model/current": loaded,
    "POST /training/plan": make.plan(),
    ...routes,
  });
}

async function body(call: { request: Request }): Promise<TrainRequest> {
  return (await call.request.json()) as TrainRequest;
}

describe("buildRequest", () => {
  it("sends only what is set, and refuses what the API would", () => {
    const fields = { ...emptyFields(), dataset_id: "ds-1", learning_rate: "1e-2", lora_r: "16", lora_dropout: "0" };
    expect(buildRequest(fields).request).toEqual({ dataset_id: "ds-1", learning_rate: 0.01, lora: { r: 16, dropout: 0 } });
    expect(parseNumber("epochs", "2.5").error).toBe("Enter a whole number from 1 to 1000, or leave it empty.");
    expect(parseNumber("learning_rate", "0").error).toBe("Enter a number, above 0 and at most 1, or leave it empty.");
    expect(parseNumber("lora_dropout", "1").error).toBe("Enter a number, at least 0 and below 1, or leave it empty.");
    expect(parseNumber("validation_split", "0.5")).toEqual({ value: 0.5, error: null });
    expect(buildRequest({ ...fields, seed: "-1" }).request).toBeNull();
  });
});

describe("TrainForm", () => {
  it("shows the plan's verdict for the loaded model before anything starts: fits, why, memory by part, steps", async () => {
    const server = api({
      "POST /training/plan": make.plan({ loaded_model_gb: 0.5 }),
    });
    const { user } = renderWithProviders(<TrainForm />);

    const plan = await screen.findByRole("region", { name: "Plan" }, { timeout: 3000 });
    expect(within(plan).getByText("Fits")).toBeInTheDocument();
    expect(within(plan).getByText(make.plan().reason)).toBeInTheDocument();
    const meter = within(plan).getByRole("meter", { name: "Memory the run needs" });
    expect(meter).toHaveAttribute(
      "aria-valuetext",
      "0.77 GB of 9.50 GB free: runtime 0.75 GB, weights 4.8 MB, adapter 0.1 MB, gradients 0.1 MB, optimizer 0.2 MB, activations 15 MB",
    );
    expect(within(plan).getByText(/The chat model stays loaded while it trains \(0\.50 GB\)/)).toBeInTheDocument();
    expect(within(plan).getByText("8 · 16 is the largest that fits")).toBeInTheDocument();
    expect(within(plan).getByText("38 to train on · 10 held out · 0 dropped")).toBeInTheDocument();
    expect(within(plan).getByText("150")).toBeInTheDocument();
    expect(await body(server.calls("POST /training/plan")[0])).toEqual({ dataset_id: "ds-1" }); // the rest: defaults

    // Defaults show as placeholders; a change asks for a new plan once the form rests.
    expect(screen.getByLabelText("Epochs")).toHaveAttribute("placeholder", "default (3)");
    expect(screen.getByLabelText("Batch size")).toHaveAttribute("placeholder", "the plan's choice");
    expect(screen.getByLabelText("Model")).toHaveDisplayValue("The loaded model (tiny-llama)");
    await user.selectOptions(screen.getByLabelText("Model"), "tiny-base");
    await user.type(screen.getByLabelText("Epochs"), "30");
    await user.type(screen.getByLabelText("LoRA rank (r)"), "16");
    await waitFor(() => expect(server.calls("POST /training/plan")).toHaveLength(2), { timeout: 3000 });
    expect(await body(server.calls("POST /training/plan")[1])).toEqual({ dataset_id: "ds-1", model_id: "tiny-base", epochs: 30, lora: { r: 16 } });
  });

  it("says when a run does not fit, and after the server's 507 offers Start anyway, which sends force", async () => {
    const tooBig = make.plan({
      fits: false,
      memory: { ...make.plan().memory, activations_gb: 30, total_gb: 30.77 },
      reason: "needs about 30.77 GB on cpu (float32 weights, batch 64 of up to 512 tokens); 9.50 GB free. Lower batch_size (batch 16 fits) or max_seq_length, or unload the model",
    });
    const message = `This run ${tooBig.reason}; or pass force=true to try anyway.`;
    const started = make.trainJob({ status: "queued", progress: { unit: "steps", completed: 0, total: 150 }, history: [] });
    const server = api({
      "POST /training/plan": tooBig,
      "POST /training/jobs": async (request) =>
        ((await request.clone().json()) as TrainRequest).force
          ? json(started, 202)
          : apiError(507, "insufficient_memory", message, { plan: tooBig }),
    });
    const { user } = renderWithProviders(<TrainForm />);

    const plan = await screen.findByRole("region", { name: "Plan" }, { timeout: 3000 });
    expect(within(plan).getByText("Does not fit")).toBeInTheDocument();
    expect(within(plan).getByText(tooBig.reason)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Start anyway" })).not.toBeInTheDocument();

    await user.type(screen.getByLabelText("Batch size"), "64");
    await user.click(screen.getByRole("button", { name: "Start training" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("This run does not fit in memory");
    expect(alert).toHaveTextContent(message);
    expect(await body(server.calls("POST /training/jobs")[0])).toEqual({ dataset_id: "ds-1", batch_size: 64 });

    await user.click(screen.getByRole("button", { name: "Start anyway" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Started “codes-adapter”: follow it under Training runs.");
    expect(await body(server.calls("POST /training/jobs")[1])).toEqual({ dataset_id: "ds-1", batch_size: 64, force: true });
    expect(screen.queryByRole("button", { name: "Start anyway" })).not.toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });

  it("asks for no plan while a field is wrong or there is no model to train", async () => {
    const server = api({ "GET /model/current": make.current() });
    const { user } = renderWithProviders(<TrainForm />);

    expect(
      await screen.findByText("No model is loaded: pick one under Model, or load one on the Models page."),
    ).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Start training" })).toBeDisabled();

    await user.selectOptions(screen.getByLabelText("Model"), "tiny-base");
    await user.type(screen.getByLabelText("Learning rate"), "fast");
    expect(screen.getByLabelText("Learning rate")).toHaveAccessibleDescription("Enter a number, above 0 and at most 1, or leave it empty.");
    expect(screen.getByText("Fix the fields marked above to see the plan.")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Start training" })).toBeDisabled();
    await new Promise((resolve) => setTimeout(resolve, 600)); // past the plan's pause
    expect(server.calls("POST /training/plan")).toHaveLength(0);
  });

  it("sends people to upload a dataset when there is none", async () => {
    api({ "GET /datasets": { datasets: [] } });
    renderWithProviders(<TrainForm />);
    expect(await screen.findByText("No datasets yet")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Upload a dataset" })).toHaveAttribute("href", "/datasets");
  });
});
