/// <reference types="vitest/config" />
import tailwindcss from "@tailwindcss/vite";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves the app on :5173 and proxies the API to the backend on :8000 (`scripts/start` or
// `uv run orchard serve`). The built app (`npm run build` -> dist/) is what the backend serves at /.
const api = process.env.ORCHARD_API ?? "http://127.0.0.1:8000";
const apiPaths = [
  "/model",
  "/jobs",
  "/v1",
  "/chat",
  "/datasets",
  "/training",
  "/adapters",
  "/export",
  "/exports",
  "/rag",
  "/health",
  "/config",
  "/docs",
  "/openapi.json",
];
// Some app pages share their path (or its start) with the API: /chat, /datasets, /training, /models, /export. A browser
// navigating to one gets the app from Vite; the app's own requests (fetch, EventSource) go to the backend.
const appPages = new Set(["/chat", "/datasets", "/training", "/models", "/export"]);
const bypass = (req: { url?: string; headers: Record<string, string | string[] | undefined> }) => {
  const page = (req.url ?? "").split(/[?#]/)[0];
  return req.headers["sec-fetch-mode"] === "navigate" && appPages.has(page) ? "/index.html" : undefined;
};

export default defineConfig({
  plugins: [react(), tailwindcss()],
  server: {
    host: "127.0.0.1",
    port: 5173,
    proxy: Object.fromEntries(apiPaths.map((path) => [path, { target: api, changeOrigin: false, bypass }])),
  },
  test: {
    environment: "jsdom",
    setupFiles: ["./src/test/setup.ts"],
    css: false,
  },
});
