import { useQuery } from "@tanstack/react-query";
import { lazy, Suspense } from "react";
import { NavLink, Navigate, Route, Routes } from "react-router";
import { getCurrentModelOptions } from "./api/queries";
import { ApiKeyPrompt } from "./components/ApiKey";
import { Loading } from "./components/ui";
import { CurrentModelPage } from "./pages/CurrentModelPage";
import { ModelsPage } from "./pages/ModelsPage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { SystemPage } from "./pages/SystemPage";

// The chat page brings the markdown renderer and the training page the chart library: each loads on first visit,
// keeping the first page small (and so does the datasets page, which few visits need).
const ChatPage = lazy(() => import("./pages/ChatPage").then((module) => ({ default: module.ChatPage })));
const DatasetsPage = lazy(() => import("./pages/DatasetsPage").then((module) => ({ default: module.DatasetsPage })));
const DocumentsPage = lazy(() => import("./pages/DocumentsPage").then((module) => ({ default: module.DocumentsPage })));
const ExportPage = lazy(() => import("./pages/ExportPage").then((module) => ({ default: module.ExportPage })));
const TrainingPage = lazy(() => import("./pages/TrainingPage").then((module) => ({ default: module.TrainingPage })));

const NAV = [
  { to: "/chat", label: "Chat" },
  { to: "/models", label: "Models" },
  { to: "/datasets", label: "Datasets" },
  { to: "/documents", label: "Documents" },
  { to: "/training", label: "Training" },
  { to: "/export", label: "Export" },
  { to: "/current", label: "Current model" },
  { to: "/system", label: "System" },
];

export function LoadedPill() {
  const { data } = useQuery({
    ...getCurrentModelOptions(),
    refetchInterval: (query) => (query.state.data?.activity === "idle" ? 5_000 : 1_000),
  });
  const loading = data?.activity === "loading" ? (data.loading ?? data.loading_job?.model_id ?? "a model") : null;
  const adapter = data?.metadata?.adapter ? ` + ${data.metadata.adapter.name}` : "";
  const text = loading
    ? `Loading ${loading}…`
    : data?.metadata
      ? `${data.metadata.model_id}${adapter} · ${data.activity === "generating" ? "generating" : data.metadata.device}`
      : "No model loaded";
  const dot = loading
    ? "bg-amber-500 animate-pulse"
    : data?.activity === "generating"
      ? "bg-brand-500 animate-pulse"
      : data?.metadata
        ? "bg-brand-500"
        : "bg-zinc-400";
  return (
    <NavLink
      to="/current"
      className="flex min-w-0 items-center gap-2 rounded-lg px-2 py-1 text-xs text-zinc-600 hover:bg-zinc-200/70 dark:text-zinc-400 dark:hover:bg-zinc-800"
      aria-label={`Current model: ${text}`}
    >
      <span className={`size-2 shrink-0 rounded-full ${dot}`} aria-hidden="true" />
      <span className="truncate">{text}</span>
    </NavLink>
  );
}

export function App() {
  return (
    <div className="min-h-screen md:grid md:grid-cols-[14rem_1fr]">
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:m-2 focus:rounded focus:bg-white focus:p-2">
        Skip to content
      </a>
      <aside className="border-b border-zinc-200 bg-white/80 px-4 py-3 backdrop-blur md:sticky md:top-0 md:h-screen md:border-r md:border-b-0 md:py-6 dark:border-zinc-800 dark:bg-zinc-900/60">
        <div className="flex items-center justify-between gap-3 md:block">
          <NavLink to="/" className="flex items-center gap-2 text-lg font-semibold tracking-tight md:mb-8">
            <img src="/favicon.svg" alt="" className="size-6" />
            Orchard
          </NavLink>
          <div className="min-w-0 md:hidden">
            <LoadedPill />
          </div>
        </div>
        <nav aria-label="Main" className="mt-3 flex gap-1 overflow-x-auto md:mt-0 md:flex-col">
          {NAV.map((item) => (
            <NavLink
              key={item.to}
              to={item.to}
              className={({ isActive }) =>
                `whitespace-nowrap rounded-lg px-3 py-2 text-sm font-medium ${
                  isActive
                    ? "bg-brand-50 text-brand-700 dark:bg-brand-900/40 dark:text-brand-100"
                    : "text-zinc-700 hover:bg-zinc-200/70 dark:text-zinc-300 dark:hover:bg-zinc-800"
                }`
              }
            >
              {item.label}
            </NavLink>
          ))}
        </nav>
        <div className="mt-8 hidden md:block">
          <LoadedPill />
        </div>
      </aside>
      <main id="main" className="mx-auto w-full max-w-5xl px-4 py-6 sm:px-6 md:py-10">
        <ApiKeyPrompt />
        <Routes>
          <Route path="/" element={<Navigate to="/models" replace />} />
          <Route path="/chat" element={<Suspense fallback={<Loading />}><ChatPage /></Suspense>} />
          <Route path="/models" element={<ModelsPage />} />
          <Route path="/datasets" element={<Suspense fallback={<Loading />}><DatasetsPage /></Suspense>} />
          <Route path="/documents" element={<Suspense fallback={<Loading />}><DocumentsPage /></Suspense>} />
          <Route path="/training" element={<Suspense fallback={<Loading />}><TrainingPage /></Suspense>} />
          <Route path="/export" element={<Suspense fallback={<Loading />}><ExportPage /></Suspense>} />
          <Route path="/current" element={<CurrentModelPage />} />
          <Route path="/system" element={<SystemPage />} />
          <Route path="*" element={<NotFoundPage />} />
        </Routes>
      </main>
    </div>
  );
}
