// One fine-tune: its phase, a progress bar in steps, the latest figures (epoch, loss, eval loss, learning rate,
// tokens/s, time left), the loss curve as it grows, Cancel and Resume, and once it is done its result: the losses,
// and the base and tuned model's answers to held-out prompts side by side.
import type { TrainJob } from "../../api/queries";
import { formatDate, formatDuration, formatGb } from "../../format";
import { isActive, useJobEvents } from "../../hooks/useJobEvents";
import { barTone, hintFor, JobButtons, jobError, jobNames, progressValue, statusOf, useJobControls } from "../models/JobCard";
import { Badge, ErrorMessage, Facts, ProgressBar } from "../ui";
import { LossChart } from "./LossChart";
import { SampleAnswers } from "./SampleAnswers";

function loss(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : value.toPrecision(3);
}

function rate(value: number | null | undefined): string {
  return value === null || value === undefined ? "—" : value.toExponential(1);
}

function Figures({ job }: { job: TrainJob }) {
  const p = job.progress ?? {};
  const items: Array<[string, string]> = [
    ["Step", p.total ? `${(p.completed ?? 0).toLocaleString()} of ${p.total.toLocaleString()}` : (p.completed ?? 0).toLocaleString()],
    ["Epoch", p.epoch != null ? `${p.epoch.toFixed(1)} of ${job.spec.epochs}` : "—"],
    ["Loss", loss(p.loss)],
    ["Eval loss", loss(p.eval_loss)],
    ["Learning rate", rate(p.learning_rate)],
    ["Tokens/s", p.tokens_per_second ? Math.round(p.tokens_per_second).toLocaleString() : "—"],
  ];
  if (isActive(job)) items.push(["Time left", p.eta_seconds != null ? formatDuration(p.eta_seconds) : "—"]);
  return (
    <dl className="grid grid-cols-2 gap-x-6 gap-y-1 text-sm sm:grid-cols-4">
      {items.map(([label, value]) => (
        <div key={label} className="flex min-w-0 items-baseline justify-between gap-2 sm:block">
          <dt className="text-xs text-zinc-500 dark:text-zinc-400">{label}</dt>
          <dd className="font-medium tabular-nums">{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function Result({ job }: { job: TrainJob & { result: NonNullable<TrainJob["result"]> } }) {
  const r = job.result;
  return (
    <div className="space-y-4">
      <h3 className="text-sm font-semibold">Result</h3>
      <Facts
        items={[
          ["Final train loss", loss(r.train_loss)],
          ["Eval loss", r.first_eval_loss != null ? `${loss(r.first_eval_loss)} → ${loss(r.eval_loss)}` : loss(r.eval_loss)],
          ["Steps", `${r.steps.toLocaleString()} (${r.epochs.toFixed(1)} epochs)`],
          ["Runtime", `${formatDuration(r.runtime_seconds)} (training ${formatDuration(r.train_seconds)})`],
          ["Peak memory", formatGb(r.peak_memory_gb)],
        ]}
      />
      {r.samples.length > 0 && (
        <div className="space-y-2">
          <h3 className="text-sm font-semibold">Before and after</h3>
          <SampleAnswers samples={r.samples} />
        </div>
      )}
    </div>
  );
}

export function TrainJobCard({ job }: { job: TrainJob }) {
  const controls = useJobControls();
  const names = jobNames(job);
  const status = statusOf(job);
  const value = progressValue(job);
  const active = isActive(job);
  const hint = hintFor(job);
  const failure = jobError(job);
  const history = job.history ?? [];

  return (
    <article aria-label={names.title} className="space-y-4 py-5">
      <div className="flex flex-wrap items-start justify-between gap-2">
        <div className="min-w-0">
          <p className="font-medium break-all">{job.spec.name}</p>
          <p className="text-xs text-zinc-500 dark:text-zinc-400">
            {job.spec.model_id} on {job.spec.dataset_name} · started {formatDate(job.created_at)}
            {job.finished_at ? ` · ended ${formatDate(job.finished_at)}` : ""}
          </p>
        </div>
        <div className="flex shrink-0 items-center gap-2">
          <span className="text-sm font-medium tabular-nums">{value === null ? "" : `${Math.floor(value)}%`}</span>
          <Badge tone={status.tone}>{status.label}</Badge>
        </div>
      </div>
      <div className="space-y-1.5">
        <ProgressBar value={value} label={names.progress} tone={barTone(job)} />
        {hint && <p className="text-xs text-zinc-500 dark:text-zinc-400">{hint}.</p>}
      </div>
      <Figures job={job} />
      {history.length > 0 ? (
        <LossChart history={history} label={`Loss curve of ${job.spec.name}`} />
      ) : (
        active && <p className="text-xs text-zinc-500 dark:text-zinc-400">The loss curve starts with the first evaluation.</p>
      )}
      {failure && <ErrorMessage error={failure} title="Training failed" />}
      {job.status === "ready" && job.result && <Result job={{ ...job, result: job.result }} />}
      {(active || job.resumable) && (
        <div className="flex flex-wrap justify-end gap-2">
          <JobButtons job={job} controls={controls} />
        </div>
      )}
      <ErrorMessage error={controls.error} onDismiss={controls.reset} />
    </article>
  );
}

/** A running fine-tune, followed live (events, or polling where they are unavailable). */
export function LiveTrainJobCard({ job }: { job: TrainJob }) {
  const { data } = useJobEvents(job.id);
  return <TrainJobCard job={data?.kind === "train" ? data : job} />;
}
