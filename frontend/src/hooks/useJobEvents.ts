// A job's progress, live: Server-Sent Events from /jobs/{id}/events, with polling as the fallback. Any kind of
// job (download, load, ...) comes this way. State always comes from the jobs API, so a reload or a second tab
// shows the same progress. With an API key saved it polls from the start: EventSource cannot send the
// Authorization header.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { useHasApiKey } from "../api/apiKey";
import { getJobOptions, getJobQueryKey, invalidateModels, type GetJobResponse, type Job } from "../api/queries";

// The server's rule: a job runs until it reaches one of these; every other status (a phase of some kind:
// queued, resolving, downloading, verifying, preparing, loading, and those kinds still to come) is running.
const FINISHED = new Set<Job["status"]>(["ready", "failed", "cancelled", "interrupted"]);

export function isActive(job: Job | undefined): boolean {
  return job !== undefined && !FINISHED.has(job.status);
}

/** Follow one job (none while `jobId` is null): its latest state, kept in the job's query. */
export function useJobEvents(jobId: string | null) {
  const queryClient = useQueryClient();
  const [sseFailed, setSseFailed] = useState(false);
  const keyed = useHasApiKey();
  const polling = sseFailed || keyed;
  const options = getJobOptions({ path: { job_id: jobId ?? "" } });
  const query = useQuery({
    ...options,
    enabled: jobId !== null,
    // Poll only when the event stream is unavailable, and only while the job runs.
    refetchInterval: (q) => (polling && isActive(q.state.data) ? 1000 : false),
  });
  const active = jobId !== null && isActive(query.data);

  // A job that ends has changed what shows models (downloaded, loaded, or a load given up): refresh them, however
  // the end arrived (an event or a poll).
  const seen = useRef({ jobId, active });
  useEffect(() => {
    const before = seen.current;
    seen.current = { jobId, active };
    if (before.jobId === jobId && before.active && !active) void invalidateModels(queryClient);
  }, [active, jobId, queryClient]);

  useEffect(() => {
    if (keyed || jobId === null) return;
    if (!active || typeof EventSource === "undefined") {
      if (active) setSseFailed(true);
      return;
    }
    const source = new EventSource(`/jobs/${encodeURIComponent(jobId)}/events`);
    const onJob = (event: MessageEvent<string>) => {
      const job = JSON.parse(event.data) as GetJobResponse; // the same JSON as GET /jobs/{id}
      queryClient.setQueryData(getJobQueryKey({ path: { job_id: jobId } }), job);
      if (!isActive(job)) source.close();
    };
    source.addEventListener("progress", onJob);
    source.addEventListener("end", onJob);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setSseFailed(true);
    };
    return () => source.close();
  }, [active, jobId, keyed, queryClient]);

  return query;
}
