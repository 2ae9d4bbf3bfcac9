// Rows as the model will see them: rendered through the loaded model's chat template, with the spans it is trained
// on (the assistant's turns, end-of-turn included) marked, and the context it only reads left plain.
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { Link } from "react-router";
import { previewDatasetOptions, type PreviewRow } from "../../api/queries";
import { Button, ErrorMessage, Loading } from "../ui";

const PAGE = 5;
const TRAINED = "rounded-sm bg-brand-100 text-brand-900 ring-1 ring-brand-500/40 dark:bg-brand-900/50 dark:text-brand-100";

export function Legend() {
  return (
    <ul aria-label="Legend" className="flex flex-wrap gap-x-4 gap-y-1 text-xs text-zinc-600 dark:text-zinc-400">
      <li className="flex items-center gap-1.5">
        <span className={`inline-block h-3 w-5 ${TRAINED}`} aria-hidden="true" />
        trained on (the loss is on these tokens)
      </li>
      <li className="flex items-center gap-1.5">
        <span className="inline-block h-3 w-5 rounded-sm border border-zinc-300 dark:border-zinc-700" aria-hidden="true" />
        context, read but not trained on
      </li>
    </ul>
  );
}

function Row({ row }: { row: PreviewRow }) {
  return (
    <li aria-label={`Row ${row.index + 1}`} className="space-y-1">
      <p className="text-xs text-zinc-500 dark:text-zinc-400">
        Row {row.index + 1} · {row.num_tokens.toLocaleString()} tokens
      </p>
      {row.warning ? (
        <p className="text-sm text-amber-700 dark:text-amber-300">{row.warning}</p>
      ) : (
        <pre className="overflow-x-auto rounded-lg border border-zinc-200 bg-zinc-50 p-3 font-mono text-xs leading-relaxed break-words whitespace-pre-wrap text-zinc-600 dark:border-zinc-800 dark:bg-zinc-950 dark:text-zinc-400">
          {row.segments.map((segment, index) =>
            segment.trained ? (
              <mark key={index} title="trained on" className={TRAINED}>
                {segment.text}
              </mark>
            ) : (
              <span key={index}>{segment.text}</span>
            ),
          )}
        </pre>
      )}
    </li>
  );
}

export function DatasetPreview({ datasetId, modelId }: { datasetId: string; modelId: string | null }) {
  const [offset, setOffset] = useState(0);
  const preview = useQuery({
    ...previewDatasetOptions({ path: { dataset_id: datasetId }, query: { offset, limit: PAGE } }),
    // Without a model the server can only say so (409): ask once one is loaded.
    enabled: modelId !== null,
    placeholderData: keepPreviousData,
  });

  if (modelId === null) {
    return (
      <p className="text-sm text-zinc-600 dark:text-zinc-400">
        The preview renders rows with the model's chat template, so it needs a model:{" "}
        <Link to="/models" className="text-brand-700 underline dark:text-brand-500">
          load one on the Models page
        </Link>
        .
      </p>
    );
  }
  if (preview.isPending) return <Loading label="Rendering rows…" />;
  if (preview.isError) return <ErrorMessage error={preview.error} title="Could not preview the dataset" />;
  const { rows, total, chat_template } = preview.data;
  const last = Math.min(offset + rows.length, total);
  return (
    <div className="space-y-3" aria-busy={preview.isFetching || undefined}>
      <p className="text-xs text-zinc-500 dark:text-zinc-400">
        Rendered with {preview.data.model_id}'s {chat_template === "model" ? "chat template" : "fallback transcript (User:/Assistant:), as it has no chat template"}.
      </p>
      <Legend />
      <ol className="space-y-4">
        {rows.map((row) => (
          <Row key={row.index} row={row} />
        ))}
      </ol>
      <div className="flex flex-wrap items-center justify-between gap-2">
        <p className="text-xs text-zinc-500 tabular-nums dark:text-zinc-400">
          Rows {total === 0 ? 0 : offset + 1}–{last} of {total.toLocaleString()}
        </p>
        <div className="flex gap-2">
          <Button variant="ghost" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
            Previous rows
          </Button>
          <Button variant="ghost" disabled={last >= total} onClick={() => setOffset(offset + PAGE)}>
            Next rows
          </Button>
        </div>
      </div>
    </div>
  );
}
