import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import type { ExportInfo, ExportJob, ExportOptions } from "../api/queries";
import { JobCard } from "../components/models/JobCard";
import { apiError, json, mockApi, renderWithProviders } from "../test/api";
import * as make from "../test/factories";
import { ExportJobCard, ExportPage } from "./ExportPage";

const K_REASON =
  "is a K-quant, which only llama.cpp's quantizer writes, and it is not installed here: install Orchard's llama.cpp part.";

const options: ExportOptions = {
  model_id: "tiny-llama",
  adapter_id: null,
  architecture: "LlamaForCausalLM",
  supported: true,
  reason: null,
  num_parameters: 127_296,
  context_length: 256,
  supported_architectures: ["GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"],
  quantizations: [
    { name: "f16", expected_bytes: 1_254_592, available: true, reason: null, check: "largest logit difference at most 0.01 of the largest logit" },
    { name: "q8_0", expected_bytes: 1_135_252, available: true, reason: null, check: "the same most likely next token at 90% of positions or more" },
    { name: "q4_k_m", expected_bytes: 1_077_968, available: false, reason: `q4_k_m ${K_REASON}`, check: "the same most likely next token at 85% of positions or more" },
    { name: "q2_k", expected_bytes: 1_040_000, available: false, reason: `q2_k ${K_REASON}`, check: "the same most likely next token at 50% of positions or more" },
  ],
};

const check = {
  engine: "llama.cpp" as const,
  probes: 4,
  positions: 98,
  tokenizer_match: true,
  mismatched_probes: [],
  max_abs_diff: 0.11,
  max_relative_diff: 0.011,
  top1_agreement: 1,
  bound: "the same most likely next token at 90% of positions or more",
  passed: true,
};

const finished: ExportInfo = {
  id: "e1",
  name: "tiny-llama-q8_0",
  file_name: "tiny-llama-q8_0.gguf",
  path: "/home/me/.orchard/outputs/exports/e1/tiny-llama-q8_0.gguf",
  size_bytes: 1_300_000,
  sha256: "0123456789abcdef".repeat(4),
  quantization: "q8_0",
  model_id: "tiny-llama",
  adapter_id: null,
  architecture: "LlamaForCausalLM",
  context_length: 256,
  num_parameters: 127_296,
  tensor_types: { Q8_0: 16, F32: 5 },
  check,
  modelfile: 'FROM ./tiny-llama-q8_0.gguf\nPARAMETER stop "</s>"\nPARAMETER num_ctx 256\n',
  seconds: 12,
  write_seconds: 1,
  check_seconds: 2,
  created_at: "2025-01-02T11:00:00Z",
};

/** An export job, writing tensors (12 of 21). */
function exportJob(overrides: Partial<ExportJob> = {}): ExportJob & { kind: "export" } {
  return {
    id: "exp-1",
    title: "Export tiny-llama to GGUF (q8_0)",
    model_id: "tiny-llama",
    adapter_id: null,
    quantization: "q8_0",
    name: "tiny-llama-q8_0",
    status: "exporting",
    phases: ["queued", "preparing", "merging", "exporting", "verifying"],
    spec: {
      job_id: "exp-1",
      model_id: "tiny-llama",
      model_path: "/home/me/.orchard/models/tiny-llama",
      name: "tiny-llama-q8_0",
      quantization: "q8_0",
      staging_dir: "/home/me/.orchard/outputs/exports/.tmp-exp-1",
    },
    progress: { completed: 12, total: 21, unit: "tensors", percent: 57.1 },
    resumable: false,
    created_at: "2025-01-02T10:59:00Z",
    updated_at: "2025-01-02T10:59:05Z",
    ...overrides,
    kind: "export",
  };
}

function routes(extra: Record<string, unknown> = {}) {
  return {
    "GET /model/current": make.current({ loaded: true, metadata: make.metadata({ model_id: "tiny-llama" }) }),
    "GET /model/local-models": make.localModels([
      make.localModel({ id: "tiny-llama" }),
      make.localModel({ id: "tiny-llama-gguf", format: "gguf", quantization: "Q8_0" }),
    ]),
    "GET /adapters": { adapters: [make.adapter()] },
    "GET /export/gguf/options": options,
    "GET /jobs": { jobs: [] },
    "GET /exports": { exports: [finished] },
    ...extra,
  };
}

describe("ExportPage", () => {
  it("shows what the chosen model is, each type's size and check, and the K-quants that are not available with why", async () => {
    mockApi(routes());
    renderWithProviders(<ExportPage />);

    const verdict = await screen.findByRole("group", { name: "Export verdict" });
    expect(within(verdict).getByText("Can be exported")).toBeInTheDocument();
    expect(within(verdict).getByText("LlamaForCausalLM")).toBeInTheDocument();
    expect(within(verdict).getByText("127K")).toBeInTheDocument();
    expect(within(verdict).getByText("256 tokens")).toBeInTheDocument();

    const type = screen.getByLabelText("Weight type");
    const choices = within(type)
      .getAllByRole("option")
      .map((option) => [option.textContent, (option as HTMLOptionElement).disabled]);
    expect(choices).toEqual([
      ["f16 · about 1.3 MB", false],
      ["q8_0 · about 1.1 MB", false],
      ["q4_k_m · about 1.1 MB · not available here", true],
      ["q2_k · about 1.0 MB · not available here", true],
    ]);
    expect(type).toHaveValue("q8_0");
    expect(screen.getByText("Must pass: the same most likely next token at 90% of positions or more.")).toBeInTheDocument();

    const table = screen.getByRole("table", { name: "Weight types" });
    const rows = within(table).getAllByRole("row").slice(1);
    expect(rows[0]).toHaveTextContent("f16");
    expect(rows[0]).toHaveTextContent("largest logit difference at most 0.01 of the largest logit");
    expect(rows[2]).toHaveTextContent("Not available here");
    expect(rows[2]).toHaveAttribute("title", `q4_k_m ${K_REASON}`);
    // The shared reason, said once.
    expect(screen.getByText(`Not available here: q4_k_m, q2_k. Each ${K_REASON}`)).toBeInTheDocument();
  });

  it("offers the loaded model, the local models that are not GGUF, and the adapters; asks about the chosen one", async () => {
    const api = mockApi(routes());
    const { user } = renderWithProviders(<ExportPage />);
    await screen.findByText("Can be exported");

    const picker = screen.getByLabelText("Model");
    await waitFor(() =>
      expect(within(picker).getAllByRole("option").map((option) => option.textContent)).toEqual([
        "The loaded model (tiny-llama)",
        "tiny-llama",
        "tiny-llama + adapter codes-adapter (merged)",
      ]),
    );
    await user.selectOptions(picker, "adapter:train-1");
    await waitFor(() =>
      expect(api.calls("GET /export/gguf/options").some((call) => call.url.searchParams.get("adapter_id") === "train-1")).toBe(true),
    );
  });

  it("says why a model cannot be exported, and offers no start", async () => {
    mockApi(
      routes({
        "GET /export/gguf/options": {
          ...options,
          architecture: "FalconForCausalLM",
          supported: false,
          reason: "Exporting 'FalconForCausalLM' models to GGUF is not supported.",
        },
      }),
    );
    renderWithProviders(<ExportPage />);
    const verdict = await screen.findByRole("group", { name: "Export verdict" });
    expect(within(verdict).getByText("Cannot be exported")).toBeInTheDocument();
    expect(within(verdict).getByText("Exporting 'FalconForCausalLM' models to GGUF is not supported.")).toBeInTheDocument();
    expect(within(verdict).getByText("GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Start export" })).not.toBeInTheDocument();
  });

  it("says to load or pick a model when none is loaded", async () => {
    mockApi(
      routes({
        "GET /model/current": make.current(),
        "GET /export/gguf/options": apiError(409, "model_not_loaded", "Pass model_id (or adapter_id), or load the model to export first."),
      }),
    );
    renderWithProviders(<ExportPage />);
    expect(await screen.findByText("No model is loaded")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "load one on the Models page" })).toHaveAttribute("href", "/models");
    expect(screen.queryByRole("button", { name: "Start export" })).not.toBeInTheDocument();
  });

  it("starts an export of the chosen model, type and name, and lists its job at once", async () => {
    const started = exportJob({ status: "queued", progress: { unit: "tensors" }, name: "mine" });
    let posted = false;
    const api = mockApi(
      routes({
        "POST /export/gguf": () => {
          posted = true;
          return json(started, 202);
        },
        "GET /jobs": () => ({ jobs: posted ? [started] : [] }),
        "GET /jobs/exp-1": started,
      }),
    );
    const { user } = renderWithProviders(<ExportPage />);
    await screen.findByText("Can be exported");
    await user.selectOptions(screen.getByLabelText("Model"), "model:tiny-llama");
    await user.selectOptions(screen.getByLabelText("Weight type"), "f16");
    await user.type(screen.getByLabelText("File name (optional)"), "mine");
    await user.click(screen.getByRole("button", { name: "Start export" }));

    await waitFor(() => expect(api.calls("POST /export/gguf")).toHaveLength(1));
    expect(await api.calls("POST /export/gguf")[0].request.json()).toEqual({ model_id: "tiny-llama", quantization: "f16", name: "mine" });
    expect(await screen.findByRole("article", { name: "Export tiny-llama to GGUF (q8_0)" })).toBeInTheDocument();
    expect(screen.getByText("Started “mine”: follow it under Export jobs.")).toBeInTheDocument();
  });

  it("refuses a K-quant with the server's reason", async () => {
    mockApi(
      routes({
        "GET /export/gguf/options": { ...options, quantizations: options.quantizations.map((q) => ({ ...q, available: true })) },
        "POST /export/gguf": apiError(400, "invalid_request", `q4_k_m ${K_REASON}`),
      }),
    );
    const { user } = renderWithProviders(<ExportPage />);
    await screen.findByText("Can be exported");
    await user.selectOptions(screen.getByLabelText("Weight type"), "q4_k_m");
    await user.click(screen.getByRole("button", { name: "Start export" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Could not start the export");
    expect(alert).toHaveTextContent(`q4_k_m ${K_REASON}`);
  });

  it("lists a finished export: size, sha256, its check figures, the download link and its Modelfile", async () => {
    mockApi(routes());
    const { user } = renderWithProviders(<ExportPage />);
    const row = await screen.findByRole("listitem", { name: "tiny-llama-q8_0" });

    expect(within(row).getByText("tiny-llama-q8_0.gguf")).toBeInTheDocument();
    expect(within(row).getByText("1.3 MB")).toBeInTheDocument();
    expect(within(row).getByText("0123456789ab…")).toHaveAttribute("title", finished.sha256);
    const figures = within(row).getByRole("group", { name: "Check of tiny-llama-q8_0" });
    expect(within(figures).getByText("Passed")).toBeInTheDocument();
    expect(within(figures).getByText("llama.cpp")).toBeInTheDocument();
    expect(within(figures).getByText("1.10e-2 (largest 0.110)")).toBeInTheDocument();
    expect(within(figures).getByText("100.0% of 98 positions")).toBeInTheDocument();
    expect(within(figures).getByText("matches (same ids on 4 probes)")).toBeInTheDocument();

    const link = within(row).getByRole("link", { name: "Download tiny-llama-q8_0.gguf" });
    expect(link).toHaveAttribute("href", "/exports/e1/file");
    expect(link).toHaveAttribute("download", "tiny-llama-q8_0.gguf");

    await user.click(within(row).getByRole("button", { name: "Modelfile of tiny-llama-q8_0" }));
    expect(within(row).getByLabelText("Modelfile for tiny-llama-q8_0")).toHaveTextContent("FROM ./tiny-llama-q8_0.gguf");
    expect(within(row).getByText("ollama create tiny-llama-q8_0 -f Modelfile")).toBeInTheDocument();
  });

  it("deletes an export once confirmed", async () => {
    const api = mockApi(routes({ "DELETE /exports/e1": { id: "e1", freed_bytes: 1_300_000 } }));
    const { user } = renderWithProviders(<ExportPage />);
    const row = await screen.findByRole("listitem", { name: "tiny-llama-q8_0" });
    await user.click(within(row).getByRole("button", { name: "Delete tiny-llama-q8_0" }));
    await user.click(await screen.findByRole("button", { name: "Delete" }));
    await waitFor(() => expect(api.calls("DELETE /exports/e1")).toHaveLength(1));
    expect(await screen.findByText("Deleted; 1.3 MB freed.")).toBeInTheDocument();
  });

  it("lists the export jobs, running ones followed live", async () => {
    const running = exportJob();
    const done = exportJob({ id: "exp-0", title: "Export tiny-llama to GGUF (f16)", status: "ready", result: finished });
    mockApi(routes({ "GET /jobs": { jobs: [done, running] }, "GET /jobs/exp-1": running }));
    renderWithProviders(<ExportPage />);
    const jobs = await screen.findAllByRole("article");
    expect(jobs.map((job) => job.getAttribute("aria-label"))).toEqual([
      "Export tiny-llama to GGUF (q8_0)",
      "Export tiny-llama to GGUF (f16)",
    ]);
    expect(within(jobs[1]).getByText(/Ready: tiny-llama-q8_0.gguf \(1.3 MB\)/)).toBeInTheDocument();
  });
});

describe("ExportJobCard", () => {
  it("shows a running export's phase and tensors written, and cancels it", async () => {
    const running = exportJob();
    const api = mockApi({ "DELETE /jobs/exp-1": { job: { ...running, status: "cancelled", resumable: true }, purged_bytes: 0 } });
    const { user } = renderWithProviders(<ExportJobCard job={running} />);

    const card = screen.getByRole("article", { name: "Export tiny-llama to GGUF (q8_0)" });
    expect(within(card).getByText("Exporting")).toBeInTheDocument();
    expect(within(card).getByRole("progressbar", { name: "Export progress for tiny-llama-q8_0" })).toHaveAttribute("aria-valuenow", "57");
    expect(within(card).getByText("12 of 21 tensors written")).toBeInTheDocument();
    expect(within(card).getByText("Writing the GGUF file.")).toBeInTheDocument();
    await user.click(within(card).getByRole("button", { name: "Cancel export of tiny-llama-q8_0" }));
    expect(api.calls("DELETE /jobs/exp-1")).toHaveLength(1);
  });

  it("shows a failed check's message and figures, and resumes it", async () => {
    const failed = exportJob({
      status: "failed",
      resumable: true,
      error: {
        code: "export_check_failed",
        message: "The q4_0 file answers too differently from the model: top-1 agreement 0.62, needs 0.85.",
        details: { ...check, top1_agreement: 0.62, max_relative_diff: 0.21, max_abs_diff: 2.1, passed: false, tokenizer_match: false, mismatched_probes: [2] },
      },
    });
    const api = mockApi({ "POST /jobs/exp-1/resume": () => json({ ...failed, status: "queued", error: null, resumable: false }, 202) });
    const { user } = renderWithProviders(<ExportJobCard job={failed} />);

    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("The export failed");
    expect(alert).toHaveTextContent("top-1 agreement 0.62, needs 0.85");
    expect(alert).toHaveTextContent("export_check_failed");
    const figures = screen.getByRole("group", { name: "Check of tiny-llama-q8_0" });
    expect(within(figures).getByText("Failed")).toBeInTheDocument();
    expect(within(figures).getByText("62.0% of 98 positions")).toBeInTheDocument();
    expect(within(figures).getByText("2.10e-1 (largest 2.10)")).toBeInTheDocument();
    expect(within(figures).getByText("differs on probe 2")).toBeInTheDocument();

    await user.click(screen.getByRole("button", { name: "Resume export of tiny-llama-q8_0" }));
    expect(api.calls("POST /jobs/exp-1/resume")).toHaveLength(1);
  });

  it("renders in the Jobs list's card too, in tensors", () => {
    renderWithProviders(<JobCard job={exportJob({ status: "verifying", progress: { completed: 21, total: 21, unit: "tensors", percent: 100 } })} />);
    const card = screen.getByRole("article", { name: "Export tiny-llama to GGUF (q8_0)" });
    expect(within(card).getByText("Verifying")).toBeInTheDocument();
    expect(within(card).getByText("21 of 21 tensors")).toBeInTheDocument();
    expect(within(card).getByText("Reading the file back and comparing its answers with the model's.")).toBeInTheDocument();
  });
});
