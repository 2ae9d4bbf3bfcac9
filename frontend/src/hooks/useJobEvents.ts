// A job's progress, live: Server-Sent Events from /model/jobs/{id}/events, with polling as the fallback.
// State always comes from the jobs API, so a reload or a second tab shows the same progress.
// With an API key saved it polls from the start: EventSource cannot send the Authorization header.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { useHasApiKey } from "../api/apiKey";
import { getJobOptions, getJobQueryKey, invalidateModels, type Job } from "../api/queries";

const ACTIVE = new Set<Job["status"]>(["queued", "resolving", "downloading", "verifying", "loading"]);

export function isActive(job: Job | undefined): boolean {
  return job !== undefined && ACTIVE.has(job.status);
}

export function useJobEvents(jobId: string) {
  const queryClient = useQueryClient();
  const [sseFailed, setSseFailed] = useState(false);
  const keyed = useHasApiKey();
  const polling = sseFailed || keyed;
  const options = getJobOptions({ path: { job_id: jobId } });
  const query = useQuery({
    ...options,
    // Poll only when the event stream is unavailable, and only while the job runs.
    refetchInterval: (q) => (polling && isActive(q.state.data) ? 1000 : false),
  });
  const active = isActive(query.data);

  useEffect(() => {
    if (keyed) return;
    if (!active || typeof EventSource === "undefined") {
      if (active) setSseFailed(true);
      return;
    }
    const source = new EventSource(`/model/jobs/${encodeURIComponent(jobId)}/events`);
    const onJob = (event: MessageEvent<string>) => {
      const job = JSON.parse(event.data) as Job;
      queryClient.setQueryData(getJobQueryKey({ path: { job_id: jobId } }), job);
      if (!isActive(job)) {
        source.close();
        void invalidateModels(queryClient);
      }
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
