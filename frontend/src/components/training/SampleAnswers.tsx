// Held-out prompts answered by the base model and by the tuned one, side by side: what the training changed, in the
// model's own words. An answer that is exactly the expected one says so.
import type { SampleAnswer } from "../../api/queries";
import { Badge } from "../ui";

function same(answer: string, expected: string): boolean {
  return answer.trim() === expected.trim();
}

function Answer({ title, text, expected, tone }: { title: string; text: string; expected: string; tone: "before" | "after" }) {
  const matches = same(text, expected);
  return (
    <div
      role="group"
      aria-label={title}
      className={`min-w-0 rounded-lg border p-3 ${
        tone === "after"
          ? "border-brand-100 bg-brand-50/60 dark:border-brand-900/60 dark:bg-brand-900/20"
          : "border-zinc-200 bg-zinc-50 dark:border-zinc-800 dark:bg-zinc-950/40"
      }`}
    >
      <div className="mb-1 flex flex-wrap items-center justify-between gap-2">
        <p className="text-xs font-semibold tracking-wide text-zinc-500 uppercase dark:text-zinc-400">{title}</p>
        {matches && <Badge tone="good">matches the expected answer</Badge>}
      </div>
      <p className="text-sm break-words whitespace-pre-wrap">{text || <span className="text-zinc-400">(no answer)</span>}</p>
    </div>
  );
}

export function SampleAnswers({ samples }: { samples: SampleAnswer[] }) {
  if (samples.length === 0) return null;
  return (
    <ol aria-label="Answers before and after training" className="space-y-4">
      {samples.map((sample, index) => (
        <li key={index} aria-label={`Held-out prompt ${index + 1}`} className="space-y-2">
          <div className="text-sm">
            <p>
              <span className="text-zinc-500 dark:text-zinc-400">Prompt: </span>
              <span className="font-medium break-words whitespace-pre-wrap">{sample.prompt}</span>
            </p>
            <p>
              <span className="text-zinc-500 dark:text-zinc-400">Expected: </span>
              <span className="break-words whitespace-pre-wrap">{sample.expected}</span>
            </p>
          </div>
          <div className="grid gap-3 sm:grid-cols-2">
            <Answer title="Before (base model)" text={sample.base} expected={sample.expected} tone="before" />
            <Answer title="After (fine-tuned)" text={sample.tuned} expected={sample.expected} tone="after" />
          </div>
        </li>
      ))}
    </ol>
  );
}
