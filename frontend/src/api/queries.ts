// Query and mutation options for every resource, from the generated client; pages import from here.
// Mutations say what they change, so the views that show it refresh (invalidate).
import { type Query, type QueryClient, queryOptions } from "@tanstack/react-query";
import {
  getConfigQueryKey,
  getCurrentModelQueryKey,
  listAdaptersQueryKey,
  listDatasetsQueryKey,
  listExportsQueryKey,
  listJobsQueryKey,
  listLocalModelsQueryKey,
  listTrainingJobsQueryKey,
  modelHealthQueryKey,
} from "./generated/@tanstack/react-query.gen";
import { planTraining } from "./generated/sdk.gen";
import type {
  DownloadJob,
  ExportJob,
  IngestJob,
  ReembedJob,
  LoadJob,
  MergeJob,
  TrainJob,
  TrainPlan,
  TrainRequest,
} from "./generated/types.gen";

export * from "./generated/@tanstack/react-query.gen";
export type * from "./generated/types.gen";

/** A job of any kind, as the jobs API answers it (`GET /jobs`, `/jobs/{id}`, its events); `kind` tells them apart. */
export type Job = DownloadJob | LoadJob | TrainJob | MergeJob | ExportJob | IngestJob | ReembedJob;

/** A job that brings a model in (a download) or into memory (a load): it names its model. */
export type ModelJob = DownloadJob | LoadJob;

export function isModelJob(job: Job | undefined): job is ModelJob {
  return job !== undefined && (job.kind === "download" || job.kind === "load");
}

/** Queries of these generated operations, whatever their parameters (every dataset's detail, say). */
function operations(...ids: string[]) {
  return {
    predicate: (query: Query) => {
      const key = query.queryKey[0];
      return typeof key === "object" && key !== null && ids.includes((key as { _id?: unknown })._id as string);
    },
  };
}

/**
 * The memory plan of a fine-tune (POST /training/plan) as a query: it changes nothing, and as a query the answer
 * belongs to the request it answers, so a slow answer to an older form never replaces a newer one. `loaded` is in
 * the key because an empty model_id means the loaded model, and the loaded model's memory is part of the plan.
 */
export function planTrainingOptions(body: TrainRequest, loaded: string | null) {
  return queryOptions<TrainPlan>({
    queryKey: [{ _id: "planTraining", body, loaded }],
    queryFn: async ({ signal }) => (await planTraining({ body, signal, throwOnError: true })).data,
    staleTime: 10_000,
  });
}

/**
 * After a load, unload, upload, delete, an adapter put on or taken off, or a finished job: everything that shows
 * models, adapters, exports or memory, and what the loaded model decides (a dataset's token statistics and preview,
 * the training plan, what the loaded model can be exported as).
 */
export function invalidateModels(queryClient: QueryClient): Promise<unknown> {
  return Promise.all([
    ...[
      getCurrentModelQueryKey(),
      listLocalModelsQueryKey(),
      modelHealthQueryKey(),
      getConfigQueryKey(),
      listJobsQueryKey(),
      listAdaptersQueryKey(),
      listTrainingJobsQueryKey(),
      listExportsQueryKey(),
    ].map((queryKey) => queryClient.invalidateQueries({ queryKey })),
    queryClient.invalidateQueries(operations("getDataset", "previewDataset", "planTraining", "exportOptions")),
  ]);
}

/** After a dataset is uploaded or deleted: the list, and what the training form offers and plans. */
export function invalidateDatasets(queryClient: QueryClient): Promise<unknown> {
  return Promise.all([
    queryClient.invalidateQueries({ queryKey: listDatasetsQueryKey() }),
    queryClient.invalidateQueries(operations("planTraining")),
  ]);
}
