// Memory drawn, not listed: the model inside Orchard's process inside the machine's memory, and the
// accelerator's own memory when there is one (CUDA). On Apple silicon (MPS) the GPU shares system memory.
import type { MemoryStats } from "../api/queries";
import { formatGb } from "../format";

function Bar({ label, total, segments }: {
  label: string;
  total: number;
  segments: Array<{ name: string; gb: number; className: string }>;
}) {
  const used = segments.reduce((sum, s) => sum + s.gb, 0);
  return (
    <figure className="space-y-2">
      <figcaption className="flex justify-between text-sm">
        <span className="font-medium">{label}</span>
        <span className="text-zinc-500 dark:text-zinc-400">
          {formatGb(used)} of {formatGb(total)} used
        </span>
      </figcaption>
      <div
        role="meter"
        aria-label={label}
        aria-valuemin={0}
        aria-valuemax={total}
        aria-valuenow={Number(used.toFixed(2))}
        aria-valuetext={segments.map((s) => `${s.name} ${formatGb(s.gb)}`).join(", ")}
        className="flex h-4 w-full overflow-hidden rounded-full bg-zinc-200 dark:bg-zinc-800"
      >
        {segments.map((s) => (
          <div key={s.name} className={s.className} style={{ width: `${total > 0 ? Math.min(100, (s.gb / total) * 100) : 0}%` }} />
        ))}
      </div>
      <ul className="flex flex-wrap gap-x-4 gap-y-1 text-xs text-zinc-600 dark:text-zinc-400">
        {segments.map((s) => (
          <li key={s.name} className="flex items-center gap-1.5">
            <span className={`size-2.5 rounded-sm ${s.className}`} aria-hidden="true" />
            {s.name} {formatGb(s.gb)}
          </li>
        ))}
        <li className="flex items-center gap-1.5">
          <span className="size-2.5 rounded-sm bg-zinc-200 dark:bg-zinc-800" aria-hidden="true" />
          free {formatGb(Math.max(0, total - used))}
        </li>
      </ul>
    </figure>
  );
}

export function MemoryGauge({ memory, modelGb }: { memory: MemoryStats; modelGb?: number | null }) {
  const total = memory.system_total_gb;
  const othersGb = Math.max(0, total - memory.system_available_gb - memory.process_rss_gb);
  const onCpu = memory.device === "cpu" || memory.device === "mps";
  const model = onCpu && modelGb ? Math.min(modelGb, memory.process_rss_gb) : 0;
  const accelerator = memory.accelerator;
  return (
    <div className="space-y-6">
      <Bar
        label={memory.device === "mps" ? "Unified memory (system and GPU)" : "System memory"}
        total={total}
        segments={[
          ...(model > 0 ? [{ name: "model", gb: model, className: "bg-brand-600" }] : []),
          { name: model > 0 ? "rest of Orchard" : "Orchard", gb: memory.process_rss_gb - model, className: "bg-brand-500/40" },
          { name: "other programs", gb: othersGb, className: "bg-zinc-400 dark:bg-zinc-600" },
        ]}
      />
      {accelerator && memory.device === "cuda" && (
        <Bar
          label={`GPU memory${accelerator.name ? ` (${accelerator.name})` : ""}`}
          total={accelerator.total_gb}
          segments={[
            { name: "Orchard", gb: accelerator.allocated_gb, className: "bg-brand-600" },
            {
              name: "other",
              gb: Math.max(0, accelerator.total_gb - accelerator.free_gb - accelerator.allocated_gb),
              className: "bg-zinc-400 dark:bg-zinc-600",
            },
          ]}
        />
      )}
      <p className="text-xs text-zinc-500 dark:text-zinc-400">
        {formatGb(memory.device_available_gb)} available for models on {memory.device}
        {memory.safety_margin_gb > 0 && `, of which Orchard keeps ${formatGb(memory.safety_margin_gb)} free as a safety margin`}.
      </p>
    </div>
  );
}
