// Start a LoRA fine-tune: a dataset, a model (the loaded one by default) and the run's settings, every one of them
// optional (empty takes the server's default, shown as the placeholder). While the form rests, the server's plan
// says whether the run fits before anything starts; a start the server refuses for memory (507) can be sent again
// with force.
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { type ReactNode, useMemo, useState } from "react";
import { Link } from "react-router";
import { ApiError } from "../../api/client";
import {
  getConfigOptions,
  getCurrentModelOptions,
  listDatasetsOptions,
  listLocalModelsOptions,
  listTrainingJobsQueryKey,
  planTrainingOptions,
  startTrainingMutation,
  type TrainJobList,
  type TrainRequest,
} from "../../api/queries";
import { useDebouncedValue } from "../../hooks/useDebouncedValue";
import { rememberJob } from "../models/jobCache";
import { Button, Card, EmptyState, ErrorMessage, Loading, Notice, SelectField, TextField } from "../ui";
import { PlanVerdict } from "./PlanVerdict";
import { buildRequest, emptyFields, type NumberField, type TrainFields } from "./trainForm";

const PLAN_DELAY_MS = 400;

type NumberInput = { key: NumberField; label: string; setting?: string; fallback?: string; hint?: string; decimal?: boolean };

// `setting` is the /config entry that fills an empty field; `fallback` is the request's own default when no setting does.
const SCHEDULE: NumberInput[] = [
  { key: "epochs", label: "Epochs", setting: "train_epochs" },
  { key: "max_steps", label: "Max steps", fallback: "none", hint: "Stops after this many steps; overrides epochs." },
  { key: "learning_rate", label: "Learning rate", setting: "train_learning_rate", decimal: true },
  { key: "batch_size", label: "Batch size", setting: "train_batch_size", hint: "Empty: the largest batch that fits." },
  { key: "gradient_accumulation_steps", label: "Gradient accumulation steps", setting: "train_gradient_accumulation_steps" },
  { key: "max_seq_length", label: "Max sequence length", setting: "train_max_seq_length", hint: "Longer rows are left out, not cut." },
];
const LORA: NumberInput[] = [
  { key: "lora_r", label: "LoRA rank (r)", setting: "lora_r" },
  { key: "lora_alpha", label: "LoRA alpha", setting: "lora_alpha", hint: "Scaling is alpha / r." },
  { key: "lora_dropout", label: "LoRA dropout", setting: "lora_dropout", decimal: true },
];
const EVALUATION: NumberInput[] = [
  { key: "validation_split", label: "Validation split", fallback: "0.1", decimal: true, hint: "Share of rows held out for the eval loss." },
  { key: "seed", label: "Seed", fallback: "42" },
];

function placeholder(input: NumberInput, settings: Record<string, unknown> | undefined): string {
  if (input.key === "batch_size" && settings && settings.train_batch_size == null) return "the plan's choice";
  const value = input.setting ? settings?.[input.setting] : undefined;
  if (value !== undefined && value !== null) return `default (${String(value)})`;
  if (input.fallback === "none") return "none";
  return input.fallback ? `default (${input.fallback})` : "default";
}

function Fieldset({ legend, children }: { legend: string; children: ReactNode }) {
  return (
    <fieldset className="space-y-3">
      <legend className="text-sm font-semibold">{legend}</legend>
      <div className="grid gap-4 sm:grid-cols-2 lg:grid-cols-3">{children}</div>
    </fieldset>
  );
}

/** Why the plan cannot be asked for yet, or null when it can. */
function notReady(request: TrainRequest | null, loaded: string | null): string | null {
  if (!request) return "Fix the fields marked above to see the plan.";
  if (!request.model_id && !loaded) return "No model is loaded: pick one under Model, or load one on the Models page.";
  return null;
}

export function TrainForm() {
  const queryClient = useQueryClient();
  const datasets = useQuery(listDatasetsOptions());
  const models = useQuery(listLocalModelsOptions());
  const current = useQuery(getCurrentModelOptions());
  const config = useQuery(getConfigOptions());
  const [fields, setFields] = useState<TrainFields>(emptyFields);
  const [notice, setNotice] = useState<string | null>(null);

  // The newest dataset until one is chosen (or the chosen one is deleted).
  const list = datasets.data?.datasets ?? [];
  const datasetId = list.some((d) => d.id === fields.dataset_id) ? fields.dataset_id : (list[0]?.id ?? "");
  const form = { ...fields, dataset_id: datasetId };
  const { request, errors } = buildRequest(form);
  const loaded = current.data?.metadata?.model_id ?? null;

  // The plan follows the form once it rests; as a query, each answer belongs to the request it answers.
  const requestKey = request ? JSON.stringify(request) : null;
  const settledKey = useDebouncedValue(requestKey, PLAN_DELAY_MS);
  const settled = useMemo(() => (settledKey ? (JSON.parse(settledKey) as TrainRequest) : null), [settledKey]);
  const waiting = notReady(settled, loaded); // of the request the plan asks about (the settled one)
  const plan = useQuery({
    ...planTrainingOptions(settled ?? { dataset_id: "" }, loaded),
    enabled: settled !== null && waiting === null && !current.isPending,
    placeholderData: keepPreviousData,
  });

  const start = useMutation({
    ...startTrainingMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (job) => {
      rememberJob(queryClient, job);
      queryClient.setQueryData<TrainJobList>(listTrainingJobsQueryKey(), (old) => ({
        jobs: [job, ...(old?.jobs ?? []).filter((other) => other.id !== job.id)],
      }));
      setNotice(`Started “${job.spec.name}”: follow it under Training runs.`);
    },
    onSettled: () => queryClient.invalidateQueries({ queryKey: listTrainingJobsQueryKey() }),
  });
  const tooBig = start.error instanceof ApiError && start.error.code === "insufficient_memory";

  const set = (key: keyof TrainFields) => (event: { target: { value: string } }) => {
    const value = event.target.value;
    setFields((before) => ({ ...before, dataset_id: datasetId, [key]: value }));
    if (start.error) start.reset();
  };
  const send = (force: boolean) => request && start.mutate({ body: force ? { ...request, force: true } : request });

  if (datasets.isPending) {
    return (
      <Card title="Fine-tune a model">
        <Loading label="Reading the datasets…" />
      </Card>
    );
  }
  if (datasets.isError) {
    return (
      <Card title="Fine-tune a model">
        <ErrorMessage error={datasets.error} title="Could not list the datasets" />
      </Card>
    );
  }
  if (list.length === 0) {
    return (
      <Card title="Fine-tune a model">
        <EmptyState title="No datasets yet">
          <Link to="/datasets" className="text-brand-700 underline dark:text-brand-500">
            Upload a dataset
          </Link>{" "}
          to train on first.
        </EmptyState>
      </Card>
    );
  }

  const settings = config.data?.settings;
  const trainable = (models.data?.models ?? []).filter((m) => m.complete && m.format !== "none");
  const modelOptions: Array<[string, string]> = [
    ["", loaded ? `The loaded model (${loaded})` : "The loaded model (none is loaded)"],
    ...trainable.map((m): [string, string] => [m.id, m.loaded ? `${m.id} (loaded)` : m.id]),
  ];
  const number = (input: NumberInput) => (
    <TextField
      key={input.key}
      label={input.label}
      inputMode={input.decimal ? "decimal" : "numeric"}
      autoComplete="off"
      placeholder={placeholder(input, settings)}
      value={fields[input.key]}
      onChange={set(input.key)}
      error={errors[input.key]}
      hint={input.hint}
    />
  );
  const blocked = notReady(request, loaded);
  const chosenModel = fields.model_id || loaded || "model";
  const chosenDataset = list.find((d) => d.id === datasetId)?.name ?? "dataset";

  return (
    <Card title="Fine-tune a model">
      <form
        className="space-y-6"
        onSubmit={(event) => {
          event.preventDefault();
          send(false);
        }}
      >
        <p className="text-sm text-zinc-600 dark:text-zinc-400">
          LoRA trains a small adapter on top of a model's frozen weights. Empty fields take Orchard's defaults (the{" "}
          <code className="font-mono text-xs">ORCHARD_TRAIN_*</code> and <code className="font-mono text-xs">ORCHARD_LORA_*</code>{" "}
          settings).
        </p>
        <div className="grid gap-4 sm:grid-cols-2 lg:grid-cols-3">
          <SelectField
            label="Dataset"
            value={datasetId}
            onChange={set("dataset_id")}
            options={list.map((d) => [d.id, `${d.name} (${d.num_examples.toLocaleString()} examples)`])}
          />
          <SelectField
            label="Model"
            value={fields.model_id}
            onChange={set("model_id")}
            options={modelOptions}
            hint={models.isError ? "Could not list the local models." : undefined}
          />
          <TextField
            label="Adapter name (optional)"
            autoComplete="off"
            placeholder={`${chosenModel.split("/").pop()}-${chosenDataset}`}
            value={fields.name}
            onChange={set("name")}
            error={errors.name}
          />
        </div>
        <Fieldset legend="Schedule">{SCHEDULE.map(number)}</Fieldset>
        <Fieldset legend="LoRA">{LORA.map(number)}</Fieldset>
        <Fieldset legend="Evaluation">{EVALUATION.map(number)}</Fieldset>

        <div className="rounded-lg border border-zinc-200 p-4 dark:border-zinc-800">
          {blocked ? (
            <p className="text-sm text-zinc-600 dark:text-zinc-400">{blocked}</p>
          ) : plan.isError && !plan.isFetching ? (
            <ErrorMessage error={plan.error} title="Cannot plan this run" />
          ) : plan.data ? (
            <PlanVerdict plan={plan.data} updating={plan.isFetching || settledKey !== requestKey} />
          ) : (
            <Loading label="Working out what the run needs…" />
          )}
        </div>

        <div className="space-y-3">
          <div className="flex flex-wrap items-center gap-3">
            <Button type="submit" variant="primary" busy={start.isPending && !start.variables?.body.force} disabled={blocked !== null || start.isPending}>
              Start training
            </Button>
            {tooBig && (
              <Button variant="danger" onClick={() => send(true)} busy={start.isPending} title="Start although the plan says it will not fit">
                Start anyway
              </Button>
            )}
          </div>
          <ErrorMessage
            error={start.error}
            title={tooBig ? "This run does not fit in memory" : "Could not start training"}
            onDismiss={() => start.reset()}
          />
          <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        </div>
      </form>
    </Card>
  );
}
