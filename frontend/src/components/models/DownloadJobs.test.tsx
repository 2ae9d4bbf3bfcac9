import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { listJobsQueryKey, listLocalModelsQueryKey, type Job } from "../../api/queries";
import { apiError, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { DownloadJobs } from "./DownloadJobs";

function jobsApi(jobs: Job[], extra: Parameters<typeof mockApi>[0] = {}) {
  const routes: Parameters<typeof mockApi>[0] = { "GET /model/jobs": { jobs }, ...extra };
  for (const job of jobs) routes[`GET /model/jobs/${job.id}`] ??= job;
  return mockApi(routes);
}

describe("DownloadJobs", () => {
  it("draws a running job's progress with bytes, speed and time left, and cancels it", async () => {
    const running = make.job();
    const api = jobsApi([running], {
      "DELETE /model/jobs/job-1": { job: { ...running, status: "cancelled" }, purged_bytes: 0 },
    });
    const { user } = renderWithProviders(<DownloadJobs />);

    const bar = await screen.findByRole("progressbar", { name: "Download progress for org/tiny" });
    expect(bar).toHaveAttribute("aria-valuenow", "42");
    expect(screen.getByText("42%")).toBeInTheDocument();
    expect(screen.getByText("Downloading")).toBeInTheDocument();
    expect(screen.getByText("420 MB of 1.0 GB · 12.5 MB/s · 46 s left · 2 of 5 files")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Resume download of org/tiny" })).not.toBeInTheDocument();

    // After cancelling, the server lists the job as cancelled.
    api.route("GET /model/jobs", { jobs: [{ ...running, status: "cancelled" }] });
    api.route("GET /model/jobs/job-1", { ...running, status: "cancelled" });
    await user.click(screen.getByRole("button", { name: "Cancel download of org/tiny" }));

    expect(api.calls("DELETE /model/jobs/job-1")).toHaveLength(1);
    expect(await screen.findByRole("button", { name: "Resume download of org/tiny" })).toBeInTheDocument();
    expect(screen.getByText("Cancelled")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Cancel download of org/tiny" })).not.toBeInTheDocument();
  });

  it("follows a running job from the jobs API (a reload or a second tab shows the same progress)", async () => {
    // The list is a little behind; the job's own endpoint has newer progress.
    jobsApi([make.job()], {
      "GET /model/jobs/job-1": make.job({ status: "verifying", progress: { completed: 1e9, total: 1e9, percent: 100 } }),
    });
    renderWithProviders(<DownloadJobs />);

    expect(await screen.findByText("Verifying")).toBeInTheDocument();
    expect(screen.getByRole("progressbar", { name: "Download progress for org/tiny" })).toHaveAttribute("aria-valuenow", "100");
  });

  it("shows a failed job's error as an alert, and resumes it", async () => {
    const failed = make.job({
      status: "failed",
      error: { code: "insufficient_memory", message: "'org/tiny' needs 28.00 GB at float16; 9.50 GB available on cpu.", details: {} },
      finished_at: "2025-01-02T10:01:00Z",
    });
    const api = jobsApi([failed], {
      "POST /model/jobs/job-1/resume": () =>
        new Response(JSON.stringify({ ...failed, status: "queued", error: null }), { status: 202, headers: { "Content-Type": "application/json" } }),
    });
    const { user } = renderWithProviders(<DownloadJobs />);

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("'org/tiny' needs 28.00 GB at float16; 9.50 GB available on cpu.");
    expect(screen.getByText("Failed")).toBeInTheDocument();

    api.route("GET /model/jobs", { jobs: [{ ...failed, status: "queued", error: null }] });
    api.route("GET /model/jobs/job-1", { ...failed, status: "queued", error: null });
    await user.click(screen.getByRole("button", { name: "Resume download of org/tiny" }));

    expect(await screen.findByRole("button", { name: "Cancel download of org/tiny" })).toBeInTheDocument();
    expect(screen.getByText("Queued")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(api.calls("POST /model/jobs/job-1/resume")).toHaveLength(1);
  });

  it("says Ready for a finished job, with neither Cancel nor Resume", async () => {
    jobsApi([make.job({ status: "ready", progress: { completed: 1e9, total: 1e9, percent: 100 }, result: make.metadata() })]);
    renderWithProviders(<DownloadJobs />);

    const item = await screen.findByRole("article", { name: "Download of org/tiny" });
    expect(within(item).getByText("Ready")).toBeInTheDocument();
    expect(within(item).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
    expect(within(item).queryByRole("button")).not.toBeInTheDocument();
    expect(within(item).getByRole("link", { name: "See the current model" })).toHaveAttribute("href", "/current");
  });

  it("shows an error cancelling as the API says it", async () => {
    jobsApi([make.job()], {
      "DELETE /model/jobs/job-1": apiError(409, "job_finished", "The job has already finished."),
    });
    const { user } = renderWithProviders(<DownloadJobs />);

    await user.click(await screen.findByRole("button", { name: "Cancel download of org/tiny" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("The job has already finished.");
  });

  it("shows nothing when there has been no download, and recent ones only by default", async () => {
    const api = jobsApi([]);
    const { unmount } = renderWithProviders(<DownloadJobs />);
    await waitFor(() => expect(api.calls("GET /model/jobs")).toHaveLength(1));
    expect(screen.queryByRole("region", { name: "Downloads" })).not.toBeInTheDocument();
    unmount();

    const many = Array.from({ length: 7 }, (_, i) => make.job({ id: `j${i}`, model_id: `org/m${i}`, status: "ready" }));
    jobsApi(many);
    const { user } = renderWithProviders(<DownloadJobs />);
    expect(await screen.findAllByRole("progressbar")).toHaveLength(5);
    await user.click(screen.getByRole("button", { name: "Show all 7 finished" }));
    expect(screen.getAllByRole("progressbar")).toHaveLength(7);
  });

  it("refreshes the models when the list learns first that a job has ended", async () => {
    const running = make.job();
    const api = jobsApi([running]);
    const { queryClient } = renderWithProviders(<DownloadJobs />);
    queryClient.setQueryData(listLocalModelsQueryKey(), make.localModels([]));
    await screen.findByRole("button", { name: "Cancel download of org/tiny" });
    expect(queryClient.getQueryState(listLocalModelsQueryKey())?.isInvalidated).toBe(false);

    // The job's own endpoint still says it runs; the list already says it is ready (and the live card goes).
    api.route("GET /model/jobs", { jobs: [{ ...running, status: "ready" }] });
    await queryClient.invalidateQueries({ queryKey: listJobsQueryKey() });

    expect(await screen.findByText("Ready")).toBeInTheDocument();
    await waitFor(() => expect(queryClient.getQueryState(listLocalModelsQueryKey())?.isInvalidated).toBe(true));
  });
});
