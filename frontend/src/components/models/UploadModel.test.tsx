import { screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { apiError, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { relativePath, selectionFrom, uploadFormData } from "./upload";
import { UploadModel } from "./UploadModel";

/** A file as a folder picker gives it: webkitRelativePath holds its path inside the folder. */
function fileIn(path: string, content = "x"): File {
  const file = new File([content], path.split("/").pop()!);
  Object.defineProperty(file, "webkitRelativePath", { value: path });
  return file;
}

const config = { device: "cpu", dtype: "float32", recommended_batch_size: null, settings: { max_upload_gb: 20 } };

describe("upload body", () => {
  it("names every file by its path in the folder and leaves hidden files out", () => {
    const selection = selectionFrom("folder", [
      fileIn("my-model/config.json", "{}"),
      fileIn("my-model/model.safetensors", "weights"),
      fileIn("my-model/.git/HEAD"),
      fileIn("my-model/.DS_Store"),
    ])!;
    expect(selection.name).toBe("my-model");
    expect(selection.skipped).toBe(2);
    expect(selection.bytes).toBe(9);

    const data = uploadFormData({ files: selection.files, name: "renamed" });
    expect((data.getAll("files") as File[]).map((file) => file.name)).toEqual(["my-model/config.json", "my-model/model.safetensors"]);
    expect(data.get("name")).toBe("renamed");
  });

  it("sends a zip under its own name", () => {
    const zip = new File(["PK"], "my-model.zip", { type: "application/zip" });
    expect(relativePath(zip)).toBe("my-model.zip");
    expect(selectionFrom("zip", [zip])).toMatchObject({ kind: "zip", name: "my-model", files: [zip] });
    expect(selectionFrom("folder", [])).toBeNull();
  });
});

describe("UploadModel", () => {
  it("uploads a chosen folder and says where it went", async () => {
    const api = mockApi({
      "GET /config": config,
      "POST /model/upload": () =>
        new Response(JSON.stringify({ model: make.localModel({ id: "my-model" }), loaded: null }), {
          status: 201,
          headers: { "Content-Type": "application/json" },
        }),
      "GET /model/local-models": make.localModels([]),
    });
    const { user } = renderWithProviders(<UploadModel />);

    const upload = screen.getByRole("button", { name: "Upload" });
    expect(upload).toBeDisabled();
    const folder = screen.getByLabelText("Model folder");
    expect(folder).toHaveAttribute("webkitdirectory");
    await user.upload(folder, [fileIn("my-model/config.json", "{}"), fileIn("my-model/model.safetensors", "weights")]);
    expect(screen.getByText(/2 files from “my-model”, 9 B/)).toBeInTheDocument();
    await user.click(upload);

    expect(await screen.findByRole("status")).toHaveTextContent("Uploaded: it is now under Local models.");
    const [call] = api.calls("POST /model/upload");
    expect(call.url.searchParams.get("load")).toBe("false");
    expect(call.url.searchParams.has("model_path")).toBe(false);
    const sent = await call.request.formData();
    expect(sent.getAll("files")).toHaveLength(2);
    expect(upload).toBeDisabled();
  });

  it("uploads a .zip, loading it when asked, and shows a refusal as the API says it", async () => {
    const message = "The upload is not a complete model: no config.json.";
    const api = mockApi({
      "GET /config": config,
      "POST /model/upload": apiError(422, "invalid_model", message),
    });
    const { user } = renderWithProviders(<UploadModel />);

    await user.upload(screen.getByLabelText("Model .zip"), new File(["PK"], "broken.zip", { type: "application/zip" }));
    await user.click(screen.getByLabelText("Load after upload"));
    await user.click(screen.getByRole("button", { name: "Upload" }));

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(message);
    expect(alert).not.toHaveTextContent("[object Object]");
    await waitFor(() => expect(api.calls("POST /model/upload")).toHaveLength(1));
    expect(api.calls("POST /model/upload")[0].url.searchParams.get("load")).toBe("true");
    // The choice stays, so the person can fix it and retry.
    expect(screen.getByRole("button", { name: "Upload" })).toBeEnabled();
  });
});
