// Running and recent jobs of every kind (downloads, loads), from the jobs API: a reload or a second tab shows the
// same jobs, and each running one is followed live. "Clear finished" empties the history; running jobs stay.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useRef, useState } from "react";
import { clearJobsMutation, invalidateModels, listJobsOptions, listJobsQueryKey, type Job } from "../../api/queries";
import { isActive } from "../../hooks/useJobEvents";
import { Button, Card, ErrorMessage, Loading } from "../ui";
import { JobCard, LiveJobCard } from "./JobCard";

const RECENT = 5;

/**
 * A job that has ended since the last look (downloaded, or loaded, a model) changes what Local models and the
 * current model show. The live card refreshes them too, but the list can learn of the end first (and unmount
 * that card), or learn of a job another tab ran: so the list checks as well.
 */
export function useRefreshModelsWhenJobsEnd(jobs: Job[] | undefined) {
  const queryClient = useQueryClient();
  const seen = useRef<Set<string> | null>(null);
  useEffect(() => {
    if (!jobs) return;
    const ended = new Set(jobs.filter((job) => !isActive(job)).map((job) => job.id));
    const before = seen.current;
    seen.current = ended;
    if (before && [...ended].some((id) => !before.has(id))) void invalidateModels(queryClient);
  }, [jobs, queryClient]);
}

export function JobList() {
  const queryClient = useQueryClient();
  const [showAll, setShowAll] = useState(false);
  const jobs = useQuery({
    ...listJobsOptions(),
    // Running jobs follow themselves; the list only needs to notice jobs started elsewhere (another tab, curl).
    refetchInterval: (query) => (query.state.data?.jobs.some(isActive) ? 3_000 : 15_000),
  });
  const clear = useMutation({
    ...clearJobsMutation(),
    onSettled: () => queryClient.invalidateQueries({ queryKey: listJobsQueryKey() }),
  });
  useRefreshModelsWhenJobsEnd(jobs.data?.jobs);

  if (jobs.isPending) {
    return (
      <Card title="Jobs">
        <Loading label="Loading jobs…" />
      </Card>
    );
  }
  if (jobs.isError) {
    return (
      <Card title="Jobs">
        <ErrorMessage error={jobs.error} title="Could not list the jobs" />
      </Card>
    );
  }
  const all = jobs.data.jobs;
  if (all.length === 0) return null;
  const active = all.filter(isActive);
  const finished = all.filter((job) => !isActive(job));
  const shown = showAll ? finished : finished.slice(0, RECENT);

  return (
    <Card
      title="Jobs"
      actions={
        <>
          {finished.length > RECENT && (
            <Button variant="ghost" onClick={() => setShowAll((value) => !value)} aria-expanded={showAll}>
              {showAll ? "Show recent only" : `Show all ${finished.length} finished`}
            </Button>
          )}
          {finished.length > 0 && (
            <Button onClick={() => clear.mutate({})} busy={clear.isPending} title="Remove the finished jobs from this list">
              Clear finished
            </Button>
          )}
        </>
      }
    >
      {clear.isError && (
        <div className="mb-4">
          <ErrorMessage error={clear.error} title="Could not clear the finished jobs" onDismiss={() => clear.reset()} />
        </div>
      )}
      <ul className="-my-4 divide-y divide-zinc-100 dark:divide-zinc-800">
        {active.map((job) => (
          <li key={job.id}>
            <LiveJobCard job={job} />
          </li>
        ))}
        {shown.map((job) => (
          <li key={job.id}>
            <JobCard job={job} />
          </li>
        ))}
      </ul>
    </Card>
  );
}
