// The plan's answer before anything starts: whether the run fits, why, the memory it needs by part drawn against
// what is free, and the batch, examples and steps the server chose.
import { useId } from "react";
import type { TrainPlan } from "../../api/queries";
import { formatGb, formatParams } from "../../format";
import { Badge, Facts, Spinner } from "../ui";

const PARTS: Array<{ key: keyof TrainPlan["memory"]; name: string; className: string }> = [
  { key: "runtime_gb", name: "Runtime", className: "bg-zinc-500" },
  { key: "weights_gb", name: "Weights", className: "bg-brand-600" },
  { key: "adapter_gb", name: "Adapter", className: "bg-sky-500" },
  { key: "gradients_gb", name: "Gradients", className: "bg-violet-500" },
  { key: "optimizer_gb", name: "Optimizer", className: "bg-amber-500" },
  { key: "activations_gb", name: "Activations", className: "bg-rose-500" },
];

/** The run's memory by part, on a scale that holds both what it needs and what is free (the line). */
function MemoryNeeded({ plan }: { plan: TrainPlan }) {
  const { memory } = plan;
  const scale = Math.max(memory.total_gb, plan.available_gb) || 1;
  const percent = (gb: number) => `${Math.min(100, (gb / scale) * 100)}%`;
  return (
    <figure className="space-y-2">
      <figcaption className="flex flex-wrap justify-between gap-2 text-sm">
        <span className="font-medium">Memory the run needs</span>
        <span className="text-zinc-600 tabular-nums dark:text-zinc-400">
          {formatGb(memory.total_gb)} of {formatGb(plan.available_gb)} free on {plan.device}
        </span>
      </figcaption>
      <div
        role="meter"
        aria-label="Memory the run needs"
        aria-valuemin={0}
        aria-valuemax={Number(plan.available_gb.toFixed(3))}
        aria-valuenow={Number(memory.total_gb.toFixed(3))}
        aria-valuetext={`${formatGb(memory.total_gb)} of ${formatGb(plan.available_gb)} free: ${PARTS.map((p) => `${p.name.toLowerCase()} ${formatGb(memory[p.key])}`).join(", ")}`}
        className="relative flex h-4 w-full overflow-hidden rounded-full bg-zinc-200 dark:bg-zinc-800"
      >
        {PARTS.map((part) => (
          <div key={part.key} className={part.className} style={{ width: percent(memory[part.key]) }} />
        ))}
        <div className="absolute inset-y-0 w-0.5 bg-zinc-900 dark:bg-zinc-100" style={{ left: `calc(${percent(plan.available_gb)} - 2px)` }} aria-hidden="true" />
      </div>
      <ul className="flex flex-wrap gap-x-4 gap-y-1 text-xs text-zinc-600 tabular-nums dark:text-zinc-400">
        {PARTS.map((part) => (
          <li key={part.key} className="flex items-center gap-1.5" title={part.key === "runtime_gb" ? "The training process itself: Python, torch and the libraries" : undefined}>
            <span className={`size-2.5 rounded-sm ${part.className}`} aria-hidden="true" />
            {part.name} {formatGb(memory[part.key])}
          </li>
        ))}
        <li className="flex items-center gap-1.5">
          <span className="h-2.5 w-0.5 bg-zinc-900 dark:bg-zinc-100" aria-hidden="true" />
          free {formatGb(plan.available_gb)}
        </li>
      </ul>
      {plan.loaded_model_gb > 0 && (
        <p className="text-xs text-zinc-500 dark:text-zinc-400">
          The chat model stays loaded while it trains ({formatGb(plan.loaded_model_gb)}); the free memory is what is left beside it.
        </p>
      )}
    </figure>
  );
}

export function PlanVerdict({ plan, updating = false }: { plan: TrainPlan; updating?: boolean }) {
  const titleId = useId();
  const share = plan.num_parameters > 0 ? ` (${((100 * plan.trainable_parameters) / plan.num_parameters).toFixed(2)}%)` : "";
  return (
    <section aria-labelledby={titleId} aria-busy={updating || undefined} className={`space-y-4 ${updating ? "opacity-60" : ""}`}>
      <div className="flex flex-wrap items-center gap-2">
        <h3 id={titleId} className="text-sm font-semibold">
          Plan
        </h3>
        <Badge tone={plan.fits ? "good" : "bad"}>{plan.fits ? "Fits" : "Does not fit"}</Badge>
        {updating && (
          <span className="flex items-center gap-1.5 text-xs text-zinc-500 dark:text-zinc-400">
            <Spinner className="size-3.5" /> updating…
          </span>
        )}
      </div>
      <p className="text-sm text-zinc-700 dark:text-zinc-300">{plan.reason}</p>
      <MemoryNeeded plan={plan} />
      <Facts
        items={[
          ["Model", <span className="break-all">{plan.model_id}</span>],
          ["Device", `${plan.device} · ${plan.dtype} weights`],
          [
            "Batch size",
            `${plan.batch_size}${plan.batch_size === plan.proposed_batch_size ? " (the largest that fits)" : ` · ${plan.proposed_batch_size} is the largest that fits`}`,
          ],
          ["Gradient accumulation", `${plan.gradient_accumulation_steps} ${plan.gradient_accumulation_steps === 1 ? "step" : "steps"}`],
          [
            "Examples",
            `${plan.train_examples.toLocaleString()} to train on · ${plan.eval_examples.toLocaleString()} held out · ${plan.dropped_examples.toLocaleString()} dropped`,
          ],
          ["Total steps", plan.total_steps.toLocaleString()],
          ["Trainable parameters", `${formatParams(plan.trainable_parameters)} of ${formatParams(plan.num_parameters)}${share}`],
          ["Longest example", `${plan.longest_example_tokens.toLocaleString()} of ${plan.max_seq_length.toLocaleString()} tokens allowed`],
        ]}
      />
      {plan.dropped_examples > 0 && (
        <p className="text-xs text-amber-700 dark:text-amber-300">
          {plan.dropped_examples.toLocaleString()} {plan.dropped_examples === 1 ? "row is" : "rows are"} longer than{" "}
          {plan.max_seq_length.toLocaleString()} tokens or {plan.dropped_examples === 1 ? "has" : "have"} nothing to train on: left
          out, not cut.
        </p>
      )}
    </section>
  );
}
