// Documents to ask about (RAG): collections of files read, chunked and embedded; an ingest job per upload, followed
// live with every file's outcome; the documents of a collection; search (hybrid, vector or keyword) with the ranked
// passages; and a retrieval measure (recall@k, MRR) on questions generated from the collection's own chunks.
import { type QueryClient, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useId, useRef, useState } from "react";
import { useSearchParams } from "react-router";
import {
  addDocumentsMutation,
  createCollectionMutation,
  deleteCollectionMutation,
  deleteDocumentMutation,
  evaluateCollectionMutation,
  getCollectionQueryKey,
  listCollectionsOptions,
  listCollectionsQueryKey,
  listDocumentsOptions,
  listDocumentsQueryKey,
  listJobsOptions,
  queryCollectionMutation,
  updateCollectionMutation,
  type CollectionInfo,
  type DocumentInfo,
  type IngestFile,
  type IngestJob,
  type JobList,
  type QueryHit,
  type QueryRequest,
  type ReembedJob,
} from "../api/queries";
import { barTone, hintFor, JobButtons, JobCard, jobError, jobNames, progressValue, statusOf, useJobControls } from "../components/models/JobCard";
import { rememberJob } from "../components/models/jobCache";
import {
  Badge,
  Button,
  Card,
  ConfirmDialog,
  EmptyState,
  ErrorMessage,
  Facts,
  Loading,
  Notice,
  PageHeader,
  ProgressBar,
  SelectField,
  TextField,
  type Tone,
} from "../components/ui";
import { formatBytes, formatDate } from "../format";
import { isActive, useJobEvents } from "../hooks/useJobEvents";

type Mode = NonNullable<QueryRequest["mode"]>;

/** A collection's latest ingest jobs (the server filters: other collections' jobs never crowd them out). */
const ingestJobs = (collectionId: string) => ({
  query: { kind: "ingest" as const, collection_id: collectionId, limit: 10 },
});
const ACCEPT = ".txt,.md,.markdown,.html,.htm,.pdf,.docx";
const FILE_INPUT =
  "block w-full text-sm text-zinc-600 file:mr-3 file:rounded-lg file:border-0 file:bg-zinc-100 file:px-3 file:py-2 file:text-sm file:font-medium file:text-zinc-800 hover:file:bg-zinc-200 dark:text-zinc-400 dark:file:bg-zinc-800 dark:file:text-zinc-100 dark:hover:file:bg-zinc-700";
const MODES: Array<[Mode, string]> = [
  ["hybrid", "Hybrid"],
  ["vector", "Vector"],
  ["keyword", "Keyword"],
];
const MODE_HINT: Record<Mode, string> = {
  hybrid: "Meaning and words together, fused by rank.",
  vector: "By meaning (embeddings); always finds the nearest passages.",
  keyword: "By the words themselves (BM25); finds nothing when no word matches.",
};
const FIRST_USE = "The first search after a start loads the embedding model, which takes a few seconds.";
const CLAMP = 480;

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/** A collection's documents, its details and the list changed (files added or removed): refresh them. */
function refreshCollection(queryClient: QueryClient, collectionId: string): Promise<unknown> {
  const path = { path: { collection_id: collectionId } };
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: listDocumentsQueryKey(path) }),
    queryClient.invalidateQueries({ queryKey: getCollectionQueryKey(path) }),
    queryClient.invalidateQueries({ queryKey: listCollectionsQueryKey() }),
  ]);
}

// ---- collections --------------------------------------------------------------------------------------------

function positive(text: string): number | undefined {
  const n = Number(text);
  return text.trim() && Number.isInteger(n) && n >= 0 ? n : undefined;
}

function CreateCollection({ onCreated }: { onCreated: (collection: CollectionInfo) => void }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState("");
  const [size, setSize] = useState("");
  const [overlap, setOverlap] = useState("");
  const create = useMutation({
    ...createCollectionMutation(),
    onSuccess: (collection) => {
      setName("");
      onCreated(collection);
      return queryClient.invalidateQueries({ queryKey: listCollectionsQueryKey() });
    },
  });
  return (
    <form
      className="space-y-3"
      aria-label="New collection"
      onSubmit={(event) => {
        event.preventDefault();
        const chunk_size = positive(size);
        const chunk_overlap = positive(overlap);
        create.mutate({
          body: { name: name.trim(), ...(chunk_size !== undefined && { chunk_size }), ...(chunk_overlap !== undefined && { chunk_overlap }) },
        });
      }}
    >
      <div className="flex flex-wrap items-end gap-3">
        <TextField
          label="Collection name"
          className="min-w-48 flex-1"
          value={name}
          maxLength={100}
          placeholder="Manuals"
          autoComplete="off"
          onChange={(event) => {
            setName(event.target.value);
            if (create.error) create.reset();
          }}
        />
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!name.trim()}>
          Create collection
        </Button>
      </div>
      <details className="text-sm">
        <summary className="cursor-pointer text-zinc-600 dark:text-zinc-400">Options</summary>
        <div className="mt-3 grid gap-3 sm:grid-cols-2">
          <TextField label="Chunk size (tokens)" type="number" min={16} value={size} onChange={(e) => setSize(e.target.value)} hint="Default: the server's (256)." />
          <TextField label="Chunk overlap (tokens)" type="number" min={0} value={overlap} onChange={(e) => setOverlap(e.target.value)} hint="Tokens neighbouring chunks share. Default: 32." />
        </div>
      </details>
      <ErrorMessage error={create.error} title="Could not create the collection" onDismiss={() => create.reset()} />
    </form>
  );
}

function CollectionRow({ collection, selected, onSelect, onDelete }: {
  collection: CollectionInfo;
  selected: boolean;
  onSelect: () => void;
  onDelete: () => void;
}) {
  return (
    <li aria-label={collection.name} className="flex flex-col gap-3 py-4 sm:flex-row sm:items-center sm:justify-between">
      <div className="min-w-0 space-y-1">
        <div className="flex flex-wrap items-center gap-2">
          <span className="font-medium break-all">{collection.name}</span>
          {selected && <Badge tone="info">Open below</Badge>}
        </div>
        <p className="text-xs text-zinc-600 dark:text-zinc-400">
          {`${plural(collection.documents, "document")} · ${plural(collection.chunks, "chunk")} · embedder ${collection.embedding_model} · store ${collection.store}`}
        </p>
      </div>
      <div className="flex shrink-0 gap-2">
        <Button variant={selected ? "secondary" : "primary"} onClick={onSelect} aria-pressed={selected} aria-label={`Open ${collection.name}`}>
          Open
        </Button>
        <Button variant="ghost" onClick={onDelete} aria-label={`Delete collection ${collection.name}`} className="text-red-700 dark:text-red-400">
          Delete
        </Button>
      </div>
    </li>
  );
}

function Collections({ selectedId, onSelect }: { selectedId: string | null; onSelect: (id: string | null) => void }) {
  const queryClient = useQueryClient();
  const collections = useQuery(listCollectionsOptions());
  const [toDelete, setToDelete] = useState<CollectionInfo | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const remove = useMutation({
    ...deleteCollectionMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => {
      setNotice(`Deleted the collection: ${plural(data.documents_removed, "document")} and ${plural(data.chunks_removed, "chunk")} removed.`);
      if (data.collection_id === selectedId) onSelect(null);
    },
    onSettled: () => {
      setToDelete(null);
      return queryClient.invalidateQueries({ queryKey: listCollectionsQueryKey() });
    },
  });
  const list = collections.data?.collections ?? [];
  return (
    <Card title="Collections">
      <div className="space-y-5">
        <CreateCollection onCreated={(collection) => onSelect(collection.id)} />
        <ErrorMessage error={remove.error} title="Could not delete the collection" onDismiss={() => remove.reset()} />
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        {collections.isPending ? (
          <Loading label="Reading the collections…" />
        ) : collections.isError ? (
          <ErrorMessage error={collections.error} title="Could not list the collections" />
        ) : list.length === 0 ? (
          <EmptyState title="No collections yet">
            A collection is a set of documents (text, Markdown, HTML or PDF) split into passages and indexed by meaning and by
            words, so they can be searched and asked about. Name one in the form above to start.
          </EmptyState>
        ) : (
          <ul aria-label="Collections" className="-my-4 divide-y divide-zinc-100 dark:divide-zinc-800">
            {list.map((collection) => (
              <CollectionRow
                key={collection.id}
                collection={collection}
                selected={collection.id === selectedId}
                onSelect={() => onSelect(collection.id)}
                onDelete={() => {
                  remove.reset();
                  setToDelete(collection);
                }}
              />
            ))}
          </ul>
        )}
      </div>
      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this collection?"
        confirmLabel="Delete"
        busy={remove.isPending}
        onCancel={() => setToDelete(null)}
        onConfirm={() => toDelete && remove.mutate({ path: { collection_id: toDelete.id } })}
      >
        {toDelete && (
          <p>
            <span className="font-medium break-all">{toDelete.name}</span>, its {plural(toDelete.documents, "document")} and{" "}
            {plural(toDelete.chunks, "chunk")} will be removed. The files you uploaded from stay where they are.
          </p>
        )}
      </ConfirmDialog>
    </Card>
  );
}

// ---- adding documents ---------------------------------------------------------------------------------------

const FILE_STATUS: Record<NonNullable<IngestFile["status"]>, { label: string; tone: Tone }> = {
  waiting: { label: "Waiting", tone: "neutral" },
  reading: { label: "Reading", tone: "info" },
  embedding: { label: "Embedding", tone: "info" },
  added: { label: "Added", tone: "good" },
  duplicate: { label: "Duplicate", tone: "neutral" },
  failed: { label: "Failed", tone: "bad" },
};

function FileRow({ file }: { file: IngestFile }) {
  const status = FILE_STATUS[file.status ?? "waiting"];
  const outcome =
    file.status === "added"
      ? [file.chunks != null && plural(file.chunks, "chunk"), file.pages != null && plural(file.pages, "page")].filter(Boolean).join(" · ")
      : file.status === "duplicate"
        ? "already in the collection"
        : null;
  return (
    <li aria-label={file.filename} className="flex flex-wrap items-baseline justify-between gap-x-3 gap-y-1 py-1.5 text-sm">
      <span className="min-w-0 font-medium break-all">{file.filename}</span>
      <span className="flex flex-wrap items-center gap-2 text-xs text-zinc-600 dark:text-zinc-400">
        <span className="tabular-nums">{formatBytes(file.size_bytes)}</span>
        {outcome && <span>{outcome}</span>}
        <Badge tone={status.tone}>{status.label}</Badge>
      </span>
      {file.status === "failed" && file.error && (
        <p className="basis-full text-xs text-red-800 dark:text-red-300">{file.error.message}</p>
      )}
    </li>
  );
}

function IngestJobCard({ job }: { job: IngestJob & { kind: "ingest" } }) {
  const controls = useJobControls();
  const names = jobNames(job);
  const status = statusOf(job);
  const value = progressValue(job);
  const hint = hintFor(job);
  const failure = jobError(job);
  const p = job.progress ?? {};
  const r = job.result;
  return (
    <article aria-label={names.title} className="space-y-3 py-4">
      <div className="flex flex-wrap items-start justify-between gap-2">
        <div className="min-w-0">
          <p className="font-medium break-all">{names.title}</p>
          <p className="text-xs text-zinc-500 dark:text-zinc-400">
            started {formatDate(job.created_at)}
            {job.finished_at ? ` · ended ${formatDate(job.finished_at)}` : ""}
          </p>
        </div>
        <div className="flex shrink-0 items-center gap-2">
          <span className="text-sm font-medium tabular-nums">{value === null ? "" : `${Math.floor(value)}%`}</span>
          <Badge tone={status.tone}>{status.label}</Badge>
        </div>
      </div>
      <ProgressBar value={value} label={names.progress} tone={barTone(job)} />
      <div className="flex flex-wrap items-center justify-between gap-2 text-xs text-zinc-600 dark:text-zinc-400">
        <div className="space-y-0.5">
          {p.total ? <p className="tabular-nums">{`${(p.completed ?? 0).toLocaleString()} of ${plural(p.total, "document")}`}</p> : null}
          {hint && <p>{hint}.</p>}
          {isActive(job) && <p>The first files after a start wait for the embedding model to load (a few seconds).</p>}
          {r && (
            <p>{`${r.added.toLocaleString()} added · ${r.duplicates.toLocaleString()} already there · ${r.failed.toLocaleString()} failed · ${plural(r.chunks, "chunk")}`}</p>
          )}
        </div>
        {(isActive(job) || job.resumable) && (
          <div className="flex gap-2">
            <JobButtons job={job} controls={controls} />
          </div>
        )}
      </div>
      <ul aria-label={`Files of ${names.title}`} className="divide-y divide-zinc-100 dark:divide-zinc-800">
        {job.files.map((file, index) => (
          <FileRow key={`${index}-${file.filename}`} file={file} />
        ))}
      </ul>
      {failure && <ErrorMessage error={failure} title="Adding the documents failed" />}
      <ErrorMessage error={controls.error} onDismiss={controls.reset} />
    </article>
  );
}

/** A running ingest, followed live; once it ends, the collection's documents and figures are refreshed. */
function LiveIngestJobCard({ job }: { job: IngestJob & { kind: "ingest" } }) {
  const queryClient = useQueryClient();
  const { data } = useJobEvents(job.id);
  const latest = data?.kind === "ingest" ? data : job;
  const ended = !isActive(latest);
  useEffect(() => {
    if (ended) void refreshCollection(queryClient, latest.collection_id);
  }, [ended, latest.collection_id, queryClient]);
  return <IngestJobCard job={latest} />;
}

function AddDocuments({ collection }: { collection: CollectionInfo }) {
  const queryClient = useQueryClient();
  const input = useRef<HTMLInputElement>(null);
  const inputId = useId();
  const [files, setFiles] = useState<File[]>([]);
  const jobs = useQuery({
    ...listJobsOptions(ingestJobs(collection.id)),
    refetchInterval: (query) => (query.state.data?.jobs.some(isActive) ? 3_000 : 15_000),
  });
  const add = useMutation({
    ...addDocumentsMutation(),
    onSuccess: (job) => {
      const started = { ...job, kind: "ingest" as const };
      rememberJob(queryClient, started);
      queryClient.setQueryData<JobList>(listJobsOptions(ingestJobs(collection.id)).queryKey, (old) => ({
        jobs: [started, ...(old?.jobs ?? []).filter((other) => other.id !== job.id)],
      }));
      setFiles([]);
      if (input.current) input.current.value = "";
      if (!isActive(started)) void refreshCollection(queryClient, collection.id);
    },
  });
  const mine = (jobs.data?.jobs ?? []).filter(
    (job): job is IngestJob & { kind: "ingest" } => job.kind === "ingest" && job.collection_id === collection.id,
  );
  const bytes = files.reduce((sum, file) => sum + file.size, 0);
  return (
    <Card title="Add documents">
      <form
        className="space-y-3"
        onSubmit={(event) => {
          event.preventDefault();
          add.mutate({ path: { collection_id: collection.id }, body: { files } });
        }}
      >
        <div>
          <label htmlFor={inputId} className="mb-1 block text-sm font-medium">
            Documents to add
          </label>
          <div className="flex flex-wrap items-center gap-3">
            <input
              id={inputId}
              ref={input}
              type="file"
              multiple
              accept={ACCEPT}
              className={`${FILE_INPUT} min-w-0 flex-1`}
              onChange={(event) => {
                add.reset();
                setFiles(Array.from(event.target.files ?? []));
              }}
            />
            <Button type="submit" variant="primary" busy={add.isPending} disabled={files.length === 0}>
              Add
            </Button>
          </div>
          <p className="mt-1 text-xs text-zinc-500 dark:text-zinc-400">
            {files.length
              ? `${plural(files.length, "file")}, ${formatBytes(bytes)}.`
              : "Text (.txt), Markdown (.md), HTML (.html), PDF or Word (.docx); several at once. The same content twice is added once."}
          </p>
        </div>
        <ErrorMessage error={add.error} title="Could not add the documents" onDismiss={() => add.reset()} />
      </form>
      <ErrorMessage error={jobs.error} title="Could not list the ingest jobs" />
      {mine.length > 0 && (
        <ul aria-label="Ingest jobs" className="mt-4 divide-y divide-zinc-100 border-t border-zinc-100 dark:divide-zinc-800 dark:border-zinc-800">
          {mine.map((job) => (
            <li key={job.id}>{isActive(job) ? <LiveIngestJobCard job={job} /> : <IngestJobCard job={job} />}</li>
          ))}
        </ul>
      )}
    </Card>
  );
}

// ---- the embedder -------------------------------------------------------------------------------------------

const REEMBED_JOBS = { query: { kind: "reembed" as const, limit: 10 } };
type Reembed = ReembedJob & { kind: "reembed" };

function LiveReembedJobCard({ job }: { job: Reembed }) {
  const queryClient = useQueryClient();
  const { data } = useJobEvents(job.id);
  const latest = data?.kind === "reembed" ? data : job;
  const ended = !isActive(latest);
  useEffect(() => {
    if (ended) void refreshCollection(queryClient, latest.collection_id);
  }, [ended, latest.collection_id, queryClient]);
  return <JobCard job={latest} />;
}

/** Change the collection's embedder: a reembed job embeds every chunk again and switches when it is done. */
function ChangeEmbedder({ collection }: { collection: CollectionInfo }) {
  const queryClient = useQueryClient();
  const [model, setModel] = useState("");
  const jobs = useQuery({
    ...listJobsOptions(REEMBED_JOBS),
    refetchInterval: (query) => (query.state.data?.jobs.some(isActive) ? 3_000 : 15_000),
  });
  const change = useMutation({
    ...updateCollectionMutation(),
    onSuccess: ({ job }) => {
      setModel("");
      if (!job) return;
      const started = { ...job, kind: "reembed" as const };
      rememberJob(queryClient, started);
      queryClient.setQueryData<JobList>(listJobsOptions(REEMBED_JOBS).queryKey, (old) => ({
        jobs: [started, ...(old?.jobs ?? []).filter((other) => other.id !== job.id)],
      }));
    },
  });
  const mine = (jobs.data?.jobs ?? []).filter(
    (job): job is Reembed => job.kind === "reembed" && job.collection_id === collection.id,
  );
  return (
    <div className="mt-4 border-t border-zinc-100 pt-4 dark:border-zinc-800">
      <form
        className="flex flex-wrap items-end gap-3"
        onSubmit={(event) => {
          event.preventDefault();
          change.mutate({ path: { collection_id: collection.id }, body: { embedding_model: model.trim() } });
        }}
      >
        <div className="min-w-0 flex-1">
          <TextField
            label="New embedder"
            value={model}
            maxLength={4096}
            placeholder="all-MiniLM-L6-v2, a sentence-transformers folder, or a Hub id"
            hint="Every chunk is embedded again; searches and chat use the current embedder until that is done."
            onChange={(e) => {
              change.reset();
              setModel(e.target.value);
            }}
          />
        </div>
        <Button type="submit" busy={change.isPending} disabled={!model.trim()}>
          Re-embed
        </Button>
      </form>
      <ErrorMessage error={change.error} title="Could not change the embedder" onDismiss={() => change.reset()} />
      <ErrorMessage error={jobs.error} title="Could not list the re-embedding jobs" />
      {mine.length > 0 && (
        <ul aria-label="Re-embedding jobs" className="divide-y divide-zinc-100 dark:divide-zinc-800">
          {mine.map((job) => (
            <li key={job.id}>{isActive(job) ? <LiveReembedJobCard job={job} /> : <JobCard job={job} />}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

// ---- documents ----------------------------------------------------------------------------------------------

function Documents({ collection }: { collection: CollectionInfo }) {
  const queryClient = useQueryClient();
  const documents = useQuery(listDocumentsOptions({ path: { collection_id: collection.id } }));
  const list = documents.data?.documents ?? [];
  const [toDelete, setToDelete] = useState<DocumentInfo | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const remove = useMutation({
    ...deleteDocumentMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => {
      const name = list.find((doc) => doc.id === data.document_id)?.filename ?? "the document";
      setNotice(`Deleted ${name}: ${plural(data.chunks_removed, "chunk")} removed.`);
    },
    onSettled: () => {
      setToDelete(null);
      return refreshCollection(queryClient, collection.id);
    },
  });
  return (
    <Card title="Documents">
      <div className="space-y-4">
        <ErrorMessage error={remove.error} title="Could not delete the document" onDismiss={() => remove.reset()} />
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        {documents.isPending ? (
          <Loading label="Reading the documents…" />
        ) : documents.isError ? (
          <ErrorMessage error={documents.error} title="Could not list the documents" />
        ) : list.length === 0 ? (
          <EmptyState title="No documents in this collection yet">Choose files under Add documents above; they are listed here once added.</EmptyState>
        ) : (
          <div className="overflow-x-auto">
            <table className="w-full text-left text-sm" aria-label="Documents">
              <thead className="text-xs text-zinc-500 dark:text-zinc-400">
                <tr>
                  {["File", "Kind", "Pages", "Chunks", "Size", "Added"].map((h) => (
                    <th key={h} className="py-1 pr-4 font-medium">{h}</th>
                  ))}
                  <th className="py-1 font-medium"><span className="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
                {list.map((doc) => (
                  <tr key={doc.id}>
                    <td className="py-2 pr-4 font-medium break-all" title={`sha256 ${doc.sha256}`}>{doc.filename}</td>
                    <td className="py-2 pr-4"><Badge>{doc.kind}</Badge></td>
                    <td className="py-2 pr-4 tabular-nums">{doc.pages ?? "—"}</td>
                    <td className="py-2 pr-4 tabular-nums">{doc.chunks.toLocaleString()}</td>
                    <td className="py-2 pr-4 tabular-nums whitespace-nowrap">{formatBytes(doc.size_bytes)}</td>
                    <td className="py-2 pr-4 whitespace-nowrap">{formatDate(doc.created_at)}</td>
                    <td className="py-2 text-right">
                      <Button
                        variant="ghost"
                        className="px-2 py-1 text-xs text-red-700 dark:text-red-400"
                        aria-label={`Delete document ${doc.filename}`}
                        onClick={() => {
                          remove.reset();
                          setToDelete(doc);
                        }}
                      >
                        Delete
                      </Button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </div>
      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this document?"
        confirmLabel="Delete"
        busy={remove.isPending}
        onCancel={() => setToDelete(null)}
        onConfirm={() => toDelete && remove.mutate({ path: { collection_id: collection.id, document_id: toDelete.id } })}
      >
        {toDelete && (
          <p>
            <span className="font-medium break-all">{toDelete.filename}</span> and its {plural(toDelete.chunks, "chunk")} will be
            removed from {collection.name}; searches never find them again.
          </p>
        )}
      </ConfirmDialog>
    </Card>
  );
}

// ---- search and evaluation ----------------------------------------------------------------------------------

function Hit({ hit }: { hit: QueryHit }) {
  const [open, setOpen] = useState(false);
  const long = hit.text.length > CLAMP || hit.text.split("\n").length > 8;
  return (
    <li aria-label={`Result ${hit.rank}`} className="space-y-1.5 py-3">
      <div className="flex flex-wrap items-baseline gap-x-3 gap-y-1 text-sm">
        <span className="font-semibold tabular-nums">#{hit.rank}</span>
        <span className="font-medium break-all">{hit.filename}</span>
        {hit.page != null && <span className="text-zinc-600 dark:text-zinc-400">p. {hit.page}</span>}
        {hit.heading && <span className="text-zinc-600 italic dark:text-zinc-400">{hit.heading}</span>}
        <span className="ml-auto text-xs text-zinc-500 tabular-nums" title="Hybrid: fused rank score; vector: cosine; keyword: BM25">
          score {hit.score.toPrecision(3)}
        </span>
      </div>
      <p className={`text-sm whitespace-pre-wrap break-words text-zinc-800 dark:text-zinc-200 ${long && !open ? "line-clamp-6" : ""}`}>{hit.text}</p>
      {long && (
        <button type="button" className="text-xs font-medium text-brand-700 hover:underline dark:text-brand-500" aria-expanded={open} onClick={() => setOpen((v) => !v)}>
          {open ? "Show less" : "Show all"}
        </button>
      )}
    </li>
  );
}

function Search({ collection, mode, setMode, topK, setTopK, k }: {
  collection: CollectionInfo;
  mode: Mode;
  setMode: (mode: Mode) => void;
  topK: string;
  setTopK: (value: string) => void;
  k: number | null;
}) {
  const [text, setText] = useState("");
  const search = useMutation(queryCollectionMutation());
  const answer = search.data;
  return (
    <Card title="Search">
      <form
        className="space-y-3"
        role="search"
        aria-label={`Search ${collection.name}`}
        onSubmit={(event) => {
          event.preventDefault();
          if (k !== null && text.trim()) search.mutate({ path: { collection_id: collection.id }, body: { query: text.trim(), mode, top_k: k } });
        }}
      >
        <TextField label="Search for" value={text} maxLength={4000} placeholder="A question, or words from the documents" onChange={(e) => setText(e.target.value)} />
        <div className="flex flex-wrap items-start gap-3">
          <SelectField label="Mode" className="w-40" value={mode} options={MODES} onChange={(e) => setMode(e.target.value as Mode)} />
          <TextField
            label="Top k"
            className="w-28"
            type="number"
            min={1}
            max={100}
            value={topK}
            error={k === null ? "1 to 100" : null}
            onChange={(e) => setTopK(e.target.value)}
          />
          <Button type="submit" variant="primary" className="mt-6" busy={search.isPending} disabled={!text.trim() || k === null}>
            Search
          </Button>
        </div>
        <p className="text-xs text-zinc-500 dark:text-zinc-400">{MODE_HINT[mode]}</p>
        {search.isPending && <Loading label={`Searching… ${FIRST_USE}`} />}
        <ErrorMessage error={search.error} title="The search failed" onDismiss={() => search.reset()} />
      </form>
      {answer && !search.isPending && (
        <div className="mt-4 border-t border-zinc-100 pt-3 dark:border-zinc-800">
          <p className="text-xs text-zinc-500 dark:text-zinc-400">
            {`${plural(answer.hits.length, "passage")} for “${answer.query}” (${answer.mode})`}
          </p>
          {answer.hits.length === 0 ? (
            <EmptyState title="No matching passages">
              {answer.mode === "keyword" ? "No chunk holds these words; try other words, or Hybrid or Vector search." : "Try other words."}
            </EmptyState>
          ) : (
            <ol aria-label="Search results" className="divide-y divide-zinc-100 dark:divide-zinc-800">
              {answer.hits.map((hit) => (
                <Hit key={hit.chunk_id} hit={hit} />
              ))}
            </ol>
          )}
        </div>
      )}
    </Card>
  );
}

function Evaluation({ collection, mode, k }: { collection: CollectionInfo; mode: Mode; k: number | null }) {
  const measure = useMutation(evaluateCollectionMutation());
  const documents = useQuery(listDocumentsOptions({ path: { collection_id: collection.id } }));
  const names = new Map((documents.data?.documents ?? []).map((doc) => [doc.id, doc.filename]));
  const result = measure.data;
  const missed = result?.results.filter((r) => r.rank === null) ?? [];
  return (
    <Card title="Retrieval quality">
      <div className="space-y-3">
        <p className="text-sm text-zinc-600 dark:text-zinc-400">
          Asks questions made from the collection's own passages (a sentence with a third of its words left out) and counts how
          often the search above, with its mode and top k, finds the document each came from.
        </p>
        <Button
          variant="primary"
          busy={measure.isPending}
          disabled={k === null || collection.chunks === 0}
          onClick={() => k !== null && measure.mutate({ path: { collection_id: collection.id }, body: { mode, top_k: k } })}
        >
          Measure retrieval
        </Button>
        {collection.chunks === 0 && <p className="text-xs text-zinc-500">Add documents first.</p>}
        {measure.isPending && <Loading label={`Measuring… ${FIRST_USE}`} />}
        <ErrorMessage error={measure.error} title="Could not measure retrieval" onDismiss={() => measure.reset()} />
        {result && !measure.isPending && (
          <div role="group" aria-label="Retrieval measure" className="space-y-3">
            <Facts
              items={[
                [`Recall@${result.top_k}`, `${(result.recall_at_k * 100).toFixed(1)}%`],
                ["MRR", result.mrr.toFixed(3)],
                ["Questions", `${result.questions.toLocaleString()}${result.generated ? " generated" : ""}`],
                ["Mode", result.mode],
              ]}
            />
            {missed.length > 0 && (
              <div>
                <h3 className="text-sm font-semibold">{`Missed (not in the top ${result.top_k}): ${missed.length}`}</h3>
                <ul aria-label="Missed questions" className="mt-1 list-disc space-y-1 pl-5 text-sm">
                  {missed.slice(0, 10).map((r, index) => (
                    <li key={index}>
                      {r.question} <span className="text-xs text-zinc-500">({names.get(r.document_id) ?? r.document_id})</span>
                    </li>
                  ))}
                </ul>
                {missed.length > 10 && <p className="mt-1 text-xs text-zinc-500">and {missed.length - 10} more.</p>}
              </div>
            )}
          </div>
        )}
      </div>
    </Card>
  );
}

// ---- the page -----------------------------------------------------------------------------------------------

function CollectionView({ collection }: { collection: CollectionInfo }) {
  const [mode, setMode] = useState<Mode>("hybrid");
  const [topK, setTopK] = useState("5");
  const n = Number(topK);
  const k = Number.isInteger(n) && n >= 1 && n <= 100 ? n : null;
  return (
    <>
      <Card title={collection.name}>
        <Facts
          items={[
            ["Documents", collection.documents.toLocaleString()],
            ["Chunks", collection.chunks.toLocaleString()],
            ["Embedder", `${collection.embedding_model}${collection.embedding_dim ? ` (${collection.embedding_dim} dims)` : ""}`],
            ["Chunking", `${collection.chunk_size} tokens, ${collection.chunk_overlap} shared`],
            ["Store", collection.store],
            ["Created", formatDate(collection.created_at)],
          ]}
        />
        <ChangeEmbedder collection={collection} />
      </Card>
      <AddDocuments collection={collection} />
      <Documents collection={collection} />
      <Search collection={collection} mode={mode} setMode={setMode} topK={topK} setTopK={setTopK} k={k} />
      <Evaluation collection={collection} mode={mode} k={k} />
    </>
  );
}

export function DocumentsPage() {
  const [params, setParams] = useSearchParams();
  const collections = useQuery(listCollectionsOptions());
  const wanted = params.get("c");
  const list = collections.data?.collections ?? [];
  // The one in the URL, else the first: there is always one open while any exists.
  const selected = list.find((c) => c.id === wanted) ?? list[0] ?? null;
  const select = (id: string | null) => setParams(id ? { c: id } : {});
  return (
    <>
      <PageHeader
        title="Documents"
        description="Collections of your documents, split into passages and indexed by meaning and by words, to search and to ask about."
      />
      <div className="space-y-6">
        <Collections selectedId={selected?.id ?? null} onSelect={select} />
        {selected && <CollectionView key={selected.id} collection={selected} />}
      </div>
    </>
  );
}
