// The fine-tunes, newest first, from the training jobs API: a reload or a second tab shows the same runs, and each
// running one is followed live with its loss curve.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { listTrainingJobsOptions } from "../../api/queries";
import { isActive } from "../../hooks/useJobEvents";
import { useRefreshModelsWhenJobsEnd } from "../models/Jobs";
import { Button, Card, EmptyState, ErrorMessage, Loading } from "../ui";
import { LiveTrainJobCard, TrainJobCard } from "./TrainJobCard";

const RECENT = 5;

export function TrainingRuns() {
  const [showAll, setShowAll] = useState(false);
  const jobs = useQuery({
    ...listTrainingJobsOptions(),
    // Running jobs follow themselves; the list only needs to notice runs started elsewhere (another tab, curl).
    refetchInterval: (query) => (query.state.data?.jobs.some(isActive) ? 3_000 : 15_000),
  });
  // The list can learn of a run's end before its live card does (and unmount it): the new adapter must show either way.
  useRefreshModelsWhenJobsEnd(jobs.data?.jobs);

  if (jobs.isPending) {
    return (
      <Card title="Training runs">
        <Loading label="Loading the training runs…" />
      </Card>
    );
  }
  if (jobs.isError) {
    return (
      <Card title="Training runs">
        <ErrorMessage error={jobs.error} title="Could not list the training runs" />
      </Card>
    );
  }
  const all = jobs.data.jobs;
  const active = all.filter(isActive);
  const finished = all.filter((job) => !isActive(job));
  const shown = showAll ? finished : finished.slice(0, RECENT);
  return (
    <Card
      title="Training runs"
      actions={
        finished.length > RECENT && (
          <Button variant="ghost" onClick={() => setShowAll((value) => !value)} aria-expanded={showAll}>
            {showAll ? "Show recent only" : `Show all ${finished.length} finished`}
          </Button>
        )
      }
    >
      {all.length === 0 ? (
        <EmptyState title="No training runs yet">Start one above; its loss curve is drawn here as it trains.</EmptyState>
      ) : (
        <ul className="-my-5 divide-y divide-zinc-100 dark:divide-zinc-800">
          {active.map((job) => (
            <li key={job.id}>
              <LiveTrainJobCard job={job} />
            </li>
          ))}
          {shown.map((job) => (
            <li key={job.id}>
              <TrainJobCard job={job} />
            </li>
          ))}
        </ul>
      )}
    </Card>
  );
}
