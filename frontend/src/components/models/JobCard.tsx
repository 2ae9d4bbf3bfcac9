// One download job: its phase, a progress bar with bytes, speed and time left, and Cancel or Resume.
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef } from "react";
import { Link } from "react-router";
import { ApiError } from "../../api/client";
import { cancelJobMutation, invalidateModels, resumeJobMutation, type Job } from "../../api/queries";
import { formatBytes, formatDate, formatDuration, formatSpeed } from "../../format";
import { isActive, useJobEvents } from "../../hooks/useJobEvents";
import { Badge, Button, ErrorMessage, ProgressBar, type Tone } from "../ui";
import { rememberJob } from "./jobCache";

const STATUS: Record<Job["status"], { label: string; tone: Tone }> = {
  queued: { label: "Queued", tone: "neutral" },
  resolving: { label: "Resolving", tone: "info" },
  downloading: { label: "Downloading", tone: "info" },
  verifying: { label: "Verifying", tone: "info" },
  loading: { label: "Loading", tone: "info" },
  ready: { label: "Ready", tone: "good" },
  failed: { label: "Failed", tone: "bad" },
  cancelled: { label: "Cancelled", tone: "warn" },
  interrupted: { label: "Interrupted", tone: "warn" },
};

const PHASE_HINT: Partial<Record<Job["status"], string>> = {
  queued: "Waiting to start",
  resolving: "Asking the Hub which files to fetch",
  verifying: "Checking the files",
  loading: "Loading the model into memory",
  cancelled: "Stopped; the partial files are kept, so Resume continues where it stopped",
  interrupted: "Stopped by a server restart; Resume continues where it stopped",
};

const RESUMABLE = new Set<Job["status"]>(["cancelled", "failed", "interrupted"]);

function progressValue(job: Job): number | null {
  if (job.status === "ready") return 100;
  const percent = job.progress?.percent;
  if (percent !== null && percent !== undefined) return percent;
  return isActive(job) ? null : 0;
}

function ProgressLine({ job }: { job: Job }) {
  const p = job.progress ?? {};
  const parts: string[] = [];
  if (p.total) parts.push(`${formatBytes(p.completed ?? 0)} of ${formatBytes(p.total)}`);
  else if (p.completed) parts.push(formatBytes(p.completed));
  if (job.status === "downloading") {
    if (p.bytes_per_second) parts.push(formatSpeed(p.bytes_per_second));
    if (p.eta_seconds !== null && p.eta_seconds !== undefined) parts.push(`${formatDuration(p.eta_seconds)} left`);
  }
  if (p.files_total) parts.push(`${p.files_done ?? 0} of ${p.files_total} files`);
  if (parts.length === 0) return null;
  return <p className="text-xs text-zinc-600 tabular-nums dark:text-zinc-400">{parts.join(" · ")}</p>;
}

export function JobCard({ job }: { job: Job }) {
  const queryClient = useQueryClient();
  const cancel = useMutation({
    ...cancelJobMutation(),
    onSuccess: (data) => rememberJob(queryClient, data.job),
  });
  const resume = useMutation({
    ...resumeJobMutation(),
    onSuccess: (data) => rememberJob(queryClient, data),
  });
  const status = STATUS[job.status];
  const value = progressValue(job);
  const active = isActive(job);
  const tone = job.status === "failed" ? "bad" : job.status === "cancelled" || job.status === "interrupted" ? "warn" : "brand";
  const hint = PHASE_HINT[job.status];
  const busy = cancel.isPending || resume.isPending;

  return (
    <article className="space-y-2 py-4" aria-label={`Download of ${job.model_id}`}>
      <div className="flex flex-wrap items-start justify-between gap-2">
        <div className="min-w-0">
          <p className="font-medium break-all">{job.model_id}</p>
          <p className="text-xs text-zinc-500 dark:text-zinc-400">
            {job.revision ? `${job.revision} · ` : ""}started {formatDate(job.created_at)}
            {job.finished_at ? ` · ended ${formatDate(job.finished_at)}` : ""}
          </p>
        </div>
        <div className="flex shrink-0 items-center gap-2">
          <span className="text-sm font-medium tabular-nums">{value === null ? "" : `${Math.floor(value)}%`}</span>
          <Badge tone={status.tone}>{status.label}</Badge>
          {job.progress?.stalled && active && <Badge tone="warn">Stalled</Badge>}
        </div>
      </div>
      <ProgressBar value={value} label={`Download progress for ${job.model_id}`} tone={tone} />
      <div className="flex flex-wrap items-center justify-between gap-2">
        <div className="space-y-0.5">
          <ProgressLine job={job} />
          {hint && <p className="text-xs text-zinc-500 dark:text-zinc-400">{hint}.</p>}
          {job.progress?.stalled && active && (
            <p className="text-xs text-amber-700 dark:text-amber-300">No data has arrived for a while; the connection may be slow.</p>
          )}
          {job.status === "ready" && job.result && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">
              Loaded on {job.result.device} as {job.result.dtype}.{" "}
              <Link to="/current" className="text-brand-700 underline dark:text-brand-500">
                See the current model
              </Link>
            </p>
          )}
          {job.status === "ready" && !job.result && job.load === false && (
            <p className="text-xs text-zinc-600 dark:text-zinc-400">Downloaded; load it from Local models.</p>
          )}
        </div>
        <div className="flex gap-2">
          {active && (
            <Button
              onClick={() => cancel.mutate({ path: { job_id: job.id } })}
              busy={cancel.isPending}
              disabled={busy}
              aria-label={`Cancel download of ${job.model_id}`}
            >
              Cancel
            </Button>
          )}
          {RESUMABLE.has(job.status) && (
            <Button
              variant="primary"
              onClick={() => resume.mutate({ path: { job_id: job.id } })}
              busy={resume.isPending}
              disabled={busy}
              aria-label={`Resume download of ${job.model_id}`}
            >
              Resume
            </Button>
          )}
        </div>
      </div>
      {job.status === "failed" && job.error && (
        <ErrorMessage error={new ApiError(job.error.message, job.error.code, null, job.error.details ?? {})} />
      )}
      <ErrorMessage error={cancel.error ?? resume.error} onDismiss={() => (cancel.error ? cancel.reset() : resume.reset())} />
    </article>
  );
}

/** A running job, followed live (events, or polling where they are unavailable). */
export function LiveJobCard({ job }: { job: Job }) {
  const queryClient = useQueryClient();
  const { data } = useJobEvents(job.id);
  const live = data ?? job;
  const active = isActive(live);
  const wasActive = useRef(active);
  useEffect(() => {
    // The event stream refreshes models when a job ends; polling does not, so do it here for both.
    if (wasActive.current && !active) void invalidateModels(queryClient);
    wasActive.current = active;
  }, [active, queryClient]);
  return <JobCard job={live} />;
}
