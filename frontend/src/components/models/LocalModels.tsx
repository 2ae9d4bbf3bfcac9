// The models on this machine (models folder and Hub cache): what each is, and Load / Delete. Load starts a load
// job (POST /model/load) and shows its progress under the model until it is ready.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import type { ApiError } from "../../api/client";
import {
  deleteLocalModelMutation,
  getCurrentModelOptions,
  getCurrentModelQueryKey,
  invalidateModels,
  listLocalModelsOptions,
  loadModelMutation,
  isModelJob,
  type Job,
  type ModelJob,
  type LocalModel,
} from "../../api/queries";
import { formatBytes, formatDate, formatParams } from "../../format";
import { isActive, useJobEvents } from "../../hooks/useJobEvents";
import { Badge, Button, Card, ConfirmDialog, EmptyState, ErrorMessage, Loading, Notice } from "../ui";
import { jobError, JobProgress } from "./JobCard";
import { rememberJob } from "./jobCache";

const SOURCE: Record<LocalModel["source"], string> = { local: "models folder", "hub-cache": "Hub cache" };

function ModelRow({ model, job, onLoad, onDelete, loading, loadDisabled }: {
  model: LocalModel;
  /** The load job running for this model, if any. */
  job?: Job;
  onLoad: () => void;
  onDelete: () => void;
  loading: boolean;
  loadDisabled: boolean;
}) {
  const details: Array<[string, string]> = [
    ["Format", model.format === "none" ? "no weights" : model.format],
    ["Parameters", model.num_parameters ? formatParams(model.num_parameters) : "unknown"],
    ["Size", formatBytes(model.size_bytes)],
    ["Architecture", model.architecture ?? model.model_type ?? "unknown"],
    ...(model.context_length ? ([["Context", `${model.context_length.toLocaleString()} tokens`]] as Array<[string, string]>) : []),
    ["In", SOURCE[model.source]],
    ["Changed", formatDate(model.modified_at)],
  ];
  return (
    <li className="space-y-3 py-4">
      <div className="flex flex-col gap-3 sm:flex-row sm:items-center sm:justify-between">
        <div className="min-w-0 space-y-1">
          <div className="flex flex-wrap items-center gap-2">
            <span className="font-medium break-all" title={model.path}>
              {model.id}
            </span>
            {model.loaded && <Badge tone="good">Loaded</Badge>}
            {model.format === "gguf" && <Badge tone="info">{`GGUF${model.quantization ? ` · ${model.quantization}` : ""}`}</Badge>}
            {!model.complete && <Badge tone="warn">Incomplete</Badge>}
          </div>
          <dl className="flex flex-wrap gap-x-4 gap-y-0.5 text-xs text-zinc-600 dark:text-zinc-400">
            {details.map(([label, value]) => (
              <div key={label} className="flex gap-1">
                <dt className="text-zinc-500 dark:text-zinc-500">{label}</dt>
                <dd className="font-medium text-zinc-700 dark:text-zinc-300">{value}</dd>
              </div>
            ))}
          </dl>
          {model.problems && model.problems.length > 0 && (
            <ul className="list-inside list-disc text-xs text-amber-800 dark:text-amber-300">
              {model.problems.map((problem) => (
                <li key={problem}>{problem}</li>
              ))}
            </ul>
          )}
        </div>
        <div className="flex shrink-0 gap-2">
          <Button
            variant={model.loaded ? "secondary" : "primary"}
            onClick={onLoad}
            busy={loading}
            disabled={loadDisabled || model.loaded || !model.complete}
            aria-label={`Load ${model.id}`}
            title={model.loaded ? "Already loaded" : !model.complete ? "Incomplete: it cannot be loaded" : undefined}
          >
            Load
          </Button>
          <Button variant="ghost" onClick={onDelete} aria-label={`Delete ${model.id}`} className="text-red-700 dark:text-red-400">
            Delete
          </Button>
        </div>
      </div>
      {job && <JobProgress job={job} />}
    </li>
  );
}

/** "Loaded on cpu as float32 in 1.2 s." and the like: what a load job that has just ended says. */
function loadOutcome(job: ModelJob): { notice: string | null; failure: ApiError | null } {
  if (job.status === "ready" && job.result) {
    const m = job.result;
    return { notice: `Loaded on ${m.device} as ${m.dtype} in ${m.load_seconds.toFixed(1)} s.`, failure: null };
  }
  if (job.status === "failed") return { notice: null, failure: jobError(job) };
  if (job.status === "cancelled") return { notice: `Stopped loading ${job.model_id}; the model loaded before, if any, stays.`, failure: null };
  return { notice: null, failure: null };
}

export function LocalModels() {
  const queryClient = useQueryClient();
  const models = useQuery(listLocalModelsOptions());
  const current = useQuery({
    ...getCurrentModelOptions(),
    refetchInterval: (q) => (q.state.data?.activity === "loading" || q.state.data?.loading ? 1_000 : false),
  });
  const [toDelete, setToDelete] = useState<LocalModel | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [failure, setFailure] = useState<ApiError | null>(null);
  // The load started here, and the loads seen to end (whose outcome has been said once).
  const [startedId, setStartedId] = useState<string | null>(null);
  const [ended, setEnded] = useState<ReadonlySet<string>>(() => new Set());

  const load = useMutation({
    ...loadModelMutation(),
    onMutate: () => {
      setNotice(null);
      setFailure(null);
    },
    onSuccess: (job) => {
      rememberJob(queryClient, job);
      setStartedId(job.id);
    },
    // Refused (another load runs, the folder went): show what the model cache is doing now.
    onError: () => queryClient.invalidateQueries({ queryKey: getCurrentModelQueryKey() }),
  });
  const remove = useMutation({
    ...deleteLocalModelMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => setNotice(`Deleted; ${formatBytes(data.freed_bytes)} freed.`),
    onSettled: () => {
      setToDelete(null);
      return invalidateModels(queryClient);
    },
  });

  // Follow the load started here, or else one started elsewhere (another tab, the API) that the server reports.
  const running = current.data?.loading_job;
  const elsewhere = running && running.kind === "load" ? running.id : null;
  const followId = [startedId, elsewhere].find((id) => id !== null && !ended.has(id)) ?? null;
  const followed = useJobEvents(followId);
  const job = followId !== null && isModelJob(followed.data) ? followed.data : undefined;
  const loadRunning = job !== undefined && isActive(job);

  // Once the load ends, say how it went (once); the job's hook refreshes the models and the current model.
  useEffect(() => {
    if (!job || isActive(job) || ended.has(job.id)) return;
    const outcome = loadOutcome(job);
    setEnded((before) => new Set(before).add(job.id));
    setNotice(outcome.notice);
    setFailure(outcome.failure);
  }, [job, ended]);

  const loadingId = load.isPending
    ? (load.variables?.body?.model_id ?? null)
    : loadRunning
      ? job.model_id
      : (current.data?.loading ?? null);
  const shownInRow = loadRunning && models.data?.models.some((model) => model.id === job.model_id);
  const loadError = load.error ?? failure;
  const error = loadError ?? remove.error;

  return (
    <Card title="Local models">
      <div className="space-y-4">
        {error && (
          <ErrorMessage
            error={error}
            title={loadError ? "Could not load the model" : "Could not delete the model"}
            onDismiss={() => {
              if (load.error) load.reset();
              else if (failure) setFailure(null);
              else remove.reset();
            }}
          />
        )}
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        {loadRunning && !shownInRow && <JobProgress job={job} />}
        {models.isPending ? (
          <Loading label="Reading the models folder…" />
        ) : models.isError ? (
          <ErrorMessage error={models.error} title="Could not list local models" />
        ) : models.data.models.length === 0 ? (
          <EmptyState title="No local models yet">
            Download one from the Hub above, or upload a model folder or .zip below. Orchard also finds models you put in{" "}
            <code className="font-mono text-xs break-all">{models.data.models_dir}</code>.
          </EmptyState>
        ) : (
          <>
            <ul className="-my-4 divide-y divide-zinc-100 dark:divide-zinc-800">
              {models.data.models.map((model) => (
                <ModelRow
                  key={`${model.source}:${model.id}`}
                  model={model}
                  job={loadRunning && job.model_id === model.id ? job : undefined}
                  loading={loadingId === model.id}
                  loadDisabled={Boolean(loadingId) || remove.isPending}
                  onLoad={() => load.mutate({ body: { model_id: model.id } })}
                  onDelete={() => {
                    remove.reset();
                    setToDelete(model);
                  }}
                />
              ))}
            </ul>
            <p className="pt-4 text-xs text-zinc-500 dark:text-zinc-400">
              From <code className="font-mono break-all">{models.data.models_dir}</code> and the Hugging Face cache.
            </p>
          </>
        )}
      </div>
      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this model?"
        confirmLabel="Delete"
        busy={remove.isPending}
        onCancel={() => setToDelete(null)}
        onConfirm={() => toDelete && remove.mutate({ path: { model_id: toDelete.id } })}
      >
        {toDelete && (
          <p>
            <span className="font-medium break-all">{toDelete.id}</span> and its {formatBytes(toDelete.size_bytes)} of files
            will be removed from <code className="font-mono text-xs break-all">{toDelete.path}</code>. This cannot be undone.
          </p>
        )}
      </ConfirmDialog>
    </Card>
  );
}
