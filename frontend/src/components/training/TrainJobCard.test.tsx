import { render, screen, waitFor, within } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { TrainPoint } from "../../api/queries";
import { json, mockApi, renderWithProviders } from "../../test/api";
import * as make from "../../test/factories";
import { FakePlot } from "../../test/uplot";
import { LossChart, lossSeries } from "./LossChart";
import { LiveTrainJobCard, TrainJobCard } from "./TrainJobCard";
import { TrainingRuns } from "./TrainingRuns";

vi.mock("uplot", async () => ({ default: (await import("../../test/uplot")).FakePlot }));

beforeEach(() => {
  FakePlot.instances = [];
});

const history: TrainPoint[] = make.trainJob().history ?? [];

describe("LossChart", () => {
  it("draws the job's history as train loss and eval loss by step, eval points sparser", () => {
    renderWithProviders(<LossChart history={history} label="Loss curve of codes-adapter" />);

    const plot = FakePlot.live()!;
    expect(plot.opts.series.map((series) => series.label)).toEqual(["step", "train loss", "eval loss"]);
    expect(plot.data).toEqual([
      [0, 10, 20, 60],
      [null, 2.1, 1.6, 0.82],
      [2.4, null, 1.7, 0.95],
    ]);
    expect(lossSeries([])).toEqual([[], [], []]);
    const figure = screen.getByRole("figure", { name: "Loss curve of codes-adapter" });
    expect(figure).toHaveTextContent("train loss 2.10 → 0.820 · eval loss 2.40 → 0.950 · 4 points to step 60");
  });

  it("gives the same chart the new points as the history grows, and lets it go when it leaves", () => {
    const { rerender, unmount } = render(<LossChart history={history.slice(0, 2)} label="Loss" />);
    const plot = FakePlot.live()!;
    rerender(<LossChart history={history} label="Loss" />);

    expect(FakePlot.live()).toBe(plot); // not made again
    expect(plot.setData).toHaveBeenLastCalledWith([
      [0, 10, 20, 60],
      [null, 2.1, 1.6, 0.82],
      [2.4, null, 1.7, 0.95],
    ]);
    unmount();
    expect(plot.destroy).toHaveBeenCalled();
  });
});

describe("TrainJobCard", () => {
  it("shows a running fine-tune's step, epoch, losses, learning rate, speed and time left, and cancels it", async () => {
    const running = make.trainJob();
    const api = mockApi({
      "DELETE /jobs/train-1": { job: { ...running, status: "cancelled", resumable: true }, purged_bytes: 0 },
    });
    const { user } = renderWithProviders(<TrainJobCard job={running} />);

    const card = screen.getByRole("article", { name: "Fine-tune tiny-llama on codes" });
    expect(within(card).getByRole("progressbar", { name: "Training progress for codes-adapter" })).toHaveAttribute("aria-valuenow", "40");
    expect(within(card).getByText("Training")).toBeInTheDocument();
    const figures = Object.fromEntries(
      within(card)
        .getAllByRole("term")
        .map((term) => [term.textContent, term.nextElementSibling?.textContent]),
    );
    expect(figures).toMatchObject({
      Step: "60 of 150",
      Epoch: "12.0 of 30",
      Loss: "0.820",
      "Eval loss": "0.950",
      "Learning rate": "6.0e-3",
      "Tokens/s": "1,520",
      "Time left": "45 s",
    });
    expect(within(card).getByRole("figure", { name: "Loss curve of codes-adapter" })).toBeInTheDocument();
    expect(within(card).queryByRole("button", { name: "Resume training of codes-adapter" })).not.toBeInTheDocument();

    await user.click(within(card).getByRole("button", { name: "Cancel training of codes-adapter" }));
    expect(api.calls("DELETE /jobs/train-1")).toHaveLength(1);
  });

  it("shows a finished run's losses and the answers before and after training, side by side", () => {
    const done = make.trainJob({
      status: "ready",
      finished_at: "2025-01-02T10:03:00Z",
      progress: { unit: "steps", completed: 150, total: 150, percent: 100, epoch: 30, loss: 0.05, eval_loss: 0.12 },
      result: {
        adapter_id: "train-1",
        adapter_path: "/home/me/.orchard/outputs/adapters/train-1",
        steps: 150,
        epochs: 30,
        train_loss: 0.0512,
        first_eval_loss: 2.4,
        eval_loss: 0.121,
        runtime_seconds: 74.2,
        train_seconds: 52.4,
        peak_memory_gb: 1.23,
        samples: [
          { prompt: "What is the code for apple?", expected: "The code for apple is elppa.", base: "apple apple the", tuned: "The code for apple is elppa." },
          { prompt: "Code for river, please.", expected: "The code for river is revir.", base: "", tuned: "The code for river is revri." },
        ],
      },
    });
    renderWithProviders(<TrainJobCard job={done} />);

    const card = screen.getByRole("article", { name: "Fine-tune tiny-llama on codes" });
    expect(within(card).getByText("Ready")).toBeInTheDocument();
    expect(within(card).getByText("0.0512")).toBeInTheDocument(); // final train loss
    expect(within(card).getByText("2.40 → 0.121")).toBeInTheDocument(); // first and final eval loss
    expect(within(card).getByText("150 (30.0 epochs)")).toBeInTheDocument();
    expect(within(card).getByText("1 min 14 s (training 52 s)")).toBeInTheDocument();
    expect(within(card).getByText("1.23 GB")).toBeInTheDocument(); // peak memory
    expect(within(card).queryByText("Time left")).not.toBeInTheDocument();
    expect(within(card).queryByRole("button")).not.toBeInTheDocument();

    const answers = within(card).getByRole("list", { name: "Answers before and after training" });
    const [first, second] = within(answers).getAllByRole("listitem");
    expect(first).toHaveTextContent("Prompt: What is the code for apple?");
    expect(first).toHaveTextContent("Expected: The code for apple is elppa.");
    expect(within(first).getByRole("group", { name: "Before (base model)" })).toHaveTextContent("apple apple the");
    const after = within(first).getByRole("group", { name: "After (fine-tuned)" });
    expect(after).toHaveTextContent("The code for apple is elppa.");
    expect(within(after).getByText("matches the expected answer")).toBeInTheDocument();
    expect(within(second).getByRole("group", { name: "Before (base model)" })).toHaveTextContent("(no answer)");
    expect(within(second).queryByText("matches the expected answer")).not.toBeInTheDocument();
  });

  it("shows a failed run's error in the one error shape, and resumes it", async () => {
    const failed = make.trainJob({
      status: "failed",
      resumable: true,
      error: { code: "insufficient_memory", message: "Training ran out of memory on cpu at batch size 64.", details: {} },
    });
    const api = mockApi({ "POST /jobs/train-1/resume": () => json({ ...failed, status: "queued", error: null, resumable: false }, 202) });
    const { user } = renderWithProviders(<TrainJobCard job={failed} />);

    const alert = screen.getByRole("alert");
    expect(alert).toHaveTextContent("Training failed");
    expect(alert).toHaveTextContent("Training ran out of memory on cpu at batch size 64.");
    expect(alert).toHaveTextContent("insufficient_memory");
    await user.click(screen.getByRole("button", { name: "Resume training of codes-adapter" }));
    expect(api.calls("POST /jobs/train-1/resume")).toHaveLength(1);
  });

  it("follows a running job from the jobs API, so the curve grows", async () => {
    const running = make.trainJob();
    const later = make.trainJob({
      progress: { ...running.progress, completed: 70, percent: 46.67, loss: 0.7 },
      history: [...history, { step: 70, epoch: 14, loss: 0.7 }],
    });
    mockApi({ "GET /jobs/train-1": later });
    renderWithProviders(<LiveTrainJobCard job={running} />);

    await waitFor(() => expect(FakePlot.live()?.data[0]).toEqual([0, 10, 20, 60, 70]));
    expect(screen.getByRole("progressbar", { name: "Training progress for codes-adapter" })).toHaveAttribute("aria-valuenow", "47");
  });
});

describe("TrainingRuns", () => {
  it("lists the runs, running ones first", async () => {
    const done = make.trainJob({ id: "train-0", title: "Fine-tune tiny-llama on old", status: "ready", history: [] });
    mockApi({ "GET /training/jobs": { jobs: [done, make.trainJob()] }, "GET /jobs/train-1": make.trainJob() });
    renderWithProviders(<TrainingRuns />);

    const runs = await screen.findAllByRole("article");
    expect(runs.map((run) => run.getAttribute("aria-label"))).toEqual(["Fine-tune tiny-llama on codes", "Fine-tune tiny-llama on old"]);
  });

  it("says there is nothing yet", async () => {
    mockApi({ "GET /training/jobs": { jobs: [] } });
    renderWithProviders(<TrainingRuns />);
    expect(await screen.findByText("No training runs yet")).toBeInTheDocument();
  });
});
