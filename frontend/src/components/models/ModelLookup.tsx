// Find a model on the Hugging Face Hub: what it is, whether it fits here, and a download that can load it.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useState } from "react";
import { checkDownloadOptions, downloadModelMutation, getModelInfoOptions } from "../../api/queries";
import { formatBytes } from "../../format";
import { Button, Card, Checkbox, ErrorMessage, Loading, SelectField, TextField } from "../ui";
import { rememberJob } from "./jobCache";
import { ModelInfoView } from "./ModelInfoView";

/** "org/name" from what people paste: the id itself, or the model page's address. */
export function normaliseModelId(text: string): string {
  return text
    .trim()
    .replace(/^https?:\/\/(www\.)?huggingface\.co\//i, "")
    .replace(/\/(tree|blob|resolve)\/.*$/, "")
    .replace(/\/+$/, "");
}

export function ModelLookup() {
  const queryClient = useQueryClient();
  const [text, setText] = useState("");
  const [lookupId, setLookupId] = useState<string | null>(null);
  const [load, setLoad] = useState(true);
  const [force, setForce] = useState(false);
  const [ggufChoice, setGgufChoice] = useState("");
  const modelId = normaliseModelId(text);

  const lookup = { path: { model_id: lookupId ?? "" } };
  const info = useQuery({ ...getModelInfoOptions(lookup), enabled: lookupId !== null, retry: false, staleTime: 60_000 });
  // A repo of GGUF files holds one file per quantization: the person picks one (the only one is picked for them),
  // and the verdict and the download are for that file.
  const ggufFiles = info.data?.weight_format === "gguf" ? info.data.files.filter((f) => f.path.endsWith(".gguf")) : [];
  const ggufFile = ggufFiles.length === 1 ? ggufFiles[0].path : ggufChoice || undefined;
  const mustChoose = ggufFiles.length > 1 && !ggufFile;
  const check = useQuery({
    ...checkDownloadOptions({ ...lookup, query: ggufFile ? { gguf_file: ggufFile } : undefined }),
    enabled: lookupId !== null && info.data !== undefined && !mustChoose,
    retry: false,
    staleTime: 10_000,
  });

  const download = useMutation({
    ...downloadModelMutation(),
    onSuccess: (job) => rememberJob(queryClient, job),
  });

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    if (!modelId) return;
    download.reset();
    if (modelId === lookupId) {
      void info.refetch();
      void check.refetch();
    } else {
      setLookupId(modelId);
      setForce(false);
      setGgufChoice("");
    }
  };

  // What blocks a download here: disk always, memory only when it will be loaded (the server's own rule).
  const verdictKnown = lookupId !== null && lookupId === modelId && (check.data !== undefined || info.data !== undefined);
  const blocked = check.data
    ? !check.data.fits_disk || (load && !check.data.fits_memory)
    : load && info.data !== undefined && !info.data.memory.fits;
  const offerForce = Boolean(verdictKnown) && blocked;

  return (
    <Card title="Get a model from the Hugging Face Hub">
      <form onSubmit={onSubmit} className="flex flex-col gap-3 sm:flex-row sm:items-end" role="search" aria-label="Look up a model">
        <TextField
          label="Hugging Face model id"
          name="model_id"
          placeholder="e.g. Qwen/Qwen2.5-0.5B-Instruct"
          value={text}
          onChange={(event) => setText(event.target.value)}
          autoComplete="off"
          autoCapitalize="off"
          spellCheck={false}
          className="flex-1"
        />
        <Button type="submit" disabled={!modelId} busy={info.isFetching}>
          Look up
        </Button>
      </form>

      {/* The result belongs to the id in the box; once the box says another id, it is hidden until looked up. */}
      {lookupId !== null && lookupId === modelId && (
        <div className="mt-5 space-y-4">
          {info.isPending && info.isFetching && <Loading label="Asking the Hub…" />}
          {info.isError && <ErrorMessage error={info.error} title="Could not look up this model" />}
          {info.data && ggufFiles.length > 1 && (
            <SelectField
              label="GGUF file"
              value={ggufChoice}
              onChange={(event) => {
                setGgufChoice(event.target.value);
                setForce(false);
              }}
              options={[
                ["", "Choose a quantization…"],
                ...ggufFiles.map((f): [string, string] => [f.path, `${f.path}${f.size ? ` · ${formatBytes(f.size)}` : ""}`]),
              ]}
              hint="One file per quantization: smaller files are more quantized. q4_k_m and q8_0 are the usual picks."
            />
          )}
          {info.data && <ModelInfoView info={info.data} check={check.data} checkError={check.error} />}
        </div>
      )}

      <div className="mt-5 flex flex-col gap-3 border-t border-zinc-100 pt-4 sm:flex-row sm:flex-wrap sm:items-center dark:border-zinc-800">
        <Checkbox
          label="Load when downloaded"
          checked={load}
          onChange={(event) => setLoad(event.target.checked)}
        />
        {offerForce && (
          <Checkbox
            label="Ignore the fit check"
            hint="Download (and load) anyway, whatever the verdict above says."
            checked={force}
            onChange={(event) => setForce(event.target.checked)}
          />
        )}
        <Button
          variant="primary"
          className="sm:ml-auto"
          disabled={!modelId || (lookupId === modelId && mustChoose)}
          busy={download.isPending}
          onClick={() =>
            download.mutate({
              body: {
                model_id: modelId,
                load,
                force: offerForce && force,
                ...(lookupId === modelId && ggufFile ? { gguf_file: ggufFile } : {}),
              },
            })
          }
        >
          Download
        </Button>
      </div>
      {download.isError && (
        <div className="mt-4">
          <ErrorMessage error={download.error} title="Could not start the download" onDismiss={() => download.reset()} />
        </div>
      )}
    </Card>
  );
}
