import { screen, within } from "@testing-library/react";
import { describe, expect, it, vi } from "vitest";
import { apiError, json, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { datasetFormData, UploadDataset } from "./UploadDataset";

const config = { device: "cpu", dtype: "float32", recommended_batch_size: null, settings: { max_dataset_mb: 256 } };

function jsonl(...rows: object[]): File {
  return new File([rows.map((row) => JSON.stringify(row)).join("\n")], "support.jsonl", { type: "application/jsonl" });
}

describe("datasetFormData", () => {
  it("sends the file under its own name, which tells the server its format, and the name only when set", () => {
    const data = datasetFormData({ file: jsonl({ text: "a" }), name: null });
    expect((data.get("file") as File).name).toBe("support.jsonl");
    expect(data.has("name")).toBe(false);
  });
});

describe("UploadDataset", () => {
  it("lists a refused file's faulty rows by line and field, not only the message", async () => {
    const message = "3 of 5 rows cannot be used (first: line 2: empty assistant reply: there is nothing to learn); fix them and upload again. Nothing was stored.";
    const api = mockApi({
      "GET /config": config,
      "POST /datasets": apiError(422, "invalid_dataset", message, {
        errors: [
          { line: 2, field: "messages.1.content", message: "empty assistant reply: there is nothing to learn" },
          { line: 4, field: "messages.0.role", message: "unknown role 'robot'; expected one of system, user, assistant" },
          { line: null, field: null, message: "the list is not closed with ']': is the file cut short?" },
        ],
        error_count: 23,
      }),
    });
    const { user } = renderWithProviders(<UploadDataset />);

    const upload = screen.getByRole("button", { name: "Upload" });
    expect(upload).toBeDisabled();
    await user.upload(screen.getByLabelText("Dataset file"), jsonl({ messages: [] }));
    expect(screen.getByLabelText("Name (optional)")).toHaveAttribute("placeholder", "support");
    await user.click(upload);

    expect(await screen.findByRole("alert")).toHaveTextContent(message);
    const table = screen.getByRole("table", { name: "Errors in the file" });
    const rows = within(table).getAllByRole("row").slice(1); // past the header
    expect(rows.map((row) => within(row).getAllByRole("cell").map((cell) => cell.textContent))).toEqual([
      ["2", "messages.1.content", "empty assistant reply: there is nothing to learn"],
      ["4", "messages.0.role", "unknown role 'robot'; expected one of system, user, assistant"],
      ["whole file", "—", "the list is not closed with ']': is the file cut short?"],
    ]);
    expect(screen.getByText("The first 3 of 23 faulty rows are shown.")).toBeInTheDocument();
    expect(api.calls("POST /datasets")).toHaveLength(1);

    // Choosing another file starts afresh.
    await user.upload(screen.getByLabelText("Dataset file"), jsonl({ text: "hello" }));
    expect(screen.queryByRole("table", { name: "Errors in the file" })).not.toBeInTheDocument();
  });

  it("uploads a file with its name and says how many examples were stored", async () => {
    const stored = make.dataset({ id: "ds-9", name: "support-replies", num_examples: 2 });
    const api = mockApi({
      "GET /config": config,
      "POST /datasets": () => json(stored, 201),
      "GET /datasets": { datasets: [stored] },
    });
    const onUploaded = vi.fn();
    const { user } = renderWithProviders(<UploadDataset onUploaded={onUploaded} />);

    const file = jsonl({ text: "a" }, { text: "b" });
    await user.upload(screen.getByLabelText("Dataset file"), file);
    await user.type(screen.getByLabelText("Name (optional)"), "support-replies");
    await user.click(screen.getByRole("button", { name: "Upload" }));

    expect(await screen.findByRole("status")).toHaveTextContent("Uploaded “support-replies”: 2 examples, all usable.");
    expect(onUploaded).toHaveBeenCalledWith(stored);
    const sent = await api.calls("POST /datasets")[0].request.formData();
    expect(sent.get("file")).toBeTruthy(); // (jsdom's File loses its name on the way through fetch: see below)
    expect(sent.get("name")).toBe("support-replies");
    expect(screen.getByRole("button", { name: "Upload" })).toBeDisabled(); // the form is ready for the next one
    expect(screen.getByLabelText("Name (optional)")).toHaveValue("");
  });
});
