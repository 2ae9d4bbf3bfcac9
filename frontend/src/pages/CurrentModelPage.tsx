import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import {
  detachAdapterMutation,
  getCurrentModelOptions,
  invalidateModels,
  unloadModelMutation,
  type CurrentModelResponse,
  type ModelMetadata,
} from "../api/queries";
import { MemoryGauge } from "../components/MemoryGauge";
import { LiveJobProgress } from "../components/models/JobCard";
import { Badge, Button, Card, EmptyState, ErrorMessage, Facts, Loading, Notice, PageHeader, Spinner } from "../components/ui";
import { formatDate, formatDuration, formatGb, formatParams } from "../format";

const SOURCE: Record<ModelMetadata["source"], string> = {
  hub: "Hugging Face Hub",
  local: "Local folder",
  upload: "Uploaded",
};

function loadTime(seconds: number): string {
  return seconds < 60 ? `${seconds.toFixed(seconds < 1 ? 2 : 1)} s` : formatDuration(seconds);
}

function ModelFacts({ model }: { model: ModelMetadata }) {
  return (
    <Facts
      items={[
        [
          "Adapter",
          model.adapter ? (
            <span className="flex flex-wrap items-center gap-2">
              <Badge tone="good">{model.adapter.name}</Badge>{" "}
              <span className="text-xs font-normal text-zinc-500 dark:text-zinc-400">chat answers through it</span>
            </span>
          ) : (
            <span className="text-zinc-500 dark:text-zinc-400">none</span>
          ),
        ],
        ["Architecture", model.architecture ?? "unknown"],
        ["Model type", model.model_type ?? "unknown"],
        ["Parameters", formatParams(model.num_parameters)],
        ["Engine", model.engine ?? "transformers"],
        ["Device", <Badge tone="info">{model.device}</Badge>],
        [model.engine === "llama.cpp" ? "Weights" : "Dtype", model.dtype],
        ["Context length", model.context_length ? `${model.context_length.toLocaleString()} tokens` : "unknown"],
        ["Vocabulary", model.vocab_size ? model.vocab_size.toLocaleString() : "unknown"],
        ["Chat template", <Badge tone={model.has_chat_template ? "good" : "neutral"}>{model.has_chat_template ? "Yes" : "No"}</Badge>],
        ["Memory", `${formatGb(model.measured_memory_gb)} (estimated ${formatGb(model.estimated_memory_gb)})`],
        ["Load time", loadTime(model.load_seconds)],
        ["Loaded at", formatDate(model.loaded_at)],
        ["Source", model.revision ? `${SOURCE[model.source]} · ${model.revision.slice(0, 10)}` : SOURCE[model.source]],
        ["Path", <code className="font-mono text-xs break-all">{model.path}</code>],
      ]}
    />
  );
}

function isLoading(data: CurrentModelResponse | undefined): boolean {
  return Boolean(data && (data.activity === "loading" || data.loading));
}

/** While a model loads: which one, and the load's progress bar (the job, followed live) with its Cancel. */
function LoadingNow({ data }: { data: CurrentModelResponse }) {
  const job = data.loading_job ?? null;
  const name = data.loading ?? job?.model_id ?? null;
  return (
    <div className="space-y-3 rounded-xl border border-amber-200 bg-amber-50 px-5 py-4 text-sm text-amber-900 dark:border-amber-900/60 dark:bg-amber-950/30 dark:text-amber-200">
      <div role="status" className="flex items-center gap-3">
        <Spinner />
        <p>
          {name ? (
            <>
              Loading <span className="font-medium break-all">{name}</span>…
            </>
          ) : (
            "Loading a model…"
          )}{" "}
          this page updates when it is ready.
        </p>
      </div>
      {job && <LiveJobProgress job={job} />}
    </div>
  );
}

/** "Generating: 2 chat replies running" while the model answers (or has replies waiting on it). */
function Generating({ count }: { count: number }) {
  return (
    <span role="status" className="flex items-center">
      <Badge tone="info">
        Generating{count > 0 ? `: ${count} chat ${count === 1 ? "reply" : "replies"} running` : ""}
      </Badge>
    </span>
  );
}

export function CurrentModelPage() {
  const queryClient = useQueryClient();
  const current = useQuery({
    ...getCurrentModelOptions(),
    // Faster while something happens that this page shows: a load, or replies being generated.
    refetchInterval: (query) =>
      isLoading(query.state.data) || query.state.data?.activity === "generating" ? 1_000 : 5_000,
  });
  const [notice, setNotice] = useState<string | null>(null);
  const unload = useMutation({
    ...unloadModelMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) =>
      setNotice(
        data.status === "unloaded"
          ? `Unloaded${data.freed_gb ? `; ${formatGb(data.freed_gb)} given back` : ""}.`
          : data.message,
      ),
    onSettled: () => invalidateModels(queryClient),
  });

  const detach = useMutation({
    ...detachAdapterMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (model) => setNotice(`Adapter taken off: ${model.model_id} answers on its own again.`),
    onSettled: () => invalidateModels(queryClient),
  });

  return (
    <>
      <PageHeader title="Current model" description="The model Orchard answers with, and the memory it holds." />
      <div className="space-y-6">
        <ErrorMessage error={unload.error} title="Could not unload the model" onDismiss={() => unload.reset()} />
        <ErrorMessage error={detach.error} title="Could not take the adapter off" onDismiss={() => detach.reset()} />
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        {current.isPending ? (
          <Card>
            <Loading />
          </Card>
        ) : current.isError ? (
          <ErrorMessage error={current.error} title="Could not read the current model" />
        ) : (
          <>
            {isLoading(current.data) && <LoadingNow data={current.data} />}
            {current.data.metadata ? (
              <Card
                title={<span className="break-all">{current.data.metadata.model_id}</span>}
                actions={
                  <>
                    {current.data.activity === "generating" && <Generating count={current.data.generations ?? 0} />}
                    {current.data.metadata.adapter && (
                      <Button onClick={() => detach.mutate({})} busy={detach.isPending} aria-label={`Take ${current.data.metadata.adapter.name} off the model`}>
                        Take off adapter
                      </Button>
                    )}
                    <Button variant="danger" onClick={() => unload.mutate({})} busy={unload.isPending}>
                      Unload
                    </Button>
                  </>
                }
              >
                <ModelFacts model={current.data.metadata} />
              </Card>
            ) : (
              !isLoading(current.data) && (
                <EmptyState title="No model loaded">
                  <Link to="/models" className="text-brand-700 underline dark:text-brand-500">
                    Load or download one on the Models page
                  </Link>
                  .
                </EmptyState>
              )
            )}
            <Card title="Memory">
              <MemoryGauge memory={current.data.memory} modelGb={current.data.metadata?.measured_memory_gb} />
            </Card>
          </>
        )}
      </div>
    </>
  );
}
