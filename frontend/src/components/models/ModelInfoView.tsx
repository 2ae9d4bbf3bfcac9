// What the Hub says about a model before any weight is fetched, and whether it fits here, with the reason.
import type { DownloadCheck, ModelInfoResponse } from "../../api/queries";
import { formatBytes, formatGb, formatParams } from "../../format";
import { Badge, ErrorMessage, Facts } from "../ui";

function architectureOf(info: ModelInfoResponse): string {
  if (info.architecture && info.model_type) return `${info.architecture} (${info.model_type})`;
  return info.architecture ?? info.model_type ?? "unknown";
}

function FileList({ info }: { info: ModelInfoResponse }) {
  if (info.files.length === 0) return null;
  return (
    <details className="group rounded-lg border border-zinc-200 dark:border-zinc-800">
      <summary className="cursor-pointer rounded-lg px-3 py-2 text-sm font-medium hover:bg-zinc-50 dark:hover:bg-zinc-800/50">
        Files ({info.files.length})
      </summary>
      <ul className="max-h-64 divide-y divide-zinc-100 overflow-y-auto border-t border-zinc-200 text-xs dark:divide-zinc-800 dark:border-zinc-800">
        {info.files.map((file) => (
          <li key={file.path} className="flex justify-between gap-4 px-3 py-1.5">
            <span className="min-w-0 font-mono break-all">{file.path}</span>
            <span className="shrink-0 text-zinc-500 tabular-nums dark:text-zinc-400">{formatBytes(file.size)}</span>
          </li>
        ))}
      </ul>
    </details>
  );
}

export function ModelInfoView({ info, check, checkError }: {
  info: ModelInfoResponse;
  check?: DownloadCheck;
  checkError?: unknown;
}) {
  // The download check covers disk and memory; until it answers (or if it fails), the info's memory verdict.
  const fits = check ? check.fits : info.memory.fits;
  const reason = check ? check.reason : info.memory.reason;
  const memory = info.memory;
  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center gap-2">
        <h3 className="text-lg font-semibold break-all">{info.model_id}</h3>
        {info.gated ? <Badge tone="warn">Gated</Badge> : null}
        {info.private ? <Badge tone="warn">Private</Badge> : null}
        {info.pipeline_tag && <Badge>{info.pipeline_tag}</Badge>}
      </div>
      <div
        className={`flex flex-col gap-2 rounded-lg border px-4 py-3 sm:flex-row sm:items-center ${
          fits
            ? "border-brand-100 bg-brand-50/60 dark:border-brand-900/60 dark:bg-brand-900/20"
            : "border-amber-200 bg-amber-50 dark:border-amber-900/60 dark:bg-amber-950/30"
        }`}
      >
        <span className="shrink-0">
          <Badge tone={fits ? "good" : "bad"}>{fits ? "Fits" : "Does not fit"}</Badge>
        </span>
        <p className="text-sm">{reason}</p>
      </div>
      <Facts
        items={[
          ["Architecture", architectureOf(info)],
          ["Parameters", info.num_parameters ? formatParams(info.num_parameters) : "unknown"],
          ["Weights", `${info.weight_format} · ${formatBytes(info.weights_size_bytes)}`],
          ["Files", `${info.files.length} · ${formatBytes(info.total_size_bytes)} in all`],
          ["Memory needed", memory.required_gb === null ? "unknown" : `${formatGb(memory.required_gb)} as ${memory.dtype}`],
          ["Memory available", `${memory.available_gb > 0 ? formatGb(memory.available_gb) : "none"} on ${memory.device}`],
          ...(check
            ? ([
                [
                  "To download",
                  check.bytes_cached > 0
                    ? `${formatBytes(check.bytes_to_fetch)} (${formatBytes(check.bytes_cached)} already here)`
                    : formatBytes(check.bytes_to_fetch),
                ],
                ["Free disk", formatBytes(check.disk_free_bytes)],
              ] as Array<[string, string]>)
            : []),
          ["Context length", info.context_length ? `${info.context_length.toLocaleString()} tokens` : "unknown"],
          ["Revision", info.sha ? <span className="font-mono text-xs">{info.sha.slice(0, 10)}</span> : (info.revision ?? "main")],
        ]}
      />
      {checkError ? <ErrorMessage error={checkError} title="Could not check the download against free disk and memory" /> : null}
      <FileList info={info} />
    </div>
  );
}
