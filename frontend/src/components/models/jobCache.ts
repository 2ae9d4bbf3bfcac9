// After a job starts (a download, a load), is cancelled or resumed, the answer is the job itself: put it where the
// views read jobs from (the job's own query and the list), so it shows at once, then refetch the list to be sure.
import type { QueryClient } from "@tanstack/react-query";
import { getJobQueryKey, listJobsQueryKey, type Job, type JobList } from "../../api/queries";

export function rememberJob(queryClient: QueryClient, job: Job): void {
  queryClient.setQueryData(getJobQueryKey({ path: { job_id: job.id } }), job);
  queryClient.setQueryData<JobList>(listJobsQueryKey(), (old) =>
    old ? { jobs: [job, ...old.jobs.filter((other) => other.id !== job.id)] } : { jobs: [job] },
  );
  void queryClient.invalidateQueries({ queryKey: listJobsQueryKey() });
}
