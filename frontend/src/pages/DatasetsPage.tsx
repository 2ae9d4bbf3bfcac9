import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import {
  deleteDatasetMutation,
  getCurrentModelOptions,
  invalidateDatasets,
  listDatasetsOptions,
  type DatasetInfo,
} from "../api/queries";
import { DatasetDetail, SHAPES } from "../components/datasets/DatasetDetail";
import { UploadDataset } from "../components/datasets/UploadDataset";
import { Badge, Button, Card, ConfirmDialog, EmptyState, ErrorMessage, Loading, Notice, PageHeader } from "../components/ui";
import { formatBytes, formatDate } from "../format";

function DatasetRow({ dataset, selected, onSelect, onDelete }: {
  dataset: DatasetInfo;
  selected: boolean;
  onSelect: () => void;
  onDelete: () => void;
}) {
  const details: Array<[string, string]> = [
    ["Examples", dataset.num_examples.toLocaleString()],
    ["Shape", SHAPES[dataset.shape]],
    ["File", `${dataset.source_filename} · ${formatBytes(dataset.source_bytes)}`],
    ["Uploaded", formatDate(dataset.created_at)],
  ];
  return (
    <li className="flex flex-col gap-3 py-4 sm:flex-row sm:items-center sm:justify-between">
      <div className="min-w-0 space-y-1">
        <div className="flex flex-wrap items-center gap-2">
          <span className="font-medium break-all">{dataset.name}</span>
          <Badge tone="neutral">{dataset.format}</Badge>
          {selected && <Badge tone="info">Shown below</Badge>}
        </div>
        <dl className="flex flex-wrap gap-x-4 gap-y-0.5 text-xs text-zinc-600 dark:text-zinc-400">
          {details.map(([label, value]) => (
            <div key={label} className="flex gap-1">
              <dt className="text-zinc-500 dark:text-zinc-500">{label}</dt>
              <dd className="font-medium break-all text-zinc-700 dark:text-zinc-300">{value}</dd>
            </div>
          ))}
        </dl>
      </div>
      <div className="flex shrink-0 gap-2">
        <Button variant={selected ? "secondary" : "primary"} onClick={onSelect} aria-pressed={selected} aria-label={`Show ${dataset.name}`}>
          Show
        </Button>
        <Button variant="ghost" onClick={onDelete} aria-label={`Delete ${dataset.name}`} className="text-red-700 dark:text-red-400">
          Delete
        </Button>
      </div>
    </li>
  );
}

export function DatasetsPage() {
  const queryClient = useQueryClient();
  const datasets = useQuery(listDatasetsOptions());
  const current = useQuery(getCurrentModelOptions());
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [toDelete, setToDelete] = useState<DatasetInfo | null>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const remove = useMutation({
    ...deleteDatasetMutation(),
    onMutate: () => setNotice(null),
    onSuccess: (data) => setNotice(`Deleted; ${formatBytes(data.freed_bytes)} freed.`),
    onSettled: () => {
      setToDelete(null);
      return invalidateDatasets(queryClient);
    },
  });

  const list = datasets.data?.datasets ?? [];
  // The chosen dataset, else the newest: there is always one to look at while any exists.
  const selected = list.find((d) => d.id === selectedId) ?? list[0] ?? null;
  const modelId = current.data?.metadata?.model_id ?? null;

  return (
    <>
      <PageHeader title="Datasets" description="Upload data to fine-tune on, check it, and see what the model will be trained on." />
      <div className="space-y-6">
        <UploadDataset onUploaded={(dataset) => setSelectedId(dataset.id)} />
        <Card title="Datasets">
          <div className="space-y-4">
            <ErrorMessage error={remove.error} title="Could not delete the dataset" onDismiss={() => remove.reset()} />
            <Notice onDismiss={() => setNotice(null)}>{notice}</Notice>
            {datasets.isPending ? (
              <Loading label="Reading the datasets…" />
            ) : datasets.isError ? (
              <ErrorMessage error={datasets.error} title="Could not list the datasets" />
            ) : list.length === 0 ? (
              <EmptyState title="No datasets yet">Upload one above to check it and train on it.</EmptyState>
            ) : (
              <ul className="-my-4 divide-y divide-zinc-100 dark:divide-zinc-800">
                {list.map((dataset) => (
                  <DatasetRow
                    key={dataset.id}
                    dataset={dataset}
                    selected={dataset.id === selected?.id}
                    onSelect={() => setSelectedId(dataset.id)}
                    onDelete={() => {
                      remove.reset();
                      setToDelete(dataset);
                    }}
                  />
                ))}
              </ul>
            )}
          </div>
        </Card>
        {selected && <DatasetDetail key={selected.id} dataset={selected} modelId={modelId} />}
      </div>
      <ConfirmDialog
        open={toDelete !== null}
        title="Delete this dataset?"
        confirmLabel="Delete"
        busy={remove.isPending}
        onCancel={() => setToDelete(null)}
        onConfirm={() => toDelete && remove.mutate({ path: { dataset_id: toDelete.id } })}
      >
        {toDelete && (
          <p>
            <span className="font-medium break-all">{toDelete.name}</span> ({toDelete.num_examples.toLocaleString()} examples) will be
            removed. Training runs keep their own copy of the rows. This cannot be undone.
          </p>
        )}
      </ConfirmDialog>
    </>
  );
}
