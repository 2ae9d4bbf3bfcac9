import { screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { listJobsQueryKey, listLocalModelsQueryKey, type Job } from "../../api/queries";
import { apiError, json, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { JobList } from "./Jobs";

function jobsApi(jobs: Job[], extra: Parameters<typeof mockApi>[0] = {}) {
  const routes: Parameters<typeof mockApi>[0] = { "GET /jobs": { jobs }, ...extra };
  for (const job of jobs) routes[`GET /jobs/${job.id}`] ??= job;
  return mockApi(routes);
}

const ready = { status: "ready" as const, finished_at: "2025-01-02T10:01:00Z" };

describe("JobList", () => {
  it("draws a running download's progress with bytes, speed and time left, and cancels it", async () => {
    const running = make.job();
    const cancelled = { ...running, status: "cancelled" as const, resumable: true };
    const api = jobsApi([running], { "DELETE /jobs/job-1": { job: cancelled, purged_bytes: 0 } });
    const { user } = renderWithProviders(<JobList />);

    expect(await screen.findByRole("region", { name: "Jobs" })).toBeInTheDocument();
    const bar = await screen.findByRole("progressbar", { name: "Download progress for org/tiny" });
    expect(bar).toHaveAttribute("aria-valuenow", "42");
    expect(screen.getByRole("article", { name: "Download org/tiny" })).toBeInTheDocument();
    expect(screen.getByText("42%")).toBeInTheDocument();
    expect(screen.getByText("Downloading")).toBeInTheDocument();
    expect(screen.getByText("420 MB of 1.0 GB · 12.5 MB/s · 46 s left · 2 of 5 files")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Resume download of org/tiny" })).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Clear finished" })).not.toBeInTheDocument(); // nothing finished

    // After cancelling, the server lists the job as cancelled.
    api.route("GET /jobs", { jobs: [cancelled] });
    api.route("GET /jobs/job-1", cancelled);
    await user.click(screen.getByRole("button", { name: "Cancel download of org/tiny" }));

    expect(api.calls("DELETE /jobs/job-1")).toHaveLength(1);
    expect(await screen.findByRole("button", { name: "Resume download of org/tiny" })).toBeInTheDocument();
    expect(screen.getByText("Cancelled")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Cancel download of org/tiny" })).not.toBeInTheDocument();
  });

  it("follows a running job from the jobs API (a reload or a second tab shows the same progress)", async () => {
    // The list is a little behind; the job's own endpoint has newer progress.
    jobsApi([make.job()], {
      "GET /jobs/job-1": make.job({ status: "verifying", progress: { completed: 1e9, total: 1e9, percent: 100, unit: "bytes" } }),
    });
    renderWithProviders(<JobList />);

    expect(await screen.findByText("Verifying")).toBeInTheDocument();
    expect(screen.getByRole("progressbar", { name: "Download progress for org/tiny" })).toHaveAttribute("aria-valuenow", "100");
  });

  it("draws a load job's progress in tensors, with its own names, and cancels it", async () => {
    const loading = make.loadJob();
    const api = jobsApi([loading], {
      "DELETE /jobs/load-1": { job: { ...loading, status: "cancelled", resumable: true }, purged_bytes: 0 },
    });
    const { user } = renderWithProviders(<JobList />);

    const item = await screen.findByRole("article", { name: "Load tiny-gpt2" });
    expect(within(item).getByText("Load tiny-gpt2")).toBeInTheDocument();
    expect(within(item).getByRole("progressbar", { name: "Load progress for tiny-gpt2" })).toHaveAttribute("aria-valuenow", "41");
    expect(within(item).getByText("Loading")).toBeInTheDocument();
    expect(within(item).getByText("120 of 290 tensors")).toBeInTheDocument(); // no bytes, speed or time left
    expect(within(item).getByText("Loading the weights into memory.")).toBeInTheDocument();
    expect(within(item).queryByRole("button", { name: "Resume load of tiny-gpt2" })).not.toBeInTheDocument();

    await user.click(within(item).getByRole("button", { name: "Cancel load of tiny-gpt2" }));
    expect(api.calls("DELETE /jobs/load-1")).toHaveLength(1);
  });

  it("says what a load does while it prepares", async () => {
    jobsApi([make.loadJob({ status: "preparing", progress: { completed: 0, unit: "tensors" } })]);
    renderWithProviders(<JobList />);

    const item = await screen.findByRole("article", { name: "Load tiny-gpt2" });
    expect(within(item).getByText("Preparing")).toBeInTheDocument();
    expect(within(item).getByText("Finding the model and getting ready.")).toBeInTheDocument();
    const bar = within(item).getByRole("progressbar", { name: "Load progress for tiny-gpt2" });
    expect(bar).not.toHaveAttribute("aria-valuenow"); // not known yet: drawn as busy, no number
    expect(within(item).getByRole("button", { name: "Cancel load of tiny-gpt2" })).toBeInTheDocument();
  });

  it("offers Resume exactly when the server says the job is resumable", async () => {
    const failedLoad = make.loadJob({
      ...ready,
      status: "failed",
      resumable: true,
      error: { code: "insufficient_memory", message: "'tiny-gpt2' needs 30.00 GB at float32; 9.50 GB available on cpu.", details: {} },
    });
    const cancelledDownload = make.job({ id: "job-2", model_id: "org/kept", status: "cancelled", resumable: false });
    const interrupted = make.job({ id: "job-3", model_id: "org/cut", status: "interrupted", resumable: true });
    const api = jobsApi([failedLoad, cancelledDownload, interrupted], {
      "POST /jobs/load-1/resume": () => json({ ...failedLoad, status: "queued", error: null, resumable: false }, 202),
    });
    const { user } = renderWithProviders(<JobList />);

    const load = await screen.findByRole("article", { name: "Load tiny-gpt2" });
    expect(within(load).getByRole("alert")).toHaveTextContent("'tiny-gpt2' needs 30.00 GB at float32; 9.50 GB available on cpu.");
    expect(within(screen.getByRole("article", { name: "Download org/kept" })).queryByRole("button")).not.toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Resume download of org/cut" })).toBeInTheDocument();

    api.route("GET /jobs", { jobs: [{ ...failedLoad, status: "queued", error: null, resumable: false }, cancelledDownload, interrupted] });
    api.route("GET /jobs/load-1", { ...failedLoad, status: "queued", error: null, resumable: false });
    await user.click(within(load).getByRole("button", { name: "Resume load of tiny-gpt2" }));

    expect(api.calls("POST /jobs/load-1/resume")).toHaveLength(1);
    expect(await screen.findByRole("button", { name: "Cancel load of tiny-gpt2" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Resume load of tiny-gpt2" })).not.toBeInTheDocument();
  });

  it("shows a failed download's error as an alert, and resumes it", async () => {
    const failed = make.job({
      ...ready,
      status: "failed",
      resumable: true,
      error: { code: "insufficient_memory", message: "'org/tiny' needs 28.00 GB at float16; 9.50 GB available on cpu.", details: {} },
    });
    const api = jobsApi([failed], {
      "POST /jobs/job-1/resume": () => json({ ...failed, status: "queued", error: null, resumable: false }, 202),
    });
    const { user } = renderWithProviders(<JobList />);

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("'org/tiny' needs 28.00 GB at float16; 9.50 GB available on cpu.");
    expect(alert).toHaveTextContent("insufficient_memory");
    expect(screen.getByText("Failed")).toBeInTheDocument();

    api.route("GET /jobs", { jobs: [{ ...failed, status: "queued", error: null, resumable: false }] });
    api.route("GET /jobs/job-1", { ...failed, status: "queued", error: null, resumable: false });
    await user.click(screen.getByRole("button", { name: "Resume download of org/tiny" }));

    expect(await screen.findByRole("button", { name: "Cancel download of org/tiny" })).toBeInTheDocument();
    expect(screen.getByText("Queued")).toBeInTheDocument();
    expect(screen.queryByRole("alert")).not.toBeInTheDocument();
    expect(api.calls("POST /jobs/job-1/resume")).toHaveLength(1);
  });

  it("says Ready for a finished download or load, with neither Cancel nor Resume", async () => {
    jobsApi([
      make.loadJob({ ...ready, id: "load-1", progress: { completed: 290, total: 290, percent: 100, unit: "tensors" }, result: make.metadata() }),
      make.job({ ...ready, progress: { completed: 1e9, total: 1e9, percent: 100, unit: "bytes" }, result: make.metadata({ model_id: "org/tiny" }) }),
    ]);
    renderWithProviders(<JobList />);

    for (const name of ["Load tiny-gpt2", "Download org/tiny"]) {
      const item = await screen.findByRole("article", { name });
      expect(within(item).getByText("Ready")).toBeInTheDocument();
      expect(within(item).getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
      expect(within(item).queryByRole("button")).not.toBeInTheDocument();
      expect(within(item).getByText(/Loaded on cpu as float32\./)).toBeInTheDocument();
      expect(within(item).getByRole("link", { name: "See the current model" })).toHaveAttribute("href", "/current");
    }
    expect(screen.getByText("290 of 290 tensors")).toBeInTheDocument();
  });

  it("clears the finished jobs, keeping the running ones, then refreshes the list", async () => {
    const running = make.loadJob();
    const done = [
      make.job({ ...ready, id: "job-1" }),
      make.loadJob({ ...ready, id: "load-0", model_id: "tiny-llama", status: "failed", error: { code: "x", message: "Broken." } }),
    ];
    const api = jobsApi([running, ...done], {
      "DELETE /jobs": () => {
        api.route("GET /jobs", { jobs: [running] }); // what the server lists once the history is gone
        return { removed: 2 };
      },
    });
    const { user } = renderWithProviders(<JobList />);

    expect(await screen.findByRole("article", { name: "Download org/tiny" })).toBeInTheDocument();
    expect(screen.getByRole("article", { name: "Load tiny-llama" })).toBeInTheDocument();
    const before = api.calls("GET /jobs").length;
    await user.click(screen.getByRole("button", { name: "Clear finished" }));

    await waitFor(() => expect(screen.queryByRole("article", { name: "Download org/tiny" })).not.toBeInTheDocument());
    expect(api.calls("DELETE /jobs")).toHaveLength(1);
    expect(api.calls("DELETE /jobs")[0].url.search).toBe(""); // every kind
    expect(api.calls("GET /jobs").length).toBeGreaterThan(before);
    expect(screen.queryByRole("article", { name: "Load tiny-llama" })).not.toBeInTheDocument();
    expect(screen.getByRole("article", { name: "Load tiny-gpt2" })).toBeInTheDocument(); // still running
    expect(screen.queryByRole("button", { name: "Clear finished" })).not.toBeInTheDocument();
  });

  it("shows why clearing failed, as the API says it", async () => {
    jobsApi([make.job({ ...ready })], { "DELETE /jobs": apiError(500, "internal_error", "The job history could not be written.") });
    const { user } = renderWithProviders(<JobList />);

    await user.click(await screen.findByRole("button", { name: "Clear finished" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("The job history could not be written.");
    expect(screen.getByRole("article", { name: "Download org/tiny" })).toBeInTheDocument();
  });

  it("shows an error cancelling as the API says it", async () => {
    jobsApi([make.job()], {
      "DELETE /jobs/job-1": apiError(409, "job_finished", "The job has already finished."),
    });
    const { user } = renderWithProviders(<JobList />);

    await user.click(await screen.findByRole("button", { name: "Cancel download of org/tiny" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("The job has already finished.");
  });

  it("shows nothing when there has been no job, and recent ones only by default", async () => {
    const api = jobsApi([]);
    const { unmount } = renderWithProviders(<JobList />);
    await waitFor(() => expect(api.calls("GET /jobs")).toHaveLength(1));
    expect(screen.queryByRole("region", { name: "Jobs" })).not.toBeInTheDocument();
    unmount();

    const many = Array.from({ length: 7 }, (_, i) => make.job({ id: `j${i}`, model_id: `org/m${i}`, status: "ready" }));
    jobsApi(many);
    const { user } = renderWithProviders(<JobList />);
    expect(await screen.findAllByRole("progressbar")).toHaveLength(5);
    await user.click(screen.getByRole("button", { name: "Show all 7 finished" }));
    expect(screen.getAllByRole("progressbar")).toHaveLength(7);
  });

  it("refreshes the models when the list learns first that a job has ended", async () => {
    const running = make.loadJob();
    const api = jobsApi([running]);
    const { queryClient } = renderWithProviders(<JobList />);
    queryClient.setQueryData(listLocalModelsQueryKey(), make.localModels([]));
    await screen.findByRole("button", { name: "Cancel load of tiny-gpt2" });
    expect(queryClient.getQueryState(listLocalModelsQueryKey())?.isInvalidated).toBe(false);

    // The job's own endpoint still says it runs; the list already says it is ready (and the live card goes).
    api.route("GET /jobs", { jobs: [{ ...running, ...ready }] });
    await queryClient.invalidateQueries({ queryKey: listJobsQueryKey() });

    expect(await screen.findByText("Ready")).toBeInTheDocument();
    await waitFor(() => expect(queryClient.getQueryState(listLocalModelsQueryKey())?.isInvalidated).toBe(true));
  });

  it("draws a fine-tune's progress in steps, with its loss and time left, and names it by its adapter", async () => {
    jobsApi([make.trainJob()]);
    renderWithProviders(<JobList />);

    const item = await screen.findByRole("article", { name: "Fine-tune tiny-llama on codes" });
    expect(within(item).getByRole("progressbar", { name: "Training progress for codes-adapter" })).toHaveAttribute("aria-valuenow", "40");
    expect(within(item).getByText("60 of 150 steps · loss 0.820 · 45 s left")).toBeInTheDocument();
    expect(within(item).getByText("Training the adapter.")).toBeInTheDocument();
    expect(within(item).getByRole("button", { name: "Cancel training of codes-adapter" })).toBeInTheDocument();
  });

  it("says where a finished fine-tune and a finished merge left their results", async () => {
    jobsApi([
      make.trainJob({ ...ready, progress: { unit: "steps", completed: 150, total: 150, percent: 100 } }),
      make.mergeJob({ ...ready, result: "tiny-llama-codes" }),
    ]);
    renderWithProviders(<JobList />);

    const train = await screen.findByRole("article", { name: "Fine-tune tiny-llama on codes" });
    expect(within(train).getByText("150 of 150 steps")).toBeInTheDocument();
    expect(within(train).getByText(/Adapter “codes-adapter” is ready\./)).toBeInTheDocument();
    expect(within(train).getByRole("link", { name: "See its results and use it in chat" })).toHaveAttribute("href", "/training");
    const merge = screen.getByRole("article", { name: "Merge codes-adapter into tiny-llama-codes" });
    expect(within(merge).getByText("Merged: “tiny-llama-codes” is under Local models.")).toBeInTheDocument();
  });
});
