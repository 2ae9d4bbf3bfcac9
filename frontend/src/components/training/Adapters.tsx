// The trained LoRA adapters: put one on the loaded model so chat answers through it (or take it off), merge one into
// its base model as a new local model (a merge job, followed in line), or delete one.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { ApiError } from "../../api/client";
import {
  attachAdapterMutation,
  deleteAdapterMutation,
  detachAdapterMutation,
  getCurrentModelOptions,
  invalidateModels,
  listAdaptersOptions,
  listJobsOptions,
  mergeAdapterMutation,
  type AdapterInfo,
} from "../../api/queries";
import { formatBytes, formatDate } from "../../format";
import { isActive, useJobEvents } from "../../hooks/useJobEvents";
import { jobError, JobProgress } from "../models/JobCard";
import { rememberJob } from "../models/jobCache";
import { Badge, Button, Card, ConfirmDialog, EmptyState, ErrorMessage, Loading, Notice, TextField } from "../ui";

/**
 * Whether `force` can override an attach the server refused: the adapter was trained with another chat template
 * than the loaded model has (`chat_template_mismatch`). The other 409s of an attach name what is in the way (the
 * generations running, a load, the wrong base model) and cannot be forced.
 */
export function forceable(error: unknown): boolean {
  return error instanceof ApiError && error.status === 409 && error.code === "chat_template_mismatch";
}

function loss(value: number | null): string {
  return value === null ? "—" : value.toPrecision(3);
}

/** The new model's default name: the base's and the adapter's, in the characters a model name may have. */
function mergedName(adapter: AdapterInfo): string {
  const base = adapter.base_model_id.split("/").pop() ?? adapter.base_model_id;
  return `${base}-${adapter.name}`.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "").slice(0, 100);
}

/** A merge job of this adapter, followed live: its bar while it runs, then where the new model is (or why not). */
function MergeStatus({ jobId }: { jobId: string }) {
  const { data: job } = useJobEvents(jobId);
  if (!job) return null;
  if (isActive(job)) return <JobProgress job={job} />;
  if (job.status === "ready" && job.kind === "merge") {
    return (
      <Notice>
        Merged into “{job.result ?? job.name}”: it is under{" "}
        <Link to="/models" className="underline">
          Local models
        </Link>
        , ready to load.
      </Notice>
    );
  }
  const failure = jobError(job);
  return failure ? <ErrorMessage error={failure} title="The merge failed" /> : null;
}

function MergeForm({ adapter, onCancel, onMerged }: { adapter: AdapterInfo; onCancel: () => void; onMerged: (jobId: string) => void }) {
  const queryClient = useQueryClient();
  const [name, setName] = useState(() => mergedName(adapter));
  const merge = useMutation({
    ...mergeAdapterMutation(),
    onSuccess: (job) => {
      rememberJob(queryClient, job);
      onMerged(job.id);
    },
  });
  return (
    <form
      className="space-y-3 rounded-lg border border-zinc-200 p-3 dark:border-zinc-800"
      onSubmit={(event) => {
        event.preventDefault();
        if (name.trim()) merge.mutate({ path: { adapter_id: adapter.id }, body: { name: name.trim() } });
      }}
    >
      <div className="flex flex-col gap-3 sm:flex-row sm:items-end">
        <TextField
          label="New model name"
          className="min-w-0 flex-1"
          value={name}
          onChange={(event) => setName(event.target.value)}
          hint="Letters, digits, '.', '_' and '-'. The new model is written to the models folder."
          autoComplete="off"
        />
        <div className="flex gap-2 sm:pb-6">
          <Button type="submit" variant="primary" busy={merge.isPending} disabled={!name.trim()}>
            Start merge
          </Button>
          <Button variant="ghost" onClick={onCancel}>
            Cancel
          </Button>
        </div>
      </div>
      <ErrorMessage error={merge.error} title="Could not start the merge" onDismiss={() => merge.reset()} />
    </form>
  );
}

function AdapterRow({ adapter, attached, loaded, mergeJobId, busy, onAttach, onDetach, onDelete, onMerged }: {
  adapter: AdapterInfo;
  attached: boolean;
  /** The loaded model's id, if any. */
  loaded: string | null;
  mergeJobId: string | null;
  busy: { attach: boolean; detach: boolean };
  onAttach: () => void;
  onDetach: () => void;
  onDelete: () => void;
  onMerged: (jobId: string) => void;
}) {
  const [merging, setMerging] = useState(false);
  const details: Array<[string, string]> = [
    ["Base model", adapter.base_model_id],
    ["Dataset", adapter.dataset_name],
    ["Train loss", loss(adapter.train_loss)],
    ["Eval loss", loss(adapter.eval_loss)],
    ["Steps", adapter.steps.toLocaleString()],
    ["LoRA", `r ${adapter.lora.r} · alpha ${adapter.lora.alpha}`],
    ["Size", formatBytes(adapter.size_bytes)],
    ["Created", formatDate(adapter.created_at)],
  ];
  const otherBase = loaded !== null && loaded !== adapter.base_model_id;
  return (
    <li className="space-y-3 py-4" aria-label={adapter.name}>
      <div className="flex flex-col gap-3 lg:flex-row lg:items-center lg:justify-between">
        <div className="min-w-0 space-y-1">
          <div className="flex flex-wrap items-center gap-2">
            <span className="font-medium break-all" title={adapter.path}>
              {adapter.name}
            </span>
            {attached && <Badge tone="good">In chat</Badge>}
          </div>
          <dl className="flex flex-wrap gap-x-4 gap-y-0.5 text-xs text-zinc-600 dark:text-zinc-400">
            {details.map(([label, value]) => (
              <div key={label} className="flex gap-1">
                <dt className="text-zinc-500 dark:text-zinc-500">{label}</dt>
                <dd className="font-medium break-all text-zinc-700 dark:text-zinc-300">{value}</dd>
              </div>
            ))}
          </dl>
          {!attached && (loaded === null || otherBase) && (
            <p className="text-xs text-zinc-500 dark:text-zinc-400">
              To use it in chat, load {adapter.base_model_id} first{otherBase ? ` (${loaded} is loaded)` : ""}.
            </p>
          )}
        </div>
        <div className="flex shrink-0 flex-wrap gap-2">
          {attached ? (
            <Button onClick={onDetach} busy={busy.detach} aria-label={`Take ${adapter.name} off the model`}>
              Take off
            </Button>
          ) : (
            <Button variant="primary" onClick={onAttach} busy={busy.attach} aria-label={`Use ${adapter.name} in chat`}>
              Use in chat
            </Button>
          )}
          <Button onClick={() => setMerging((open) => !open)} aria-expanded={merging} aria-label={`Merge ${adapter.name} into a new model`}>
            Merge into a new model
          </Button>
          <Button variant="ghost" onClick={onDelete} aria-label={`Delete ${adapter.name}`} className="text-red-700 dark:text-red-400">
            Delete
          </Button>
        </div>
      </div>
      {merging && (
        <MergeForm
          adapter={adapter}
          onCancel={() => setMerging(false)}
          onMerged={(jobId) => {
            setMerging(false);
            onMerged(jobId);
          }}
        />
      )}
      {mergeJobId && <MergeStatus jobId={mergeJobId} />}
    </li>
  );
}

export function Adapters() {
  const queryClient = useQueryClient();
  const adapters = useQuery(listAdaptersOptions());
  const current = useQuery(getCurrentModelOptions());
  // Merges running now (started here, in another tab, or with curl), to show under their adapter.
  const merges = useQuery(listJobsOptions({ query: { kind: "merge", status: "active" } }));
  const [startedMerges, setStartedMerges] = useState<Record<string, string>>({});
  const [notice, setNotice] = useState<string | null>(null);
  const [toDelete, setToDelete] = useState<AdapterInfo | null>(null);

  const attach = useMutation({
    ...attachAdapterMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (model) =>
      setNotice(`“${model.adapter?.name ?? "The adapter"}” is on ${model.model_id}: chat and the API answer through it.`),
    onSettled: () => invalidateModels(queryClient),
  });
  const detach = useMutation({
    ...detachAdapterMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (model) => setNotice(`Taken off: ${model.model_id} answers on its own again.`),
    onSettled: () => invalidateModels(queryClient),
  });
  const remove = useMutation({
    ...deleteAdapterMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => setNotice(`Deleted; ${formatBytes(data.freed_bytes)} freed.`),
    onSettled: () => {
      setToDelete(null);
      return invalidateModels(queryClient);
    },
  });

  const attachAnyway = (adapterId: string) => attach.mutate({ body: { adapter_id: adapterId, force: true } });
  const attachedId = current.data?.metadata?.adapter?.id ?? null;
  const loaded = current.data?.metadata?.model_id ?? null;
  const running = new Map<string, string>();
  for (const job of merges.data?.jobs ?? []) if (job.kind === "merge") running.set(job.adapter_id, job.id);
  const attachingName = adapters.data?.adapters.find((a) => a.id === attach.variables?.body.adapter_id)?.name ?? "the adapter";
  const error = attach.error ?? detach.error ?? remove.error;
  const errorTitle = attach.error
    ? `Could not use “${attachingName}” in chat`
    : detach.error
      ? "Could not take the adapter off"
      : "Could not delete the adapter";

  return (
    <Card title="Adapters">
      <div className="space-y-4">
        {error && (
          <div className="space-y-2">
            <ErrorMessage
              error={error}
              title={errorTitle}
              onDismiss={() => {
                attach.reset();
                detach.reset();
                remove.reset();
              }}
            />
            {attach.error && forceable(attach.error) && attach.variables && (
              <Button variant="danger" onClick={() => attachAnyway(attach.variables.body.adapter_id)} busy={attach.isPending}>
                Use anyway
              </Button>
            )}
          </div>
        )}
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        {adapters.isPending ? (
          <Loading label="Reading the adapters…" />
        ) : adapters.isError ? (
          <ErrorMessage error={adapters.error} title="Could not list the adapters" />
        ) : adapters.data.adapters.length === 0 ? (
          <EmptyState title="No adapters yet">A finished training run leaves its adapter here.</EmptyState>
        ) : (
          <ul className="-my-4 divide-y divide-zinc-100 dark:divide-zinc-800" aria-label="Adapters">
            {adapters.data.adapters.map((adapter) => (
              <AdapterRow
                key={adapter.id}
                adapter={adapter}
                attached={adapter.id === attachedId}
                loaded={loaded}
                mergeJobId={startedMerges[adapter.id] ?? running.get(adapter.id) ?? null}
                busy={{
                  attach: attach.isPending && attach.variables?.body.adapter_id === adapter.id,
                  detach: detach.isPending,
                }}
                onAttach={() => {
                  detach.reset();
                  remove.reset();
                  attach.mutate({ body: { adapter_id: adapter.id } });
                }}
                onDetach={() => {
                  attach.reset();
                  remove.reset();
                  detach.mutate({});
                }}
                onDelete={() => {
                  attach.reset();
                  detach.reset();
                  remove.reset();
                  setToDelete(adapter);
                }}
                onMerged={(jobId) => setStartedMerges((before) => ({ ...before, [adapter.id]: jobId }))}
              />
            ))}
          </ul>
        )}
      </div>
      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this adapter?"
        confirmLabel="Delete"
        busy={remove.isPending}
        onCancel={() => setToDelete(null)}
        onConfirm={() => toDelete && remove.mutate({ path: { adapter_id: toDelete.id } })}
      >
        {toDelete && (
          <p>
            <span className="font-medium break-all">{toDelete.name}</span> and its {formatBytes(toDelete.size_bytes)} of files will be
            removed. Models merged from it stay. This cannot be undone.
          </p>
        )}
      </ConfirmDialog>
    </Card>
  );
}
