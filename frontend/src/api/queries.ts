// Query and mutation options for every resource, from the generated client; pages import from here.
// Mutations say what they change, so the views that show it refresh (invalidate).
import type { QueryClient } from "@tanstack/react-query";
import {
  getConfigQueryKey,
  getCurrentModelQueryKey,
  listJobsQueryKey,
  listLocalModelsQueryKey,
  modelHealthQueryKey,
} from "./generated/@tanstack/react-query.gen";
import type { DownloadJob, LoadJob, MergeJob, TrainJob } from "./generated/types.gen";

export * from "./generated/@tanstack/react-query.gen";
export type * from "./generated/types.gen";

/** A job of any kind, as the jobs API answers it (`GET /jobs`, `/jobs/{id}`, its events); `kind` tells them apart. */
export type Job = DownloadJob | LoadJob | TrainJob | MergeJob;

/** A job that brings a model in (a download) or into memory (a load): it names its model. */
export type ModelJob = DownloadJob | LoadJob;

export function isModelJob(job: Job | undefined): job is ModelJob {
  return job !== undefined && (job.kind === "download" || job.kind === "load");
}

/** After a load, unload, upload, delete or a finished job: everything that shows models or memory. */
export function invalidateModels(queryClient: QueryClient): Promise<unknown> {
  return Promise.all(
    [getCurrentModelQueryKey(), listLocalModelsQueryKey(), modelHealthQueryKey(), getConfigQueryKey(), listJobsQueryKey()].map(
      (queryKey) => queryClient.invalidateQueries({ queryKey }),
    ),
  );
}
