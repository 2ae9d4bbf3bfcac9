// Upload a fine-tuning dataset (.jsonl, .json, .csv or .parquet). The server checks every row before it keeps anything; a
// refused file comes back with its faulty rows located (line, field, what is wrong), listed here so they can be
// fixed in the file.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useId, useRef, useState } from "react";
import { ApiError } from "../../api/client";
import { getConfigOptions, invalidateDatasets, uploadDatasetMutation, type DatasetInfo } from "../../api/queries";
import { formatBytes } from "../../format";
import { Button, Card, ErrorMessage, Notice, TextField } from "../ui";

const FILE_INPUT =
  "block w-full text-sm text-zinc-600 file:mr-3 file:rounded-lg file:border-0 file:bg-zinc-100 file:px-3 file:py-2 file:text-sm file:font-medium file:text-zinc-800 hover:file:bg-zinc-200 dark:text-zinc-400 dark:file:bg-zinc-800 dark:file:text-zinc-100 dark:hover:file:bg-zinc-700";

/** The multipart body of POST /datasets, the file under its own name: the server tells the formats apart by it. */
export function datasetFormData(body: unknown): FormData {
  const { file, name } = (body ?? {}) as { file?: Blob | File; name?: string | null };
  const data = new FormData();
  if (file) data.append("file", file, file instanceof File ? file.name : "dataset.jsonl");
  if (name) data.append("name", name);
  return data;
}

export type LocatedError = { line: number | null; field: string | null; message: string };

/** The faulty rows of a refused upload (422 invalid_dataset: `errors` and `error_count`), or null. */
export function locatedErrors(error: unknown): { errors: LocatedError[]; count: number } | null {
  if (!(error instanceof ApiError) || error.code !== "invalid_dataset" || !Array.isArray(error.details.errors)) return null;
  const errors = (error.details.errors as unknown[]).flatMap((item): LocatedError[] => {
    if (typeof item !== "object" || item === null) return [];
    const { line, field, message } = item as Record<string, unknown>;
    return [
      {
        line: typeof line === "number" ? line : null,
        field: typeof field === "string" ? field : null,
        message: typeof message === "string" ? message : String(message),
      },
    ];
  });
  const count = typeof error.details.error_count === "number" ? error.details.error_count : errors.length;
  return { errors, count };
}

export function LocatedErrors({ errors, count }: { errors: LocatedError[]; count: number }) {
  if (errors.length === 0) return null;
  return (
    <div className="space-y-2">
      <div className="overflow-x-auto rounded-lg border border-red-200 dark:border-red-900/60">
        <table className="w-full text-left text-sm" aria-label="Errors in the file">
          <thead className="bg-red-50 text-xs text-red-900 uppercase dark:bg-red-950/40 dark:text-red-200">
            <tr>
              <th scope="col" className="px-3 py-2 font-medium">Line</th>
              <th scope="col" className="px-3 py-2 font-medium">Field</th>
              <th scope="col" className="px-3 py-2 font-medium">Problem</th>
            </tr>
          </thead>
          <tbody className="divide-y divide-red-100 dark:divide-red-900/40">
            {errors.map((error, index) => (
              <tr key={index}>
                <td className="px-3 py-2 tabular-nums whitespace-nowrap">{error.line ?? "whole file"}</td>
                <td className="px-3 py-2 font-mono text-xs break-all">{error.field ?? "—"}</td>
                <td className="px-3 py-2">{error.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {count > errors.length && (
        <p className="text-xs text-zinc-600 dark:text-zinc-400">
          The first {errors.length} of {count.toLocaleString()} faulty rows are shown.
        </p>
      )}
    </div>
  );
}

export function UploadDataset({ onUploaded }: { onUploaded?: (dataset: DatasetInfo) => void }) {
  const queryClient = useQueryClient();
  const config = useQuery(getConfigOptions());
  const fileId = useId();
  const input = useRef<HTMLInputElement>(null);
  const [file, setFile] = useState<File | null>(null);
  const [name, setName] = useState("");
  const [notice, setNotice] = useState<string | null>(null);

  const upload = useMutation({
    ...uploadDatasetMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (dataset) => {
      setNotice(`Uploaded “${dataset.name}”: ${dataset.num_examples.toLocaleString()} examples, all usable.`);
      setFile(null);
      setName("");
      if (input.current) input.current.value = "";
      onUploaded?.(dataset);
    },
    onSettled: () => invalidateDatasets(queryClient),
  });
  const located = locatedErrors(upload.error);
  const limitMb = Number(config.data?.settings.max_dataset_mb) || null;

  return (
    <Card title="Upload a dataset">
      <form
        className="space-y-4"
        onSubmit={(event) => {
          event.preventDefault();
          if (file) upload.mutate({ body: { file, name: name.trim() || null }, bodySerializer: datasetFormData });
        }}
      >
        <p className="text-sm text-zinc-600 dark:text-zinc-400">
          A .jsonl file (one row a line), a .json list of rows, a .csv or a .parquet file{limitMb ? `, up to ${limitMb} MB` : ""}. Rows may be chat
          (<code className="font-mono text-xs">messages</code>), ShareGPT (<code className="font-mono text-xs">conversations</code>),{" "}
          <code className="font-mono text-xs">instruction</code>/<code className="font-mono text-xs">input</code>/
          <code className="font-mono text-xs">output</code>, <code className="font-mono text-xs">prompt</code>/
          <code className="font-mono text-xs">completion</code> or <code className="font-mono text-xs">text</code>. Every row is
          checked before anything is kept.
        </p>
        <div className="grid gap-4 sm:grid-cols-2 sm:items-start">
          <div>
            <label htmlFor={fileId} className="mb-1 block text-sm font-medium">
              Dataset file
            </label>
            <input
              id={fileId}
              ref={input}
              type="file"
              accept=".jsonl,.json,.csv,.parquet,application/json,text/csv"
              className={FILE_INPUT}
              onChange={(event) => {
                upload.reset();
                setNotice(null);
                setFile(event.target.files?.[0] ?? null);
              }}
            />
            {file && <p className="mt-1 text-xs text-zinc-600 dark:text-zinc-400">{`“${file.name}”, ${formatBytes(file.size)}`}</p>}
          </div>
          <TextField
            label="Name (optional)"
            placeholder={file ? file.name.replace(/\.(jsonl|json|csv|parquet)$/i, "") : "the file's name"}
            value={name}
            onChange={(event) => setName(event.target.value)}
            autoComplete="off"
          />
        </div>
        <Button type="submit" variant="primary" disabled={!file} busy={upload.isPending}>
          Upload
        </Button>
        <ErrorMessage error={upload.error} title="The dataset was not stored" onDismiss={() => upload.reset()} />
        {located && <LocatedErrors {...located} />}
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
      </form>
    </Card>
  );
}
