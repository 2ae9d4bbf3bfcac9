import { useQuery } from "@tanstack/react-query";
import { getConfigOptions, getCurrentModelOptions, healthOptions } from "../api/queries";
import { SavedApiKey } from "../components/ApiKey";
import { MemoryGauge } from "../components/MemoryGauge";
import { Badge, Card, ErrorMessage, Facts, Loading, PageHeader } from "../components/ui";

function SettingValue({ value }: { value: unknown }) {
  if (value === null || value === undefined || value === "") return <span className="text-zinc-400">not set</span>;
  if (typeof value === "boolean") return <Badge tone={value ? "good" : "neutral"}>{value ? "on" : "off"}</Badge>;
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return <span className="font-mono text-xs break-all">{text}</span>;
}

export function SystemPage() {
  const config = useQuery(getConfigOptions());
  const current = useQuery({ ...getCurrentModelOptions(), refetchInterval: 5_000 });
  const health = useQuery(healthOptions());

  return (
    <>
      <PageHeader title="System" description="What this machine can hold, and how Orchard is set up." />
      <div className="space-y-6">
        <Card title="Device">
          {config.isPending ? (
            <Loading />
          ) : config.isError ? (
            <ErrorMessage error={config.error} />
          ) : (
            <Facts
              items={[
                ["Device", <Badge tone="info">{config.data.device}</Badge>],
                ["Default dtype", config.data.dtype],
                [
                  "Recommended batch size",
                  config.data.recommended_batch_size ?? <span className="text-zinc-400">load a model to see it</span>,
                ],
                ["Orchard", health.data ? `v${health.data.version} · warm-up ${health.data.warmup}` : "—"],
              ]}
            />
          )}
        </Card>
        <Card title="Engines">
          {config.isPending ? (
            <Loading />
          ) : config.isError ? (
            <ErrorMessage error={config.error} />
          ) : (
            <ul className="space-y-3" aria-label="Engines">
              {(config.data.engines ?? []).map((engine) => (
                <li key={engine.name} aria-label={engine.name} className="space-y-1">
                  <div className="flex flex-wrap items-center gap-2">
                    <span className="font-medium">{engine.name}</span>
                    <Badge tone={engine.available ? "good" : "warn"}>{engine.available ? "Installed" : "Not installed"}</Badge>
                    {engine.version && <span className="text-xs text-zinc-500 dark:text-zinc-400">v{engine.version}</span>}
                    {engine.gpu_offload === true && <Badge tone="info">GPU offload</Badge>}
                  </div>
                  <p className="text-sm text-zinc-600 dark:text-zinc-400">Runs {engine.runs}.</p>
                  {engine.hint && <p className="text-sm text-amber-800 dark:text-amber-300">{engine.hint}</p>}
                </li>
              ))}
            </ul>
          )}
        </Card>
        <Card title="Memory">
          {current.isPending ? (
            <Loading />
          ) : current.isError ? (
            <ErrorMessage error={current.error} />
          ) : (
            <MemoryGauge memory={current.data.memory} modelGb={current.data.metadata?.measured_memory_gb} />
          )}
        </Card>
        <SavedApiKey />
        <Card title="Settings">
          <p className="mb-4 text-sm text-zinc-600 dark:text-zinc-400">
            Set with <code className="font-mono">ORCHARD_*</code> environment variables or a <code className="font-mono">.env</code>{" "}
            file (see <code className="font-mono">.env.example</code>); secrets are never shown.
          </p>
          {config.isPending ? (
            <Loading />
          ) : config.isError ? (
            <ErrorMessage error={config.error} />
          ) : (
            <div className="overflow-x-auto">
              <table className="w-full text-left text-sm">
                <thead className="text-xs text-zinc-500 uppercase dark:text-zinc-400">
                  <tr>
                    <th scope="col" className="py-2 pr-4 font-medium">Setting</th>
                    <th scope="col" className="py-2 font-medium">Value</th>
                  </tr>
                </thead>
                <tbody className="divide-y divide-zinc-100 dark:divide-zinc-800">
                  {Object.entries(config.data.settings).map(([name, value]) => (
                    <tr key={name}>
                      <th scope="row" className="py-2 pr-4 font-mono text-xs font-normal whitespace-nowrap">
                        ORCHARD_{name.toUpperCase()}
                      </th>
                      <td className="py-2">
                        <SettingValue value={value} />
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </Card>
      </div>
    </>
  );
}
