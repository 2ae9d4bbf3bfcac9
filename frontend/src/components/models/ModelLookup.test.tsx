import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { listJobsQueryKey } from "../../api/queries";
import { apiError, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { ModelLookup, normaliseModelId } from "./ModelLookup";

describe("ModelLookup", () => {
  it("shows what the Hub says and that the model fits, with the reason", async () => {
    const api = mockApi({
      "GET /model/info/org/tiny": make.info(),
      "GET /model/check/org/tiny": make.check(),
    });
    const { user } = renderWithProviders(<ModelLookup />);

    await user.type(screen.getByLabelText("Hugging Face model id"), "org/tiny");
    await user.click(screen.getByRole("button", { name: "Look up" }));

    expect(await screen.findByRole("heading", { name: "org/tiny" })).toBeInTheDocument();
    expect(screen.getByText("Fits")).toBeInTheDocument();
    await waitFor(() => expect(screen.getByText(make.check().reason)).toBeInTheDocument());
    expect(screen.getByText("LlamaForCausalLM (llama)")).toBeInTheDocument();
    expect(screen.getByText("135M")).toBeInTheDocument();
    expect(screen.getByText("3 · 500 MB in all")).toBeInTheDocument();
    expect(screen.getByText("Files (3)")).toBeInTheDocument();
    expect(api.calls("GET /model/info/org/tiny")).toHaveLength(1);
  });

  it("says when a model does not fit and why; Enter submits", async () => {
    const reason = "needs 28.00 GB at float16; 9.50 GB available on cpu";
    const api = mockApi({
      "GET /model/info/org/huge": make.info({
        model_id: "org/huge",
        memory: { fits: false, reason, available_gb: 9.5, required_gb: 28, device: "cpu", dtype: "float16" },
      }),
      "GET /model/check/org/huge": apiError(502, "hub_unreachable", "The Hub did not answer."),
      "POST /model/download": () => apiError(507, "insufficient_memory", "'org/huge' needs 28.00 GB."),
    });
    const { user } = renderWithProviders(<ModelLookup />);

    await user.type(screen.getByLabelText("Hugging Face model id"), "org/huge{Enter}");

    expect(await screen.findByText("Does not fit")).toBeInTheDocument();
    expect(screen.getByText(reason)).toBeInTheDocument();
    // The check failed on its own: said so, with the API's message, while the info still shows.
    expect(await screen.findByRole("alert")).toHaveTextContent("The Hub did not answer.");
    // Loading would be refused: offer to override the check, and send it.
    const ignore = screen.getByLabelText("Ignore the fit check");
    expect(ignore).not.toBeChecked();
    await user.click(ignore);
    await user.click(screen.getByRole("button", { name: "Download" }));
    await waitFor(() => expect(api.calls("POST /model/download")).toHaveLength(1));
    expect(await api.calls("POST /model/download")[0].request.json()).toEqual({ model_id: "org/huge", load: true, force: true });
  });

  it("asks which file of a GGUF repo to fetch, then checks and downloads that one", async () => {
    const files = [
      { path: "README.md", size: 100 },
      { path: "tiny-q4_k_m.gguf", size: 80_000_000 },
      { path: "tiny-q8_0.gguf", size: 140_000_000 },
    ];
    const api = mockApi({
      "GET /model/info/org/tiny-GGUF": make.info({ model_id: "org/tiny-GGUF", weight_format: "gguf", files }),
      "GET /model/check/org/tiny-GGUF": make.check({ model_id: "org/tiny-GGUF", gguf_file: "tiny-q8_0.gguf" }),
      "POST /model/download": make.job({ model_id: "org/tiny-GGUF" }),
    });
    const { user } = renderWithProviders(<ModelLookup />);

    await user.type(screen.getByLabelText("Hugging Face model id"), "org/tiny-GGUF{Enter}");
    const choice = await screen.findByLabelText("GGUF file");
    expect(within(choice).getAllByRole("option").map((o) => o.textContent)).toEqual([
      "Choose a quantization…",
      "tiny-q4_k_m.gguf · 80.0 MB",
      "tiny-q8_0.gguf · 140 MB",
    ]);
    // nothing is checked or downloaded until a file is chosen
    expect(screen.getByRole("button", { name: "Download" })).toBeDisabled();
    expect(api.calls("GET /model/check/org/tiny-GGUF")).toHaveLength(0);

    await user.selectOptions(choice, "tiny-q8_0.gguf");
    await waitFor(() => expect(api.calls("GET /model/check/org/tiny-GGUF")).toHaveLength(1));
    expect(new URL(api.calls("GET /model/check/org/tiny-GGUF")[0].request.url).searchParams.get("gguf_file")).toBe(
      "tiny-q8_0.gguf",
    );
    await user.click(screen.getByRole("button", { name: "Download" }));
    await waitFor(() => expect(api.calls("POST /model/download")).toHaveLength(1));
    expect(await api.calls("POST /model/download")[0].request.json()).toEqual({
      model_id: "org/tiny-GGUF",
      load: true,
      force: false,
      gguf_file: "tiny-q8_0.gguf",
    });
  });

  it("hides a result once the box names another model", async () => {
    mockApi({ "GET /model/info/org/tiny": make.info(), "GET /model/check/org/tiny": make.check() });
    const { user } = renderWithProviders(<ModelLookup />);
    const input = screen.getByLabelText("Hugging Face model id");

    await user.type(input, "org/tiny{Enter}");
    expect(await screen.findByRole("heading", { name: "org/tiny" })).toBeInTheDocument();
    await user.type(input, "2");
    expect(screen.queryByRole("heading", { name: "org/tiny" })).not.toBeInTheDocument();
    await user.type(input, "{Backspace}");
    expect(screen.getByRole("heading", { name: "org/tiny" })).toBeInTheDocument();
  });

  it("shows the API's error message, not [object Object]", async () => {
    const message = "Cannot reach the Hugging Face Hub at https://huggingface.co: check the connection.";
    mockApi({
      "GET /model/info/nope": apiError(502, "hub_unreachable", message),
      "GET /model/check/nope": apiError(502, "hub_unreachable", message),
    });
    const { user } = renderWithProviders(<ModelLookup />);

    await user.type(screen.getByLabelText("Hugging Face model id"), "nope");
    await user.click(screen.getByRole("button", { name: "Look up" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(message);
    expect(alert).toHaveTextContent("hub_unreachable");
    expect(alert).not.toHaveTextContent("[object Object]");
  });

  it("starts a download with the load choice and reports a refusal", async () => {
    const api = mockApi({
      "POST /model/download": () => apiError(507, "insufficient_disk", "'org/tiny' needs 0.50 GB more on disk."),
    });
    const { user } = renderWithProviders(<ModelLookup />);

    const download = screen.getByRole("button", { name: "Download" });
    expect(download).toBeDisabled();
    await user.type(screen.getByLabelText("Hugging Face model id"), "org/tiny");
    const load = screen.getByLabelText("Load when downloaded");
    expect(load).toBeChecked();
    await user.click(load);
    await user.click(download);

    const alert = await screen.findByRole("alert");
    expect(within(alert).getByText("'org/tiny' needs 0.50 GB more on disk.")).toBeInTheDocument();
    const [call] = api.calls("POST /model/download");
    expect(await call.request.json()).toEqual({ model_id: "org/tiny", load: false, force: false });
  });

  it("puts a started download in the jobs cache", async () => {
    const started = make.job({ status: "queued", progress: {} });
    mockApi({ "POST /model/download": () => new Response(JSON.stringify(started), { status: 202, headers: { "Content-Type": "application/json" } }) });
    const { user, queryClient } = renderWithProviders(<ModelLookup />);

    await user.type(screen.getByLabelText("Hugging Face model id"), "https://huggingface.co/org/tiny");
    await user.click(screen.getByRole("button", { name: "Download" }));

    await waitFor(() => expect(queryClient.getQueryData(listJobsQueryKey())).toEqual({ jobs: [started] }));
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
  });
});

describe("normaliseModelId", () => {
  it("accepts an id or the model page's address", () => {
    expect(normaliseModelId("  gpt2 ")).toBe("gpt2");
    expect(normaliseModelId("https://huggingface.co/Qwen/Qwen2.5-0.5B/tree/main")).toBe("Qwen/Qwen2.5-0.5B");
    expect(normaliseModelId("https://huggingface.co/org/name/")).toBe("org/name");
  });
});
