// One job of any kind (a download, a load, a fine-tune, a merge, a GGUF export): its phase, a progress bar in the
// job's own unit (bytes with speed and time left for a download, tensors for a load or an export, steps with the
// loss for training), and Cancel or Resume. JobProgress is the same bar, compact, for the places that start a job
// and follow it in line (the Load buttons, the current model, a merge under its adapter).
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { Link } from "react-router";
import { ApiError } from "../../api/client";
import { cancelJobMutation, isModelJob, resumeJobMutation, type Job } from "../../api/queries";
import { formatBytes, formatDate, formatDuration, formatSpeed } from "../../format";
import { isActive, useJobEvents } from "../../hooks/useJobEvents";
import { Badge, Button, ErrorMessage, ProgressBar, type Tone } from "../ui";
import { rememberJob } from "./jobCache";

const STATUS: Record<Job["status"], { label: string; tone: Tone }> = {
  queued: { label: "Queued", tone: "neutral" },
  resolving: { label: "Resolving", tone: "info" },
  downloading: { label: "Downloading", tone: "info" },
  verifying: { label: "Verifying", tone: "info" },
  preparing: { label: "Preparing", tone: "info" },
  loading: { label: "Loading", tone: "info" },
  training: { label: "Training", tone: "info" },
  merging: { label: "Merging", tone: "info" },
  exporting: { label: "Exporting", tone: "info" },
  saving: { label: "Saving", tone: "info" },
  ingesting: { label: "Adding documents", tone: "info" },
  embedding: { label: "Embedding", tone: "info" },
  ready: { label: "Ready", tone: "good" },
  failed: { label: "Failed", tone: "bad" },
  cancelled: { label: "Cancelled", tone: "warn" },
  interrupted: { label: "Interrupted", tone: "warn" },
};

type Kind = Job["kind"];

/** What the controls call a job of each kind: people (and the browser tests) find them by these names. */
const NOUN: Record<Kind, { noun: string; Noun: string }> = {
  download: { noun: "download", Noun: "Download" },
  load: { noun: "load", Noun: "Load" },
  train: { noun: "training", Noun: "Training" },
  merge: { noun: "merge", Noun: "Merge" },
  export: { noun: "export", Noun: "Export" },
  ingest: { noun: "ingest", Noun: "Ingest" },
  reembed: { noun: "re-embedding", Noun: "Re-embedding" },
};

const HINT: Partial<Record<Job["status"], string>> = {
  queued: "Waiting to start",
  resolving: "Asking the Hub which files to fetch",
  verifying: "Checking the files",
  preparing: "Finding the model and getting ready",
};

const KIND_HINT: Record<Kind, Partial<Record<Job["status"], string>>> = {
  download: {
    loading: "Loading the model into memory",
    cancelled: "Stopped; the partial files are kept, so Resume continues where it stopped",
    interrupted: "Stopped by a server restart; Resume continues where it stopped",
  },
  load: {
    loading: "Loading the weights into memory",
    cancelled: "Stopped before the swap; the model loaded before, if any, stays loaded",
    interrupted: "Stopped by a server restart",
  },
  train: {
    preparing: "Starting the training process and reading the data",
    training: "Training the adapter",
    saving: "Saving the adapter and comparing answers",
    cancelled: "Stopped at a checkpoint; Resume goes on from it",
    interrupted: "Stopped by a server restart at a checkpoint; Resume goes on from it",
  },
  merge: {
    merging: "Folding the adapter into the weights",
    saving: "Writing the new model",
  },
  export: {
    preparing: "Starting the export process and reading the model",
    merging: "Merging the adapter into the weights",
    exporting: "Writing the GGUF file",
    verifying: "Reading the file back and comparing its answers with the model's",
    cancelled: "Stopped; nothing was kept, Resume starts the export again",
    interrupted: "Stopped by a server restart; Resume starts the export again",
  },
  ingest: {
    ingesting: "Reading, chunking and embedding the files",
    cancelled: "Stopped; the files already added stay, Resume adds the rest",
    interrupted: "Stopped by a server restart; Resume adds the files not yet added",
  },
  reembed: {
    embedding: "Embedding every chunk with the new embedder; searches use the old one until it is done",
    cancelled: "Stopped; the collection keeps its old embedder, Resume starts again",
    interrupted: "Stopped by a server restart; the collection keeps its old embedder, Resume starts again",
  },
};

/** What the job works on, for its names: the model, the adapter being trained, the model being written. */
function subject(job: Job): string {
  if (job.kind === "train") return job.spec.name;
  if (job.kind === "merge" || job.kind === "export") return job.name;
  if (job.kind === "ingest" || job.kind === "reembed") return job.collection_name;
  return job.model_id;
}

export function jobNames(job: Job) {
  const { noun, Noun } = NOUN[job.kind];
  const name = subject(job);
  return {
    title: job.title || `${Noun} ${name}`,
    progress: `${Noun} progress for ${name}`,
    cancel: `Cancel ${noun} of ${name}`,
    resume: `Resume ${noun} of ${name}`,
  };
}

export function statusOf(job: Job): { label: string; tone: Tone } {
  return STATUS[job.status];
}

export function hintFor(job: Job): string | undefined {
  return KIND_HINT[job.kind][job.status] ?? HINT[job.status];
}

export function progressValue(job: Job): number | null {
  if (job.status === "ready") return 100;
  const percent = job.progress?.percent;
  if (percent !== null && percent !== undefined) return percent;
  return isActive(job) ? null : 0;
}

export function barTone(job: Job): "brand" | "warn" | "bad" {
  if (job.status === "failed") return "bad";
  return job.status === "cancelled" || job.status === "interrupted" ? "warn" : "brand";
}

function count(n: number, unit: string): string {
  return `${n.toLocaleString()} ${unit}`;
}

/** "420 MB of 1.0 GB · 12.5 MB/s · 46 s left · 2 of 5 files" for a download, "120 of 290 tensors" for a load,
 * "60 of 150 steps · loss 0.820 · 45 s left" for a fine-tune. */
function ProgressLine({ job }: { job: Job }) {
  const p = job.progress ?? {};
  const unit = p.unit ?? "bytes";
  const parts: string[] = [];
  if (unit === "bytes") {
    if (p.total) parts.push(`${formatBytes(p.completed ?? 0)} of ${formatBytes(p.total)}`);
    else if (p.completed) parts.push(formatBytes(p.completed));
  } else if (p.total) {
    parts.push(`${(p.completed ?? 0).toLocaleString()} of ${count(p.total, unit)}`);
  } else if (p.completed) {
    parts.push(count(p.completed, unit));
  }
  if (job.kind === "train" && job.progress?.loss != null) parts.push(`loss ${job.progress.loss.toPrecision(3)}`);
  if (job.status === "downloading" || job.status === "training") {
    if (p.bytes_per_second) parts.push(formatSpeed(p.bytes_per_second));
    if (p.eta_seconds !== null && p.eta_seconds !== undefined) parts.push(`${formatDuration(p.eta_seconds)} left`);
  }
  if (p.files_total) parts.push(`${p.files_done ?? 0} of ${p.files_total} files`);
  if (parts.length === 0) return null;
  return <p className="text-xs text-zinc-600 tabular-nums dark:text-zinc-400">{parts.join(" · ")}</p>;
}

/** A failed job's error as the API's own (code, message, details), for ErrorMessage. */
export function jobError(job: Job): ApiError | null {
  return job.status === "failed" && job.error
    ? new ApiError(job.error.message, job.error.code, null, job.error.details ?? {})
    : null;
}

/** Cancel and Resume; the answer is the job, so it shows at once. */
export function useJobControls() {
  const queryClient = useQueryClient();
  const cancel = useMutation({
    ...cancelJobMutation(),
    onSuccess: (data) => rememberJob(queryClient, data.job),
  });
  const resume = useMutation({
    ...resumeJobMutation(),
    onSuccess: (data) => rememberJob(queryClient, data),
  });
  return {
    cancel,
    resume,
    busy: cancel.isPending || resume.isPending,
    error: cancel.error ?? resume.error,
    reset: () => (cancel.error ? cancel.reset() : resume.reset()),
  };
}

/** Cancel while the job runs, Resume once it can be resumed. */
export function JobButtons({ job, controls }: { job: Job; controls: ReturnType<typeof useJobControls> }) {
  const { cancel, resume, busy } = controls;
  const names = jobNames(job);
  return (
    <>
      {isActive(job) && (
        <Button
          onClick={() => cancel.mutate({ path: { job_id: job.id } })}
          busy={cancel.isPending}
          disabled={busy}
          aria-label={names.cancel}
        >
          Cancel
        </Button>
      )}
      {job.resumable && (
        <Button
          variant="primary"
          onClick={() => resume.mutate({ path: { job_id: job.id } })}
          busy={resume.isPending}
          disabled={busy}
          aria-label={names.resume}
        >
          Resume
        </Button>
      )}
    </>
  );
}

export function JobCard({ job }: { job: Job }) {
  const controls = useJobControls();
  const names = jobNames(job);
  const status = STATUS[job.status];
  const value = progressValue(job);
  const active = isActive(job);
  const hint = hintFor(job);
  const failure = jobError(job);

  return (
    <article className="space-y-2 py-4" aria-label={names.title}>
      <div className="flex flex-wrap items-start justify-between gap-2">
        <div className="min-w-0">
          <p className="font-medium break-all">{names.title}</p>
          <p className="text-xs text-zinc-500 dark:text-zinc-400">
            {job.kind === "download" && job.revision ? `${job.revision} · ` : ""}started {formatDate(job.created_at)}
            {job.finished_at ? ` · ended ${formatDate(job.finished_at)}` : ""}
          </p>
        </div>
        <div className="flex shrink-0 items-center gap-2">
          <span className="text-sm font-medium tabular-nums">{value === null ? "" : `${Math.floor(value)}%`}</span>
          <Badge tone={status.tone}>{status.label}</Badge>
          {job.progress?.stalled && active && <Badge tone="warn">Stalled</Badge>}
        </div>
      </div>
      <ProgressBar value={value} label={names.progress} tone={barTone(job)} />
      <div className="flex flex-wrap items-center justify-between gap-2">
        <div className="space-y-0.5">
          <ProgressLine job={job} />
          {hint && <p className="text-xs text-zinc-500 dark:text-zinc-400">{hint}.</p>}
          {job.progress?.stalled && active && (
            <p className="text-xs text-amber-700 dark:text-amber-300">No data has arrived for a while; the connection may be slow.</p>
          )}
          {isModelJob(job) && job.status === "ready" && job.result && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">
              Loaded on {job.result.device} as {job.result.dtype}.{" "}
              <Link to="/current" className="text-brand-700 underline dark:text-brand-500">
                See the current model
              </Link>
            </p>
          )}
          {job.kind === "train" && job.status === "ready" && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">
              Adapter “{job.spec.name}” is ready.{" "}
              <Link to="/training" className="text-brand-700 underline dark:text-brand-500">
                See its results and use it in chat
              </Link>
            </p>
          )}
          {job.kind === "merge" && job.status === "ready" && job.result && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">Merged: “{job.result}” is under Local models.</p>
          )}
          {job.kind === "export" && job.status === "ready" && job.result && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">
              Exported {job.result.file_name} ({formatBytes(job.result.size_bytes)}), its check passed.{" "}
              <Link to="/export" className="text-brand-700 underline dark:text-brand-500">
                Download it
              </Link>
            </p>
          )}
          {job.status === "ready" && !job.result && job.kind === "download" && job.load === false && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">Downloaded; load it from Local models.</p>
          )}
        </div>
        <div className="flex gap-2">
          <JobButtons job={job} controls={controls} />
        </div>
      </div>
      {failure && <ErrorMessage error={failure} />}
      <ErrorMessage error={controls.error} onDismiss={controls.reset} />
    </article>
  );
}

/** A running job, followed live (events, or polling where they are unavailable). */
export function LiveJobCard({ job }: { job: Job }) {
  const { data } = useJobEvents(job.id);
  return <JobCard job={data ?? job} />;
}

/** A running job in line, under what started it: its phase, the bar, how far, and Cancel. */
export function JobProgress({ job }: { job: Job }) {
  const controls = useJobControls();
  const names = jobNames(job);
  const value = progressValue(job);
  const hint = hintFor(job);
  const active = isActive(job);
  return (
    <div className="space-y-1.5">
      <div className="flex items-center justify-between gap-2 text-xs">
        <p className="text-zinc-600 dark:text-zinc-400">
          <span className="font-medium text-zinc-800 dark:text-zinc-200">{STATUS[job.status].label}</span>
          {hint ? ` · ${hint}` : ""}
        </p>
        <span className="font-medium tabular-nums">{value === null ? "" : `${Math.floor(value)}%`}</span>
      </div>
      <ProgressBar value={value} label={names.progress} tone={barTone(job)} />
      <div className="flex flex-wrap items-center justify-between gap-2">
        <ProgressLine job={job} />
        {active && (
          <Button
            variant="ghost"
            className="ml-auto px-2 py-1 text-xs"
            onClick={() => controls.cancel.mutate({ path: { job_id: job.id } })}
            busy={controls.cancel.isPending}
            aria-label={names.cancel}
          >
            Cancel
          </Button>
        )}
      </div>
      <ErrorMessage error={controls.error} onDismiss={controls.reset} />
    </div>
  );
}

/** JobProgress for a job known by its latest snapshot (the current model's loading job), followed live. */
export function LiveJobProgress({ job }: { job: Job }) {
  const { data } = useJobEvents(job.id);
  return <JobProgress job={data ?? job} />;
}
