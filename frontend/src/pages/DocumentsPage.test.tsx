import { screen, waitFor, within } from "@testing-library/react";
import { useLocation } from "react-router";
import { describe, expect, it, vi } from "vitest";
import type { CollectionInfo, DocumentInfo, EvalResponse, IngestFile, IngestJob, QueryHit } from "../api/queries";
import { apiError, json, mockApi, renderWithProviders } from "../test/api";
import { DocumentsPage } from "./DocumentsPage";

function collection(overrides: Partial<CollectionInfo> = {}): CollectionInfo {
  return {
    id: "col-1",
    name: "Manuals",
    embedding_model: "all-MiniLM-L6-v2",
    embedding_dim: 384,
    chunk_size: 256,
    chunk_overlap: 32,
    documents: 0,
    chunks: 0,
    store: "sqlite-vec",
    created_at: "2025-01-02T10:00:00Z",
    ...overrides,
  };
}

function doc(overrides: Partial<DocumentInfo> = {}): DocumentInfo {
  return {
    id: "doc-1",
    collection_id: "col-1",
    filename: "note.md",
    kind: "md",
    size_bytes: 1_200,
    sha256: "ab".repeat(32),
    pages: null,
    chunks: 4,
    created_at: "2025-01-02T10:05:00Z",
    ...overrides,
  };
}

function ingestJob(overrides: Partial<IngestJob> = {}): IngestJob & { kind: "ingest" } {
  return {
    id: "ing-1",
    title: "Add 3 files to Manuals",
    collection_id: "col-1",
    collection_name: "Manuals",
    status: "ready",
    files: [],
    progress: { completed: 3, total: 3, unit: "documents", percent: 100 },
    result: null,
    resumable: false,
    created_at: "2025-01-02T10:04:00Z",
    updated_at: "2025-01-02T10:05:00Z",
    finished_at: "2025-01-02T10:05:00Z",
    ...overrides,
    kind: "ingest",
  };
}

function hit(overrides: Partial<QueryHit> = {}): QueryHit {
  return {
    rank: 1,
    score: 12.34567,
    chunk_id: "ch-1",
    document_id: "doc-1",
    filename: "manual.pdf",
    text: "The Zorblat-7 reactor is cooled by heavy water.",
    page: 3,
    heading: "Cooling",
    start: 0,
    end: 47,
    ...overrides,
  };
}

const FILES: IngestFile[] = [
  { filename: "note.md", size_bytes: 120, status: "added", document_id: "doc-1", chunks: 2, pages: null, error: null },
  { filename: "manual.pdf", size_bytes: 9_000, status: "added", document_id: "doc-2", chunks: 12, pages: 3, error: null },
  { filename: "copy.md", size_bytes: 120, status: "duplicate", document_id: "doc-1", chunks: null, pages: null, error: null },
  {
    filename: "broken.pdf",
    size_bytes: 19,
    status: "failed",
    document_id: null,
    error: { code: "unreadable_document", message: "'broken.pdf' could not be read as a PDF; it is damaged or not a PDF (EOF marker not found)." },
  },
];

/** The page's routes for one collection whose documents and jobs a test can change as it runs. */
function stage(state: { collections?: CollectionInfo[]; documents?: DocumentInfo[]; jobs?: IngestJob[] } = {}) {
  const now = { collections: [collection()], documents: [] as DocumentInfo[], jobs: [] as IngestJob[], ...state };
  const routes = {
    "GET /rag/collections": () => ({ collections: now.collections }),
    "GET /rag/collections/col-1/documents": () => ({ documents: now.documents }),
    "GET /jobs": () => ({ jobs: now.jobs }),
  };
  return { now, routes };
}

function Where() {
  return <output aria-label="Location">{useLocation().search}</output>;
}

function renderPage(route = "/documents") {
  return renderWithProviders(
    <>
      <DocumentsPage />
      <Where />
    </>,
    { route },
  );
}

describe("DocumentsPage", () => {
  it("explains collections when there are none, creates one by name and opens it, kept in the URL", async () => {
    const { now, routes } = stage({ collections: [] });
    const api = mockApi({
      ...routes,
      "POST /rag/collections": async (request) => {
        const created = collection({ id: "col-1", name: ((await request.json()) as { name: string }).name });
        now.collections = [created];
        return json(created, 201);
      },
    });
    const { user } = renderPage();

    expect(await screen.findByText("No collections yet")).toBeInTheDocument();
    expect(screen.getByText(/A collection is a set of documents/)).toBeInTheDocument();
    await user.type(screen.getByLabelText("Collection name"), "  Manuals ");
    await user.click(screen.getByRole("button", { name: "Create collection" }));

    await waitFor(() => expect(api.calls("POST /rag/collections")).toHaveLength(1));
    expect(await api.calls("POST /rag/collections")[0].request.json()).toEqual({ name: "Manuals" });
    expect(await screen.findByRole("button", { name: "Open Manuals" })).toHaveAttribute("aria-pressed", "true");
    // (the router applies a navigation as a transition, so it may land a render after the list)
    await waitFor(() => expect(screen.getByLabelText("Location")).toHaveTextContent("?c=col-1"));
    expect(screen.getByRole("region", { name: "Manuals" })).toHaveTextContent("all-MiniLM-L6-v2 (384 dims)");
    expect(await screen.findByText("No documents in this collection yet")).toBeInTheDocument();
    expect(screen.getByLabelText("Collection name")).toHaveValue("");
  });

  it("opens the collection the URL names", async () => {
    const { routes } = stage({ collections: [collection(), collection({ id: "col-2", name: "Notes" })] });
    mockApi({ ...routes, "GET /rag/collections/col-2/documents": { documents: [] } });
    renderPage("/documents?c=col-2");
    expect(await screen.findByRole("button", { name: "Open Notes" })).toHaveAttribute("aria-pressed", "true");
    expect(screen.getByRole("button", { name: "Open Manuals" })).toHaveAttribute("aria-pressed", "false");
    expect(screen.getByRole("region", { name: "Notes" })).toBeInTheDocument();
  });

  it("sends every chosen file as `files` and shows each file's outcome from the finished job", async () => {
    const { now, routes } = stage();
    const finished = ingestJob({ files: FILES, result: { added: 2, duplicates: 1, failed: 1, chunks: 14 } });
    const api = mockApi({
      ...routes,
      "POST /rag/collections/col-1/documents": () => {
        now.jobs = [finished];
        now.documents = [doc(), doc({ id: "doc-2", filename: "manual.pdf", kind: "pdf", pages: 3, chunks: 12, size_bytes: 9_000 })];
        return json(finished, 202);
      },
    });
    const { user } = renderPage();

    expect(await screen.findByText("No documents in this collection yet")).toBeInTheDocument();
    const add = screen.getByRole("button", { name: "Add" });
    expect(add).toBeDisabled();
    const input = screen.getByLabelText("Documents to add");
    expect(input).toHaveAttribute("accept", ".txt,.md,.markdown,.html,.htm,.pdf,.docx");
    await user.upload(input, [
      new File(["# Note\nhello"], "note.md", { type: "text/markdown" }),
      new File(["%PDF-1.4 ..."], "manual.pdf", { type: "application/pdf" }),
      new File(["%PDF-1.4 not really"], "broken.pdf", { type: "application/pdf" }),
    ]);
    expect(screen.getByText(/^3 files, /)).toBeInTheDocument();
    const appended = vi.spyOn(FormData.prototype, "append");
    await user.click(add);

    await waitFor(() => expect(api.calls("POST /rag/collections/col-1/documents")).toHaveLength(1));
    const formCalls = appended.mock.calls.map(([field, file]) => [field, (file as File).name]);
    appended.mockRestore();
    const sent = await api.calls("POST /rag/collections/col-1/documents")[0].request.formData();
    expect(sent.getAll("files")).toHaveLength(3);
    expect([...sent.keys()]).toEqual(["files", "files", "files"]);
    // jsdom's File loses its name on the way through fetch (Node's Request), so the names are read where the form
    // is built: each file goes in as itself, which a browser sends under its own (base) name.
    expect(formCalls).toEqual([
      ["files", "note.md"],
      ["files", "manual.pdf"],
      ["files", "broken.pdf"],
    ]);

    const card = await screen.findByRole("article", { name: "Add 3 files to Manuals" });
    expect(within(card).getByText("Ready")).toBeInTheDocument();
    expect(within(card).getByText("2 added · 1 already there · 1 failed · 14 chunks")).toBeInTheDocument();
    const files = within(card).getByRole("list", { name: "Files of Add 3 files to Manuals" });
    expect(within(files).getByRole("listitem", { name: "manual.pdf" })).toHaveTextContent("12 chunks · 3 pages");
    expect(within(files).getByRole("listitem", { name: "manual.pdf" })).toHaveTextContent("Added");
    expect(within(files).getByRole("listitem", { name: "copy.md" })).toHaveTextContent("already in the collection");
    const broken = within(files).getByRole("listitem", { name: "broken.pdf" });
    expect(broken).toHaveTextContent("Failed");
    expect(broken).toHaveTextContent("'broken.pdf' could not be read as a PDF; it is damaged or not a PDF (EOF marker not found).");
    expect(within(card).queryByRole("button", { name: /Cancel/ })).not.toBeInTheDocument();

    // The documents it added are listed: the list was refreshed when the job ended.
    const table = await screen.findByRole("table", { name: "Documents" });
    expect(within(table).getAllByRole("row")).toHaveLength(3);
    const row = within(within(table).getByText("manual.pdf").closest("tr")!).getAllByRole("cell");
    expect(row.slice(0, 5).map((cell) => cell.textContent)).toEqual(["manual.pdf", "pdf", "3", "12", "9.0 kB"]);
    expect(add).toBeDisabled();
  });

  it("follows a running ingest with Cancel, and refreshes the documents once it ends", async () => {
    const { now, routes } = stage();
    const running = ingestJob({
      status: "ingesting",
      finished_at: null,
      progress: { completed: 0, total: 1, unit: "documents", percent: 0 },
      files: [{ filename: "note.md", size_bytes: 120, status: "embedding" }],
    });
    now.jobs = [running];
    let ended = false;
    mockApi({
      ...routes,
      "GET /jobs/ing-1": () => {
        if (!ended) return running;
        now.documents = [doc()];
        return ingestJob({ files: [{ ...FILES[0] }], result: { added: 1, duplicates: 0, failed: 0, chunks: 2 } });
      },
    });
    renderPage();

    const card = await screen.findByRole("article", { name: "Add 3 files to Manuals" });
    expect(within(card).getByText("Adding documents")).toBeInTheDocument();
    expect(within(card).getByRole("listitem", { name: "note.md" })).toHaveTextContent("Embedding");
    expect(within(card).getByRole("progressbar", { name: "Ingest progress for Manuals" })).toHaveAttribute("aria-valuenow", "0");
    expect(within(card).getByRole("button", { name: "Cancel ingest of Manuals" })).toBeEnabled();
    expect(await screen.findByText("No documents in this collection yet")).toBeInTheDocument();

    ended = true; // the next poll of the job (jsdom has no EventSource) brings its end
    expect(await within(card).findByText("Ready", {}, { timeout: 3000 })).toBeInTheDocument();
    expect(await screen.findByRole("table", { name: "Documents" })).toHaveTextContent("note.md");
  });

  it("searches with the chosen mode and top k, and shows ranked passages with page and heading, or none", async () => {
    const { routes } = stage({ collections: [collection({ documents: 2, chunks: 14 })], documents: [doc()] });
    const api = mockApi({
      ...routes,
      "POST /rag/collections/col-1/query": async (request) => {
        const body = (await request.json()) as { query: string; mode: string };
        if (body.query === "nothing") return { collection_id: "col-1", query: body.query, mode: body.mode, hits: [] };
        return {
          collection_id: "col-1",
          query: body.query,
          mode: body.mode,
          hits: [hit(), hit({ rank: 2, score: 0.0123456, chunk_id: "ch-2", filename: "note.md", page: null, heading: null, text: "Other." })],
        };
      },
    });
    const { user } = renderPage();

    const search = await screen.findByRole("search", { name: "Search Manuals" });
    await user.type(within(search).getByLabelText("Search for"), "Zorblat-7");
    await user.selectOptions(within(search).getByLabelText("Mode"), "keyword");
    await user.clear(within(search).getByLabelText("Top k"));
    await user.type(within(search).getByLabelText("Top k"), "3");
    await user.click(within(search).getByRole("button", { name: "Search" }));

    const results = await screen.findByRole("list", { name: "Search results" });
    expect(await api.calls("POST /rag/collections/col-1/query")[0].request.json()).toEqual({ query: "Zorblat-7", mode: "keyword", top_k: 3 });
    const [first, second] = within(results).getAllByRole("listitem");
    expect(first).toHaveAccessibleName("Result 1");
    expect(first).toHaveTextContent("#1");
    expect(first).toHaveTextContent("manual.pdf");
    expect(first).toHaveTextContent("p. 3");
    expect(first).toHaveTextContent("Cooling");
    expect(first).toHaveTextContent("score 12.3");
    expect(first).toHaveTextContent("The Zorblat-7 reactor is cooled by heavy water.");
    expect(second).toHaveTextContent("score 0.0123");
    expect(second).not.toHaveTextContent("p. ");

    await user.clear(within(search).getByLabelText("Search for"));
    await user.type(within(search).getByLabelText("Search for"), "nothing");
    await user.click(within(search).getByRole("button", { name: "Search" }));
    expect(await screen.findByText("No matching passages")).toBeInTheDocument();
    expect(screen.queryByRole("list", { name: "Search results" })).not.toBeInTheDocument();
  });

  it("clamps a long passage with a Show all toggle", async () => {
    const { routes } = stage({ collections: [collection({ documents: 1, chunks: 1 })] });
    const long = "word ".repeat(200);
    mockApi({
      ...routes,
      "POST /rag/collections/col-1/query": { collection_id: "col-1", query: "word", mode: "hybrid", hits: [hit({ text: long })] },
    });
    const { user } = renderPage();
    await user.type(await screen.findByLabelText("Search for"), "word");
    await user.click(screen.getByRole("button", { name: "Search" }));
    const toggle = await screen.findByRole("button", { name: "Show all" });
    expect(toggle).toHaveAttribute("aria-expanded", "false");
    await user.click(toggle);
    expect(screen.getByRole("button", { name: "Show less" })).toHaveAttribute("aria-expanded", "true");
  });

  it("asks before deleting a document, then deletes it and says how many chunks went", async () => {
    const { now, routes } = stage({ collections: [collection({ documents: 1, chunks: 4 })], documents: [doc()] });
    const api = mockApi({
      ...routes,
      "DELETE /rag/collections/col-1/documents/doc-1": () => {
        now.documents = [];
        return { document_id: "doc-1", chunks_removed: 4 };
      },
    });
    const { user } = renderPage();

    await user.click(await screen.findByRole("button", { name: "Delete document note.md" }));
    const dialog = screen.getByRole("dialog", { name: "Delete this document?" });
    expect(dialog).toHaveTextContent("note.md and its 4 chunks will be removed from Manuals");
    expect(api.calls("DELETE /rag/collections/col-1/documents/doc-1")).toHaveLength(0);
    await user.click(within(dialog).getByRole("button", { name: "Delete" }));

    expect(await screen.findByText("Deleted note.md: 4 chunks removed.")).toBeInTheDocument();
    expect(api.calls("DELETE /rag/collections/col-1/documents/doc-1")).toHaveLength(1);
    expect(await screen.findByText("No documents in this collection yet")).toBeInTheDocument();
  });

  it("measures retrieval for the current mode and top k, with recall, MRR and the questions that missed", async () => {
    const { routes } = stage({ collections: [collection({ documents: 1, chunks: 4 })], documents: [doc()] });
    const result: EvalResponse = {
      collection_id: "col-1",
      mode: "vector",
      top_k: 5,
      generated: true,
      questions: 10,
      recall_at_k: 0.8,
      mrr: 0.73333,
      results: [
        { question: "The reactor is cooled by ___ water.", document_id: "doc-1", rank: 1 },
        { question: "Where the pump ___ primed.", document_id: "doc-1", rank: null },
      ],
    };
    const api = mockApi({ ...routes, "POST /rag/collections/col-1/eval": result });
    const { user } = renderPage();

    await user.selectOptions(await screen.findByLabelText("Mode"), "vector");
    await user.click(screen.getByRole("button", { name: "Measure retrieval" }));
    const measure = await screen.findByRole("group", { name: "Retrieval measure" });
    expect(await api.calls("POST /rag/collections/col-1/eval")[0].request.json()).toEqual({ mode: "vector", top_k: 5 });
    expect(within(measure).getByText("Recall@5").nextSibling).toHaveTextContent("80.0%");
    expect(within(measure).getByText("MRR").nextSibling).toHaveTextContent("0.733");
    expect(within(measure).getByText("10 generated")).toBeInTheDocument();
    const missed = within(measure).getByRole("list", { name: "Missed questions" });
    expect(within(missed).getAllByRole("listitem")).toHaveLength(1);
    expect(missed).toHaveTextContent("Where the pump ___ primed. (note.md)");
  });

  it("changes the embedder with a reembed job, shows it, and says why when the API refuses", async () => {
    const { now, routes } = stage({ collections: [collection({ documents: 2, chunks: 9 })], documents: [doc()] });
    const job = {
      id: "re-1",
      kind: "reembed" as const,
      title: "Re-embed Manuals with /models/tiny",
      collection_id: "col-1",
      collection_name: "Manuals",
      embedding_model: "/models/tiny",
      previous_model: "all-MiniLM-L6-v2",
      index_key: "col-1-abcd",
      status: "ready" as const,
      progress: { completed: 9, total: 9, unit: "chunks" as const, percent: 100 },
      result: { chunks: 9, embedding_dim: 32 },
      resumable: false,
      created_at: "2025-01-02T10:06:00Z",
      updated_at: "2025-01-02T10:07:00Z",
      finished_at: "2025-01-02T10:07:00Z",
    };
    let refuse = false;
    const api = mockApi({
      ...routes,
      "PATCH /rag/collections/col-1": () => {
        if (refuse) return apiError(409, "collection_busy", "Files are being added to this collection (job ing-9); wait for it or cancel it.");
        now.jobs = [job as unknown as IngestJob]; // GET /jobs answers every kind from one list here
        return json({ collection: collection({ documents: 2, chunks: 9 }), job }, 202);
      },
    });
    const { user } = renderPage();

    const button = await screen.findByRole("button", { name: "Re-embed" });
    expect(button).toBeDisabled();
    await user.type(screen.getByLabelText("New embedder"), "/models/tiny");
    await user.click(button);
    await waitFor(() => expect(api.calls("PATCH /rag/collections/col-1")).toHaveLength(1));
    expect(await api.calls("PATCH /rag/collections/col-1")[0].request.json()).toEqual({ embedding_model: "/models/tiny" });
    const jobs = await screen.findByRole("list", { name: "Re-embedding jobs" });
    expect(within(jobs).getByText("Re-embed Manuals with /models/tiny")).toBeInTheDocument();
    expect(within(jobs).getByText("Ready")).toBeInTheDocument();
    expect(screen.getByLabelText("New embedder")).toHaveValue("");

    refuse = true;
    await user.type(screen.getByLabelText("New embedder"), "other-model");
    await user.click(screen.getByRole("button", { name: "Re-embed" }));
    expect(await screen.findByText(/Files are being added to this collection \(job ing-9\)/)).toBeInTheDocument();
    expect(screen.getByText("collection_busy")).toBeInTheDocument();
  });

  it("shows the API's errors as it words them", async () => {
    const busy = "Files are being added to 'Manuals'; cancel the ingest job or wait for it, then delete the collection.";
    const { routes } = stage({ collections: [collection({ documents: 1, chunks: 4 })], documents: [doc()] });
    mockApi({
      ...routes,
      "DELETE /rag/collections/col-1": apiError(409, "collection_busy", busy),
      "POST /rag/collections": apiError(409, "collection_exists", "A collection named 'Manuals' already exists."),
      "POST /rag/collections/col-1/query": apiError(503, "embedder_unavailable", "The embedding model could not be loaded."),
    });
    const { user } = renderPage();

    await user.click(await screen.findByRole("button", { name: "Delete collection Manuals" }));
    await user.click(within(screen.getByRole("dialog", { name: "Delete this collection?" })).getByRole("button", { name: "Delete" }));
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent(busy);
    expect(alert).toHaveTextContent("collection_busy");
    expect(screen.getByRole("button", { name: "Open Manuals" })).toBeInTheDocument();
    await user.click(within(alert).getByRole("button", { name: "Dismiss error" }));

    await user.type(screen.getByLabelText("Collection name"), "Manuals");
    await user.click(screen.getByRole("button", { name: "Create collection" }));
    expect(await screen.findByText("A collection named 'Manuals' already exists.")).toBeInTheDocument();

    await user.type(screen.getByLabelText("Search for"), "reactor");
    await user.click(screen.getByRole("button", { name: "Search" }));
    expect(await screen.findByText("The embedding model could not be loaded.")).toBeInTheDocument();
    expect(screen.getByText("embedder_unavailable")).toBeInTheDocument();
  });
});
