import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { mockApi, renderWithProviders } from "../test/api";
import * as make from "../test/factories";
import { ModelsPage } from "./ModelsPage";

describe("ModelsPage", () => {
  it("puts lookup, jobs, local models and upload on one page, from the API's state", async () => {
    mockApi({
      "GET /jobs": { jobs: [make.loadJob(), make.job()] },
      "GET /jobs/job-1": make.job(),
      "GET /jobs/load-1": make.loadJob(),
      "GET /model/local-models": make.localModels([make.localModel()]),
      "GET /model/current": make.current(),
      "GET /config": { device: "cpu", dtype: "float32", recommended_batch_size: null, settings: {} },
    });
    renderWithProviders(<ModelsPage />, { route: "/models" });

    expect(screen.getByRole("heading", { level: 1, name: "Models" })).toBeInTheDocument();
    expect(screen.getByLabelText("Hugging Face model id")).toBeInTheDocument();
    expect(screen.getByLabelText("Load when downloaded")).toBeChecked();
    const jobs = await screen.findByRole("region", { name: "Jobs" });
    expect(await within(jobs).findByRole("progressbar", { name: "Download progress for org/tiny" })).toBeInTheDocument();
    expect(within(jobs).getByRole("progressbar", { name: "Load progress for tiny-gpt2" })).toBeInTheDocument();
    const local = screen.getByRole("region", { name: "Local models" });
    expect(await within(local).findByText("tiny-gpt2")).toBeInTheDocument();
    expect(screen.getByLabelText("Model folder")).toBeInTheDocument();
    expect(screen.getByLabelText("Model .zip")).toBeInTheDocument();
  });
});
