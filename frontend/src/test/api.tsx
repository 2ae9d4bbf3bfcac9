// Test helpers: a fake Orchard API behind a stubbed fetch, and rendering inside the app's providers.
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render, type RenderResult } from "@testing-library/react";
import userEvent, { type UserEvent } from "@testing-library/user-event";
import type { ReactElement } from "react";
import { MemoryRouter } from "react-router";
import { vi } from "vitest";
import { setUpClient } from "../api/client";

/** jsdom's fetch needs absolute URLs; the app uses same-origin relative ones. */
export const BASE_URL = "http://orchard.test";
setUpClient(BASE_URL);

export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** Orchard's one error shape. */
export function apiError(status: number, code: string, message: string, extra: Record<string, unknown> = {}): Response {
  return json({ error: { code, message, ...extra } }, status);
}

type Answer = Response | object;
type Handler = Answer | ((request: Request, url: URL) => Answer | Promise<Answer>);

export type Call = { method: string; path: string; url: URL; request: Request };

/**
 * Stub fetch with routes keyed "METHOD /path" (the path decoded, no query string). A handler is a body (200 JSON),
 * a Response, or a function of the request. Unrouted requests answer 404 in Orchard's error shape.
 */
export function mockApi(routes: Record<string, Handler>) {
  const table = new Map(Object.entries(routes));
  const calls: Call[] = [];
  const fetch = vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
    const request = input instanceof Request ? input : new Request(input, init);
    const url = new URL(request.url);
    const path = decodeURIComponent(url.pathname);
    calls.push({ method: request.method, path, url, request: request.clone() });
    const handler = table.get(`${request.method} ${path}`);
    if (handler === undefined) return apiError(404, "not_found", `No fake route for ${request.method} ${path}.`);
    const answer = typeof handler === "function" ? await handler(request, url) : handler;
    return answer instanceof Response ? answer.clone() : json(answer);
  });
  vi.stubGlobal("fetch", fetch);
  return {
    fetch,
    /** Change or add a route while a test runs. */
    route(key: string, handler: Handler) {
      table.set(key, handler);
    },
    /** The calls made to "METHOD /path". */
    calls(key: string): Call[] {
      return calls.filter((call) => `${call.method} ${call.path}` === key);
    },
  };
}

export function renderWithProviders(ui: ReactElement, { route = "/" }: { route?: string } = {}): RenderResult & {
  queryClient: QueryClient;
  user: UserEvent;
} {
  const queryClient = new QueryClient({
    defaultOptions: { queries: { retry: false, staleTime: 0 }, mutations: { retry: false } },
  });
  const user = userEvent.setup();
  const result = render(
    <QueryClientProvider client={queryClient}>
      <MemoryRouter initialEntries={[route]}>{ui}</MemoryRouter>
    </QueryClientProvider>,
  );
  return { ...result, queryClient, user };
}
