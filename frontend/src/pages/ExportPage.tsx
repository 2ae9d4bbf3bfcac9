// GGUF export: pick the model (the loaded one with its adapter, a local model, or an adapter merged into its base),
// a weight type with its expected size and the check it must pass, start an export job and follow it, then download
// the checked file and its Ollama Modelfile.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { getApiKey } from "../api/apiKey";
import { ApiError, toApiError } from "../api/client";
import {
  deleteExportMutation,
  exportGgufMutation,
  exportOptionsOptions,
  getCurrentModelOptions,
  listAdaptersOptions,
  listExportsOptions,
  listExportsQueryKey,
  listJobsOptions,
  listLocalModelsOptions,
  type ExportCheck,
  type ExportInfo,
  type ExportJob,
  type ExportOptions,
  type ExportRequest,
  type JobList,
} from "../api/queries";
import {
  barTone,
  hintFor,
  JobButtons,
  jobError,
  jobNames,
  progressValue,
  statusOf,
  useJobControls,
} from "../components/models/JobCard";
import { rememberJob } from "../components/models/jobCache";
import { useRefreshModelsWhenJobsEnd } from "../components/models/Jobs";
import {
  Badge,
  Button,
  Card,
  ConfirmDialog,
  EmptyState,
  ErrorMessage,
  Facts,
  Loading,
  Notice,
  PageHeader,
  ProgressBar,
  SelectField,
  TextField,
} from "../components/ui";
import { formatBytes, formatDate, formatDuration, formatParams } from "../format";
import { isActive, useJobEvents } from "../hooks/useJobEvents";

type Quantization = ExportRequest["quantization"] & string;

/** The export jobs this page lists (and the start puts its job into, so it shows at once). */
const EXPORT_JOBS = { query: { kind: "export" as const, limit: 10 } };
const RECENT = 5;

/** The picker's value: "" is the loaded model, "model:<id>" a local model, "adapter:<id>" an adapter with its base. */
function sourceQuery(source: string): { model_id?: string; adapter_id?: string } {
  if (source.startsWith("model:")) return { model_id: source.slice("model:".length) };
  if (source.startsWith("adapter:")) return { adapter_id: source.slice("adapter:".length) };
  return {};
}

function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** The check's figures, as the finished export and a failed job's details both carry them. */
export function checkFacts(check: ExportCheck): Array<[string, string]> {
  const mismatched = check.mismatched_probes ?? [];
  return [
    ["Read back by", check.engine],
    [
      "Tokenizer",
      check.tokenizer_match
        ? `matches (same ids on ${check.probes} probes)`
        : `differs on ${mismatched.length ? `probe ${mismatched.join(", ")}` : "some probes"}`,
    ],
    ["Max relative logit diff", `${check.max_relative_diff.toExponential(2)} (largest ${check.max_abs_diff.toPrecision(3)})`],
    ["Top-1 agreement", `${percent(check.top1_agreement)} of ${check.positions.toLocaleString()} positions`],
    ["Must pass", check.bound],
  ];
}

/** A failed job's details when they are a check's figures (code export_check_failed). */
function failedCheck(job: ExportJob): ExportCheck | null {
  const details = job.error?.details as Partial<ExportCheck> | undefined;
  if (!details || typeof details.max_relative_diff !== "number" || typeof details.top1_agreement !== "number") return null;
  return details as ExportCheck;
}

function CheckFigures({ check, label }: { check: ExportCheck; label: string }) {
  return (
    <div className="space-y-2" role="group" aria-label={label}>
      <div className="flex items-center gap-2">
        <h3 className="text-sm font-semibold">Check</h3>
        <Badge tone={check.passed ? "good" : "bad"}>{check.passed ? "Passed" : "Failed"}</Badge>
      </div>
      <Facts items={checkFacts(check)} />
    </div>
  );
}

// ---- the form -----------------------------------------------------------------------------------------------

/** What the options call says of the chosen model: what it is, and whether it can be exported (or why not). */
function Verdict({ verdict }: { verdict: ExportOptions }) {
  return (
    <div className="space-y-3 rounded-lg border border-zinc-200 p-4 dark:border-zinc-800" aria-label="Export verdict" role="group">
      <div className="flex flex-wrap items-center gap-2">
        <span className="font-medium break-all">
          {verdict.model_id}
          {verdict.adapter_id ? ` + adapter ${verdict.adapter_id}` : ""}
        </span>
        <Badge tone={verdict.supported ? "good" : "bad"}>{verdict.supported ? "Can be exported" : "Cannot be exported"}</Badge>
      </div>
      {!verdict.supported && verdict.reason && <p className="text-sm text-red-800 dark:text-red-300">{verdict.reason}</p>}
      <Facts
        items={[
          ["Architecture", verdict.architecture ?? "unknown"],
          ["Parameters", formatParams(verdict.num_parameters)],
          ["Context length", verdict.context_length ? `${verdict.context_length.toLocaleString()} tokens` : "—"],
          ...(verdict.supported ? [] : ([["Supported", verdict.supported_architectures.join(", ")]] as Array<[string, string]>)),
        ]}
      />
    </div>
  );
}

/** Why the unavailable types are unavailable: once when they share the reason (the K-quants without llama.cpp). */
function unavailableNote(verdict: ExportOptions): string[] {
  const unavailable = verdict.quantizations.filter((q) => !q.available);
  if (unavailable.length === 0) return [];
  const general = (q: (typeof unavailable)[number]) => (q.reason ?? "").replace(q.name, "{name}");
  const [first] = unavailable;
  if (unavailable.length > 1 && unavailable.every((q) => general(q) === general(first))) {
    const reason = first.reason ?? "";
    const shared = reason.startsWith(`${first.name} is `) ? `Each is ${reason.slice(`${first.name} is `.length)}` : reason;
    return [`Not available here: ${unavailable.map((q) => q.name).join(", ")}. ${shared}`];
  }
  return unavailable.map((q) => `${q.name}: ${q.reason ?? "not available here."}`);
}

function WeightTypes({ verdict, chosen }: { verdict: ExportOptions; chosen: string }) {
  return (
    <table className="w-full text-left text-sm" aria-label="Weight types">
      <thead className="text-xs text-zinc-500 dark:text-zinc-400">
        <tr>
          <th className="py-1 pr-4 font-medium">Type</th>
          <th className="py-1 pr-4 font-medium">About</th>
          <th className="py-1 font-medium">The check it must pass</th>
        </tr>
      </thead>
      <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
        {verdict.quantizations.map((q) => (
          <tr
            key={q.name}
            title={q.reason ?? undefined}
            className={`${q.available ? "" : "text-zinc-400 dark:text-zinc-500"} ${q.name === chosen ? "font-medium" : ""}`}
          >
            <td className="py-1 pr-4 font-mono text-xs">{q.name}</td>
            <td className="py-1 pr-4 tabular-nums">{formatBytes(q.expected_bytes)}</td>
            <td className="py-1">{q.available ? q.check : <Badge tone="neutral">Not available here</Badge>}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function ExportForm() {
  const queryClient = useQueryClient();
  const [source, setSource] = useState("");
  const [quantization, setQuantization] = useState<Quantization>("q8_0");
  const [name, setName] = useState("");
  const [notice, setNotice] = useState<string | null>(null);
  const current = useQuery(getCurrentModelOptions());
  const models = useQuery(listLocalModelsOptions());
  const adapters = useQuery(listAdaptersOptions());
  const options = useQuery({ ...exportOptionsOptions({ query: sourceQuery(source) }), retry: false });
  const start = useMutation({
    ...exportGgufMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (job) => {
      rememberJob(queryClient, job);
      queryClient.setQueryData<JobList>(listJobsOptions(EXPORT_JOBS).queryKey, (old) => ({
        jobs: [job, ...(old?.jobs ?? []).filter((other) => other.id !== job.id)],
      }));
      setNotice(`Started “${job.name}”: follow it under Export jobs.`);
    },
  });

  const loaded = current.data?.metadata;
  const loadedLabel = loaded
    ? `The loaded model (${loaded.model_id}${loaded.adapter ? ` + ${loaded.adapter.name}` : ""})`
    : "The loaded model (none is loaded)";
  const choices: Array<[string, string]> = [
    ["", loadedLabel],
    ...(models.data?.models ?? [])
      .filter((m) => m.complete && m.format !== "gguf" && m.format !== "none")
      .map((m): [string, string] => [`model:${m.id}`, m.id]),
    ...(adapters.data?.adapters ?? []).map((a): [string, string] => [
      `adapter:${a.id}`,
      `${a.base_model_id} + adapter ${a.name} (merged)`,
    ]),
  ];
  const verdict = options.data;
  const chosen = verdict?.quantizations.find((q) => q.name === quantization);
  const noModel = options.error instanceof ApiError && options.error.code === "model_not_loaded";
  const change = (apply: () => void) => {
    apply();
    setNotice(null);
    if (start.error) start.reset();
  };

  return (
    <Card title="Export to GGUF">
      <form
        className="space-y-4"
        onSubmit={(event) => {
          event.preventDefault();
          start.mutate({ body: { ...sourceQuery(source), quantization, ...(name.trim() ? { name: name.trim() } : {}) } });
        }}
      >
        <SelectField
          label="Model"
          value={source}
          onChange={(event) => change(() => setSource(event.target.value))}
          options={choices}
          hint="An adapter is merged into its base model's weights first. GGUF files cannot be exported again."
        />
        {options.isPending && <Loading label="Reading the model…" />}
        {noModel ? (
          <EmptyState title="No model is loaded">
            Pick a local model or an adapter above, or{" "}
            <Link to="/models" className="text-brand-700 underline dark:text-brand-500">
              load one on the Models page
            </Link>
            .
          </EmptyState>
        ) : (
          <ErrorMessage error={options.error} title="Cannot read this model" />
        )}
        {verdict && <Verdict verdict={verdict} />}
        {verdict?.supported && (
          <>
            <WeightTypes verdict={verdict} chosen={quantization} />
            {unavailableNote(verdict).map((note) => (
              <p key={note} className="text-xs text-zinc-500 dark:text-zinc-400">
                {note}
              </p>
            ))}
            <div className="grid gap-4 sm:grid-cols-2">
              <SelectField
                label="Weight type"
                value={quantization}
                onChange={(event) => change(() => setQuantization(event.target.value as Quantization))}
                options={verdict.quantizations.map((q): [string, string, boolean] => [
                  q.name,
                  `${q.name} · about ${formatBytes(q.expected_bytes)}${q.available ? "" : " · not available here"}`,
                  !q.available,
                ])}
                hint={chosen ? (chosen.available ? `Must pass: ${chosen.check}.` : chosen.reason) : undefined}
              />
              <TextField
                label="File name (optional)"
                value={name}
                onChange={(event) => change(() => setName(event.target.value))}
                placeholder={`${verdict.model_id.split("/").pop()}-${quantization}`}
                hint="Letters, digits, '.', '_' and '-'; .gguf is added."
                autoComplete="off"
              />
            </div>
            <Button type="submit" variant="primary" busy={start.isPending} disabled={chosen?.available === false}>
              Start export
            </Button>
          </>
        )}
        <ErrorMessage error={start.error} title="Could not start the export" onDismiss={() => start.reset()} />
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
      </form>
    </Card>
  );
}

// ---- the jobs -----------------------------------------------------------------------------------------------

export function ExportJobCard({ job }: { job: ExportJob }) {
  const controls = useJobControls();
  const names = jobNames(job);
  const status = statusOf(job);
  const value = progressValue(job);
  const active = isActive(job);
  const hint = hintFor(job);
  const failure = jobError(job);
  const check = job.status === "failed" ? failedCheck(job) : null;
  const p = job.progress ?? {};
  const result = job.status === "ready" ? job.result : null;

  return (
    <article aria-label={names.title} className="space-y-3 py-5">
      <div className="flex flex-wrap items-start justify-between gap-2">
        <div className="min-w-0">
          <p className="font-medium break-all">{names.title}</p>
          <p className="text-xs text-zinc-500 dark:text-zinc-400">
            {job.name}.gguf · started {formatDate(job.created_at)}
            {job.finished_at ? ` · ended ${formatDate(job.finished_at)}` : ""}
          </p>
        </div>
        <div className="flex shrink-0 items-center gap-2">
          <span className="text-sm font-medium tabular-nums">{value === null ? "" : `${Math.floor(value)}%`}</span>
          <Badge tone={status.tone}>{status.label}</Badge>
        </div>
      </div>
      <ProgressBar value={value} label={names.progress} tone={barTone(job)} />
      <div className="flex flex-wrap items-center justify-between gap-2">
        <div className="space-y-0.5 text-xs">
          {p.total ? (
            <p className="text-zinc-600 tabular-nums dark:text-zinc-400">
              {(p.completed ?? 0).toLocaleString()} of {p.total.toLocaleString()} tensors written
            </p>
          ) : null}
          {hint && <p className="text-zinc-500 dark:text-zinc-400">{hint}.</p>}
          {result && (
            <p className="text-zinc-600 dark:text-zinc-400">
              Ready: {result.file_name} ({formatBytes(result.size_bytes)}) in {formatDuration(result.seconds)}, listed under
              Exports.
            </p>
          )}
        </div>
        {(active || job.resumable) && (
          <div className="flex gap-2">
            <JobButtons job={job} controls={controls} />
          </div>
        )}
      </div>
      {failure && <ErrorMessage error={failure} title="The export failed" />}
      {check && <CheckFigures check={check} label={`Check of ${job.name}`} />}
      <ErrorMessage error={controls.error} onDismiss={controls.reset} />
    </article>
  );
}

/** A running export, followed live (events, or polling where they are unavailable). */
function LiveExportJobCard({ job }: { job: ExportJob }) {
  const { data } = useJobEvents(job.id);
  return <ExportJobCard job={data?.kind === "export" ? data : job} />;
}

function ExportJobs() {
  const [showAll, setShowAll] = useState(false);
  const jobs = useQuery({
    ...listJobsOptions(EXPORT_JOBS),
    // Running jobs follow themselves; the list only needs to notice exports started elsewhere (another tab, curl).
    refetchInterval: (query) => (query.state.data?.jobs.some(isActive) ? 3_000 : 15_000),
  });
  // An export that ends puts its file in the list below: refresh it, however the end was learned.
  useRefreshModelsWhenJobsEnd(jobs.data?.jobs);

  if (jobs.isPending) {
    return (
      <Card title="Export jobs">
        <Loading label="Loading the export jobs…" />
      </Card>
    );
  }
  if (jobs.isError) {
    return (
      <Card title="Export jobs">
        <ErrorMessage error={jobs.error} title="Could not list the export jobs" />
      </Card>
    );
  }
  const all = jobs.data.jobs.filter((job): job is ExportJob => job.kind === "export");
  if (all.length === 0) return null;
  const active = all.filter(isActive);
  const finished = all.filter((job) => !isActive(job));
  const shown = showAll ? finished : finished.slice(0, RECENT);
  return (
    <Card
      title="Export jobs"
      actions={
        finished.length > RECENT && (
          <Button variant="ghost" onClick={() => setShowAll((value) => !value)} aria-expanded={showAll}>
            {showAll ? "Show recent only" : `Show all ${finished.length} finished`}
          </Button>
        )
      }
    >
      <ul className="-my-5 divide-y divide-zinc-100 dark:divide-zinc-800">
        {active.map((job) => (
          <li key={job.id}>
            <LiveExportJobCard job={job} />
          </li>
        ))}
        {shown.map((job) => (
          <li key={job.id}>
            <ExportJobCard job={job} />
          </li>
        ))}
      </ul>
    </Card>
  );
}

// ---- the finished exports -----------------------------------------------------------------------------------

/** Save a blob under a name, the way a download link does. */
function saveBlob(blob: Blob, fileName: string): void {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = fileName;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * The file's download: a plain link, so the browser streams it to disk. With an API key saved a link cannot send
 * the Authorization header, so the file is fetched with it and saved from memory instead.
 */
function DownloadLink({ info }: { info: ExportInfo }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const url = `/exports/${encodeURIComponent(info.id)}/file`;
  return (
    <>
      <a
        href={url}
        download={info.file_name}
        aria-busy={busy || undefined}
        onClick={(event) => {
          const key = getApiKey();
          if (!key) return;
          event.preventDefault();
          setBusy(true);
          setError(null);
          fetch(url, { headers: { Authorization: `Bearer ${key}` } })
            .then(async (response) => {
              if (!response.ok) throw toApiError(await response.json().catch(() => response.statusText), response);
              saveBlob(await response.blob(), info.file_name);
            })
            .catch((caught: unknown) => setError(toApiError(caught)))
            .finally(() => setBusy(false));
        }}
        className="inline-flex items-center justify-center rounded-lg bg-brand-600 px-3.5 py-2 text-sm font-medium text-white hover:bg-brand-700"
        aria-label={`Download ${info.file_name}`}
      >
        {busy ? "Downloading…" : "Download .gguf"}
      </a>
      {error && (
        <div className="basis-full">
          <ErrorMessage error={error} title="Could not download the file" onDismiss={() => setError(null)} />
        </div>
      )}
    </>
  );
}

function Modelfile({ info }: { info: ExportInfo }) {
  const [copied, setCopied] = useState(false);
  const copy = () => {
    void navigator.clipboard
      ?.writeText(info.modelfile)
      .then(() => setCopied(true))
      .catch(() => setCopied(false));
  };
  return (
    <div className="space-y-2">
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h3 className="text-sm font-semibold">Modelfile</h3>
        <div className="flex gap-2">
          {typeof navigator !== "undefined" && navigator.clipboard && (
            <Button variant="ghost" className="px-2 py-1 text-xs" onClick={copy} aria-label={`Copy the Modelfile of ${info.name}`}>
              {copied ? "Copied" : "Copy"}
            </Button>
          )}
          <Button
            variant="ghost"
            className="px-2 py-1 text-xs"
            onClick={() => saveBlob(new Blob([info.modelfile], { type: "text/plain" }), "Modelfile")}
            aria-label={`Download the Modelfile of ${info.name}`}
          >
            Download
          </Button>
        </div>
      </div>
      <pre
        aria-label={`Modelfile for ${info.name}`}
        className="overflow-x-auto rounded-lg bg-zinc-100 p-3 font-mono text-xs dark:bg-zinc-950"
      >
        {info.modelfile}
      </pre>
      <p className="text-xs text-zinc-600 dark:text-zinc-400">
        Save it as <code className="font-mono">Modelfile</code> beside {info.file_name}, then run{" "}
        <code className="rounded bg-zinc-100 px-1 font-mono dark:bg-zinc-800">ollama create {info.name} -f Modelfile</code>.
        llama.cpp and LM Studio open the .gguf file as it is.
      </p>
    </div>
  );
}

function ExportRow({ info, onDelete }: { info: ExportInfo; onDelete: () => void }) {
  const [showModelfile, setShowModelfile] = useState(false);
  const details: Array<[string, string]> = [
    ["Type", info.quantization],
    ["Size", formatBytes(info.size_bytes)],
    ["From", info.adapter_id ? `${info.model_id} + adapter ${info.adapter_id}` : info.model_id],
    ["Parameters", formatParams(info.num_parameters)],
    ["Took", formatDuration(info.seconds)],
    ["Created", formatDate(info.created_at)],
  ];
  return (
    <li className="space-y-3 py-5" aria-label={info.name}>
      <div className="flex flex-col gap-3 lg:flex-row lg:items-start lg:justify-between">
        <div className="min-w-0 space-y-1">
          <div className="flex flex-wrap items-center gap-2">
            <span className="font-medium break-all" title={info.path}>
              {info.file_name}
            </span>
            <Badge tone="info">{info.quantization}</Badge>
          </div>
          <dl className="flex flex-wrap gap-x-4 gap-y-0.5 text-xs text-zinc-600 dark:text-zinc-400">
            {details.map(([label, value]) => (
              <div key={label} className="flex gap-1">
                <dt className="text-zinc-500">{label}</dt>
                <dd className="font-medium break-all text-zinc-700 dark:text-zinc-300">{value}</dd>
              </div>
            ))}
            <div className="flex gap-1">
              <dt className="text-zinc-500">sha256</dt>
              <dd className="font-mono text-zinc-700 dark:text-zinc-300" title={info.sha256}>
                {info.sha256.slice(0, 12)}…
              </dd>
            </div>
          </dl>
        </div>
        <div className="flex shrink-0 flex-wrap gap-2">
          <DownloadLink info={info} />
          <Button onClick={() => setShowModelfile((open) => !open)} aria-expanded={showModelfile} aria-label={`Modelfile of ${info.name}`}>
            {showModelfile ? "Hide Modelfile" : "Modelfile"}
          </Button>
          <Button variant="ghost" onClick={onDelete} aria-label={`Delete ${info.name}`} className="text-red-700 dark:text-red-400">
            Delete
          </Button>
        </div>
      </div>
      <CheckFigures check={info.check} label={`Check of ${info.name}`} />
      {showModelfile && <Modelfile info={info} />}
    </li>
  );
}

function Exports() {
  const queryClient = useQueryClient();
  const exports = useQuery(listExportsOptions());
  const [toDelete, setToDelete] = useState<ExportInfo | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const remove = useMutation({
    ...deleteExportMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => setNotice(`Deleted; ${formatBytes(data.freed_bytes)} freed.`),
    onSettled: () => {
      setToDelete(null);
      return queryClient.invalidateQueries({ queryKey: listExportsQueryKey() });
    },
  });
  return (
    <Card title="Exports">
      <div className="space-y-4">
        <ErrorMessage error={remove.error} title="Could not delete the export" onDismiss={() => remove.reset()} />
        <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
        {exports.isPending ? (
          <Loading label="Loading the exports…" />
        ) : exports.isError ? (
          <ErrorMessage error={exports.error} title="Could not list the exports" />
        ) : exports.data.exports.length === 0 ? (
          <EmptyState title="No exports yet">Start one above; it is listed here once its check has passed.</EmptyState>
        ) : (
          <ul className="-my-5 divide-y divide-zinc-100 dark:divide-zinc-800" aria-label="Exports">
            {exports.data.exports.map((info) => (
              <ExportRow
                key={info.id}
                info={info}
                onDelete={() => {
                  remove.reset();
                  setToDelete(info);
                }}
              />
            ))}
          </ul>
        )}
      </div>
      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this export?"
        confirmLabel="Delete"
        busy={remove.isPending}
        onConfirm={() => toDelete && remove.mutate({ path: { export_id: toDelete.id } })}
        onCancel={() => setToDelete(null)}
      >
        {toDelete && (
          <p>
            <span className="font-medium break-all">{toDelete.file_name}</span> ({formatBytes(toDelete.size_bytes)}) and its
            Modelfile will be removed. This cannot be undone.
          </p>
        )}
      </ConfirmDialog>
    </Card>
  );
}

export function ExportPage() {
  return (
    <>
      <PageHeader
        title="Export"
        description="Write a model or a fine-tune as one GGUF file for llama.cpp, Ollama and LM Studio. Every export is read back and compared with the model before it is ready."
      />
      <div className="space-y-6">
        <ExportForm />
        <ExportJobs />
        <Exports />
      </div>
    </>
  );
}
