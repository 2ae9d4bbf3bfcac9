// Upload a model from this computer: a folder (config, weights, tokenizer) or one .zip, into the models folder.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type ChangeEvent, useId, useRef, useState } from "react";
import { getConfigOptions, invalidateModels, uploadModelMutation } from "../../api/queries";
import { formatBytes } from "../../format";
import { Button, Card, Checkbox, ErrorMessage, Notice, TextField } from "../ui";
import { selectionFrom, uploadFormData, type UploadSelection } from "./upload";

const FILE_INPUT =
  "block w-full text-sm text-zinc-600 file:mr-3 file:rounded-lg file:border-0 file:bg-zinc-100 file:px-3 file:py-2 file:text-sm file:font-medium file:text-zinc-800 hover:file:bg-zinc-200 dark:text-zinc-400 dark:file:bg-zinc-800 dark:file:text-zinc-100 dark:hover:file:bg-zinc-700";

// React does not know webkitdirectory; as a plain attribute it lets the file picker choose a folder.
const DIRECTORY = { webkitdirectory: "" } as Record<string, string>;

export function UploadModel() {
  const queryClient = useQueryClient();
  const config = useQuery(getConfigOptions());
  const folderId = useId();
  const zipId = useId();
  const folderInput = useRef<HTMLInputElement>(null);
  const zipInput = useRef<HTMLInputElement>(null);
  const [selection, setSelection] = useState<UploadSelection | null>(null);
  const [name, setName] = useState("");
  const [load, setLoad] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);

  const upload = useMutation({
    ...uploadModelMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => {
      const loaded = "loaded" in data && data.loaded;
      setNotice(`Uploaded: it is now under Local models${loaded ? ", loaded" : ""}.`);
      setSelection(null);
      setName("");
      if (folderInput.current) folderInput.current.value = "";
      if (zipInput.current) zipInput.current.value = "";
    },
    onSettled: () => invalidateModels(queryClient),
  });

  const choose = (kind: UploadSelection["kind"]) => (event: ChangeEvent<HTMLInputElement>) => {
    // One source at a time: picking a folder forgets the zip, and the other way round.
    const other = kind === "folder" ? zipInput.current : folderInput.current;
    if (other) other.value = "";
    upload.reset();
    setNotice(null);
    setSelection(selectionFrom(kind, event.target.files));
  };

  const limitGb = Number(config.data?.settings.max_upload_gb) || null;
  const tooLarge = selection !== null && selection.kind === "folder" && limitGb !== null && selection.bytes > limitGb * 1e9;

  return (
    <Card title="Upload a model">
      <form
        className="space-y-4"
        onSubmit={(event) => {
          event.preventDefault();
          if (!selection || selection.files.length === 0) return;
          upload.mutate({
            body: { files: selection.files, name: name.trim() || null },
            query: { load },
            bodySerializer: uploadFormData,
          });
        }}
      >
        <p className="text-sm text-zinc-600 dark:text-zinc-400">
          A folder with the model's config, weights and tokenizer, or the same as one .zip
          {limitGb ? `, up to ${limitGb} GB` : ""}. It is stored in the models folder.
        </p>
        <div className="grid gap-4 sm:grid-cols-2">
          <div>
            <label htmlFor={folderId} className="mb-1 block text-sm font-medium">
              Model folder
            </label>
            <input id={folderId} ref={folderInput} type="file" multiple {...DIRECTORY} onChange={choose("folder")} className={FILE_INPUT} />
          </div>
          <div>
            <label htmlFor={zipId} className="mb-1 block text-sm font-medium">
              Model .zip
            </label>
            <input id={zipId} ref={zipInput} type="file" accept=".zip,application/zip" onChange={choose("zip")} className={FILE_INPUT} />
          </div>
        </div>
        {selection && (
          <p className="text-sm" aria-live="polite">
            {selection.kind === "folder"
              ? `${selection.files.length} files from “${selection.name}”, ${formatBytes(selection.bytes)}`
              : `“${selection.name}.zip”, ${formatBytes(selection.bytes)}`}
            {selection.skipped > 0 && (
              <span className="text-zinc-500 dark:text-zinc-400">
                {" "}
                ({selection.skipped} hidden {selection.skipped === 1 ? "file" : "files"} such as .git left out)
              </span>
            )}
          </p>
        )}
        {tooLarge && (
          <p className="text-sm text-amber-700 dark:text-amber-300">
            This is larger than the server accepts ({limitGb} GB, ORCHARD_MAX_UPLOAD_GB).
          </p>
        )}
        <div className="grid gap-4 sm:grid-cols-2 sm:items-end">
          <TextField
            label="Name (optional)"
            placeholder={selection?.name || "the folder's name"}
            value={name}
            onChange={(event) => setName(event.target.value)}
            hint="Letters, digits, '.', '_' and '-'."
            autoComplete="off"
          />
          <Checkbox label="Load after upload" checked={load} onChange={(event) => setLoad(event.target.checked)} className="sm:pb-6" />
        </div>
        <div className="flex flex-wrap items-center gap-3">
          <Button type="submit" variant="primary" disabled={!selection || selection.files.length === 0} busy={upload.isPending}>
            Upload
          </Button>
          {upload.isPending && selection && (
            <span role="status" className="text-sm text-zinc-600 dark:text-zinc-400">
              Sending {formatBytes(selection.bytes)}{load ? ", then loading" : ""}…
            </span>
          )}
        </div>
        <ErrorMessage error={upload.error} title="Upload failed" onDismiss={() => upload.reset()} />
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
      </form>
    </Card>
  );
}
