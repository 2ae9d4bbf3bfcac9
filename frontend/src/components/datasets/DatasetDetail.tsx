// One dataset checked before training: its size and shape, what may be wrong with it (duplicates, rows with nothing
// to train on), and with a model loaded its length in that model's tokens, drawn as a histogram, with the rows
// training will leave out for being longer than max_seq_length. Then the preview of its rows.
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { getConfigOptions, getDatasetOptions, type DatasetInfo, type HistogramBin, type TokenStats } from "../../api/queries";
import { formatBytes, formatDate } from "../../format";
import { useDebouncedValue } from "../../hooks/useDebouncedValue";
import { Card, ErrorMessage, Facts, Loading, TextField } from "../ui";
import { DatasetPreview } from "./DatasetPreview";

export const SHAPES: Record<DatasetInfo["shape"], string> = {
  chat: "Chat (messages)",
  sharegpt: "ShareGPT (conversations)",
  instruction: "Instruction / input / output",
  prompt_completion: "Prompt / completion",
  text: "Plain text",
};

function range(bin: HistogramBin): string {
  return bin.end - 1 > bin.start ? `${bin.start.toLocaleString()}–${(bin.end - 1).toLocaleString()}` : bin.start.toLocaleString();
}

/** Rows by token length, one bar a bin; bins past max_seq_length (dropped from training) in amber. */
export function TokenHistogram({ bins, maxSeqLength }: { bins: HistogramBin[]; maxSeqLength: number }) {
  const most = Math.max(1, ...bins.map((bin) => bin.count));
  return (
    <figure className="space-y-2">
      <figcaption className="text-sm font-medium">Rows by length in tokens</figcaption>
      <ul aria-label="Token length histogram" className="flex h-36 items-end gap-1 border-b border-zinc-300 dark:border-zinc-700">
        {bins.map((bin) => {
          const over = bin.start > maxSeqLength;
          const partly = !over && bin.end - 1 > maxSeqLength;
          return (
            <li
              key={bin.start}
              aria-label={`${range(bin)} tokens: ${bin.count.toLocaleString()} ${bin.count === 1 ? "row" : "rows"}${over ? ", over max_seq_length" : partly ? ", partly over max_seq_length" : ""}`}
              title={`${range(bin)} tokens: ${bin.count} rows`}
              className="flex h-full min-w-0 flex-1 flex-col items-center justify-end"
            >
              <span className="text-[10px] text-zinc-500 tabular-nums dark:text-zinc-400" aria-hidden="true">
                {bin.count > 0 ? bin.count : ""}
              </span>
              <div
                className={`w-full rounded-t ${over ? "bg-amber-500" : partly ? "bg-gradient-to-t from-brand-600 to-amber-500" : "bg-brand-600"}`}
                style={{ height: `${(bin.count / most) * 85}%`, minHeight: bin.count > 0 ? 2 : 0 }}
              />
            </li>
          );
        })}
      </ul>
      <div className="flex justify-between text-[10px] text-zinc-500 tabular-nums dark:text-zinc-400" aria-hidden="true">
        <span>{bins[0]?.start.toLocaleString()}</span>
        <span>{bins.length > 0 ? (bins[bins.length - 1].end - 1).toLocaleString() : ""} tokens</span>
      </div>
    </figure>
  );
}

function Tokens({ tokens }: { tokens: TokenStats }) {
  return (
    <div className="space-y-4">
      <p className="text-xs text-zinc-500 dark:text-zinc-400">
        With {tokens.model_id}'s tokenizer and {tokens.chat_template === "model" ? "chat template" : "the fallback transcript (it has no chat template)"}, as
        training renders them.
      </p>
      <Facts
        items={[
          ["Shortest", `${tokens.min.toLocaleString()} tokens`],
          ["Longest", `${tokens.max.toLocaleString()} tokens`],
          ["Mean", `${tokens.mean.toFixed(1)} tokens`],
          ["In all", `${tokens.total.toLocaleString()} tokens`],
        ]}
      />
      {tokens.histogram.length > 0 && <TokenHistogram bins={tokens.histogram} maxSeqLength={tokens.max_seq_length} />}
      {tokens.over_max_seq_length > 0 ? (
        <div className="rounded-lg border border-amber-200 bg-amber-50 px-4 py-3 text-sm text-amber-900 dark:border-amber-900/60 dark:bg-amber-950/30 dark:text-amber-200">
          <p className="font-medium">
            {tokens.over_max_seq_length.toLocaleString()} {tokens.over_max_seq_length === 1 ? "row is" : "rows are"} longer than{" "}
            {tokens.max_seq_length.toLocaleString()} tokens: training keeps {tokens.kept_examples.toLocaleString()}.
          </p>
          <p className="mt-1">{tokens.policy_note}</p>
        </div>
      ) : (
        <p className="text-sm text-zinc-600 dark:text-zinc-400">
          Every row fits in {tokens.max_seq_length.toLocaleString()} tokens. {tokens.policy_note}
        </p>
      )}
      {tokens.unrenderable > 0 && (
        <p className="text-sm text-amber-700 dark:text-amber-300">
          The chat template refused {tokens.unrenderable.toLocaleString()} {tokens.unrenderable === 1 ? "row" : "rows"}; training leaves them
          out.
        </p>
      )}
    </div>
  );
}

export function DatasetDetail({ dataset, modelId }: { dataset: DatasetInfo; modelId: string | null }) {
  const config = useQuery(getConfigOptions());
  const [maxSeq, setMaxSeq] = useState("");
  const settled = useDebouncedValue(maxSeq, 400);
  const maxSeqValue = /^\d+$/.test(settled.trim()) && Number(settled) >= 1 ? Number(settled) : null;
  const maxSeqError = maxSeq.trim() !== "" && !/^\d+$/.test(maxSeq.trim()) ? "Enter a whole number of tokens, or leave it empty." : null;
  const detail = useQuery({
    ...getDatasetOptions({ path: { dataset_id: dataset.id }, query: maxSeqValue ? { max_seq_length: maxSeqValue } : undefined }),
    placeholderData: keepPreviousData,
  });
  const defaultMaxSeq = config.data?.settings.train_max_seq_length;

  return (
    <Card title={<span className="break-all">{dataset.name}</span>}>
      <div className="space-y-6">
        {detail.isPending ? (
          <Loading label="Checking the rows…" />
        ) : detail.isError ? (
          <ErrorMessage error={detail.error} title="Could not read the dataset" />
        ) : (
          <>
            <Facts
              items={[
                ["Examples", detail.data.num_examples.toLocaleString()],
                ["Shape", SHAPES[detail.data.shape]],
                ["File", `${detail.data.source_filename} · ${formatBytes(detail.data.source_bytes)}`],
                ["Uploaded", formatDate(detail.data.created_at)],
                [
                  "Characters per row",
                  `${detail.data.statistics.characters.min.toLocaleString()}–${detail.data.statistics.characters.max.toLocaleString()}, mean ${detail.data.statistics.characters.mean.toFixed(0)}`,
                ],
                ["Duplicates", detail.data.statistics.duplicates.toLocaleString()],
                ["Nothing to train on", detail.data.statistics.no_trainable_tokens.toLocaleString()],
              ]}
            />
            {(detail.data.statistics.duplicates > 0 || detail.data.statistics.no_trainable_tokens > 0) && (
              <ul className="list-inside list-disc text-sm text-amber-700 dark:text-amber-300">
                {detail.data.statistics.duplicates > 0 && (
                  <li>
                    {detail.data.statistics.duplicates.toLocaleString()} {detail.data.statistics.duplicates === 1 ? "row repeats" : "rows repeat"} an
                    earlier one: repeats weigh more in training.
                  </li>
                )}
                {detail.data.statistics.no_trainable_tokens > 0 && (
                  <li>
                    {detail.data.statistics.no_trainable_tokens.toLocaleString()}{" "}
                    {detail.data.statistics.no_trainable_tokens === 1 ? "row has" : "rows have"} no assistant reply to learn: training leaves
                    {detail.data.statistics.no_trainable_tokens === 1 ? " it" : " them"} out.
                  </li>
                )}
              </ul>
            )}
            <section className="space-y-3" aria-label="Token statistics">
              <div className="flex flex-wrap items-end justify-between gap-3">
                <h3 className="text-sm font-semibold">Length in tokens</h3>
                {detail.data.statistics.tokens && (
                  <TextField
                    label="Max sequence length"
                    className="w-48"
                    inputMode="numeric"
                    autoComplete="off"
                    placeholder={defaultMaxSeq ? `default (${String(defaultMaxSeq)})` : "default"}
                    value={maxSeq}
                    onChange={(event) => setMaxSeq(event.target.value)}
                    error={maxSeqError}
                  />
                )}
              </div>
              {detail.data.statistics.tokens ? (
                <Tokens tokens={detail.data.statistics.tokens} />
              ) : (
                <p className="text-sm text-zinc-600 dark:text-zinc-400">
                  {detail.data.statistics.tokens_reason}{" "}
                  <Link to="/models" className="text-brand-700 underline dark:text-brand-500">
                    Models page
                  </Link>
                </p>
              )}
            </section>
          </>
        )}
        <section className="space-y-3" aria-label="Preview">
          <h3 className="text-sm font-semibold">Preview</h3>
          <DatasetPreview key={`${dataset.id}:${modelId ?? ""}`} datasetId={dataset.id} modelId={modelId} />
        </section>
      </div>
    </Card>
  );
}
