import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { mockApi, renderWithProviders } from "../test/api";
import * as make from "../test/factories";
import { DatasetsPage } from "./DatasetsPage";

const config = { device: "cpu", dtype: "float32", recommended_batch_size: null, settings: { train_max_seq_length: 512 } };
const loaded = make.current({ loaded: true, metadata: make.metadata({ model_id: "tiny-llama" }) });

describe("DatasetsPage", () => {
  it("shows the newest dataset's statistics, its token-length histogram and its rows with the trained spans marked", async () => {
    const api = mockApi({
      "GET /config": config,
      "GET /model/current": loaded,
      "GET /datasets": { datasets: [make.dataset(), make.dataset({ id: "ds-0", name: "older" })] },
      "GET /datasets/ds-1": make.datasetDetail(),
      "GET /datasets/ds-1/preview": make.preview(),
    });
    const { user } = renderWithProviders(<DatasetsPage />);

    const detail = await screen.findByRole("region", { name: "codes" });
    expect(await within(detail).findByText("Chat (messages)")).toBeInTheDocument();
    expect(within(detail).getByText("codes.jsonl · 9.6 kB")).toBeInTheDocument();
    expect(within(detail).getByText(/1 row repeats an earlier one/)).toBeInTheDocument();

    const histogram = within(detail).getByRole("list", { name: "Token length histogram" });
    expect(within(histogram).getAllByRole("listitem").map((bin) => bin.getAttribute("aria-label"))).toEqual([
      "20–79 tokens: 40 rows",
      "80–299 tokens: 6 rows",
      "300–600 tokens: 2 rows, partly over max_seq_length",
    ]);
    expect(within(detail).getByText("2 rows are longer than 512 tokens: training keeps 46.")).toBeInTheDocument();
    expect(within(detail).getByText("Rows over max_seq_length are dropped from training, not truncated.")).toBeInTheDocument();

    // The preview: the assistant's turn is marked as trained on, the prompt is not; a legend says which is which.
    const row = await within(detail).findByRole("listitem", { name: "Row 1" });
    const marks = row.querySelectorAll("mark");
    expect([...marks].map((mark) => mark.textContent)).toEqual(["The code for apple is elppa.</s>\n"]);
    expect(row).toHaveTextContent("What is the code for apple?");
    expect(within(detail).getByRole("list", { name: "Legend" })).toHaveTextContent("trained on");
    expect(within(detail).getByText("Rows 1–1 of 48")).toBeInTheDocument();

    // A max_seq_length of one's own asks the server again.
    await user.type(within(detail).getByLabelText("Max sequence length"), "64");
    await waitFor(() =>
      expect(api.calls("GET /datasets/ds-1").some((call) => call.url.searchParams.get("max_seq_length") === "64")).toBe(true),
    );
  });

  it("says why there are no token statistics without a model, and asks for no preview", async () => {
    const api = mockApi({
      "GET /config": config,
      "GET /model/current": make.current(),
      "GET /datasets": { datasets: [make.dataset()] },
      "GET /datasets/ds-1": make.datasetDetail({
        statistics: { ...make.datasetDetail().statistics, tokens: null, tokens_reason: "Token statistics need the model's tokenizer." },
      }),
    });
    renderWithProviders(<DatasetsPage />);

    expect(await screen.findByText(/Token statistics need the model's tokenizer\./)).toBeInTheDocument();
    expect(screen.getByText(/The preview renders rows with the model's chat template/)).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "load one on the Models page" })).toHaveAttribute("href", "/models");
    expect(api.calls("GET /datasets/ds-1/preview")).toHaveLength(0);
  });

  it("deletes a dataset after asking", async () => {
    const api = mockApi({
      "GET /config": config,
      "GET /model/current": make.current(),
      "GET /datasets": { datasets: [make.dataset()] },
      "GET /datasets/ds-1": make.datasetDetail(),
      "DELETE /datasets/ds-1": { id: "ds-1", freed_bytes: 9_600, status: "deleted" },
    });
    const { user } = renderWithProviders(<DatasetsPage />);

    await user.click(await screen.findByRole("button", { name: "Delete codes" }));
    const dialog = screen.getByRole("dialog", { name: "Delete this dataset?" });
    expect(api.calls("DELETE /datasets/ds-1")).toHaveLength(0);
    api.route("GET /datasets", { datasets: [] });
    await user.click(within(dialog).getByRole("button", { name: "Delete" }));

    expect(await screen.findByText("Deleted; 9.6 kB freed.")).toBeInTheDocument();
    expect(api.calls("DELETE /datasets/ds-1")).toHaveLength(1);
    expect(await screen.findByText("No datasets yet")).toBeInTheDocument();
  });
});
