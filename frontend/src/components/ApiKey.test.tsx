import { QueryClientProvider } from "@tanstack/react-query";
import { render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router";
import { afterEach, describe, expect, it, vi } from "vitest";
import { API_KEY_STORAGE, clearKeyProblem, getKeyProblem, setApiKey } from "../api/apiKey";
import { createQueryClient } from "../api/queryClient";
import { App } from "../App";
import { streamChat } from "../hooks/useChatStream";
import { useJobEvents } from "../hooks/useJobEvents";
import { apiError, mockApi } from "../test/api";
import * as make from "../test/factories";
import { SavedApiKey } from "./ApiKey";

const KEY = "orchard-test-key-5f2c";
const NEEDS_KEY = "This Orchard needs its API key: send 'Authorization: Bearer <key>' or 'X-API-Key'.";

/** The backend's check (backend/api/access.py): no key, or the wrong one, is a 401 in Orchard's error shape. */
function keyed(answer: unknown) {
  return (request: Request) => {
    const given = request.headers.get("Authorization");
    if (given === null) return apiError(401, "unauthorized", NEEDS_KEY);
    if (given !== `Bearer ${KEY}`) return apiError(401, "unauthorized", "Wrong API key.");
    return answer as object;
  };
}

/** The whole app with the app's own QueryClient (its caches are what notice a 401). */
function renderApp(route: string) {
  const queryClient = createQueryClient();
  const user = userEvent.setup();
  render(
    <QueryClientProvider client={queryClient}>
      <MemoryRouter initialEntries={[route]}>
        <App />
      </MemoryRouter>
    </QueryClientProvider>,
  );
  return { queryClient, user };
}

/** Nowhere in the document: not its text, not an attribute (a controlled input's value attribute, a title). */
function expectKeyNotInPage(key = KEY) {
  expect(document.body.textContent).not.toContain(key);
  expect(document.documentElement.outerHTML).not.toContain(key);
}

afterEach(() => {
  localStorage.clear();
  clearKeyProblem();
});

describe("API key prompt", () => {
  it("asks for the key in the API's words, says when it is wrong, and sends the right one from then on", async () => {
    const loaded = make.current({ loaded: true, metadata: make.metadata() });
    const api = mockApi({ "GET /model/current": keyed(loaded) });
    const { user } = renderApp("/current");

    const prompt = await screen.findByRole("region", { name: "API key needed" });
    expect(within(prompt).getByRole("alert")).toHaveTextContent(NEEDS_KEY);
    const field = within(prompt).getByLabelText("API key");
    expect(field).toHaveAttribute("type", "password");
    expect(field).toHaveFocus();
    // Once for the whole app, however many requests were refused.
    expect(screen.getAllByRole("region", { name: "API key needed" })).toHaveLength(1);

    await user.type(field, "not-the-key{Enter}");
    await waitFor(() => expect(within(prompt).getByRole("alert")).toHaveTextContent("Wrong API key."));
    expect(field).toHaveValue("");
    expect(api.calls("GET /model/current").at(-1)?.request.headers.get("Authorization")).toBe("Bearer not-the-key");
    expectKeyNotInPage("not-the-key");

    await user.type(screen.getByLabelText("API key"), KEY);
    await user.click(screen.getByRole("button", { name: "Save" }));

    expect(await screen.findByRole("heading", { name: "tiny-gpt2" })).toBeInTheDocument();
    await waitFor(() => expect(screen.queryByRole("region", { name: "API key needed" })).not.toBeInTheDocument());
    expect(localStorage.getItem(API_KEY_STORAGE)).toBe(KEY);
    // The next page's requests carry it too.
    api.route("GET /model/local-models", keyed(make.localModels([make.localModel()])));
    api.route("GET /jobs", keyed({ jobs: [] }));
    await user.click(screen.getByRole("link", { name: "Models" }));
    const region = await screen.findByRole("region", { name: "Local models" });
    expect(await within(region).findByText("tiny-gpt2")).toBeInTheDocument();
    for (const key of ["GET /model/local-models", "GET /jobs"]) {
      expect(api.calls(key).length).toBeGreaterThan(0);
      for (const call of api.calls(key)) expect(call.request.headers.get("Authorization")).toBe(`Bearer ${KEY}`);
    }
    expect(screen.queryByRole("region", { name: "API key needed" })).not.toBeInTheDocument();
    expectKeyNotInPage();
  });

  it("comes up when a mutation is refused, too", async () => {
    setApiKey("an-old-key");
    const api = mockApi({
      "GET /model/current": make.current({ loaded: true, metadata: make.metadata() }),
      "POST /model/unload": apiError(401, "unauthorized", "Wrong API key."),
    });
    const { user } = renderApp("/current");
    const unload = await screen.findByRole("button", { name: "Unload" });
    // The server restarted with another key: from now on it refuses this one.
    api.route("GET /model/current", apiError(401, "unauthorized", "Wrong API key."));

    await user.click(unload);

    const prompt = await screen.findByRole("region", { name: "API key needed" });
    expect(within(prompt).getByRole("alert")).toHaveTextContent("Wrong API key.");
    expectKeyNotInPage("an-old-key");
  });

  it("goes away by itself once the API answers again (the key saved in another tab)", async () => {
    const api = mockApi({ "GET /model/current": apiError(401, "unauthorized", NEEDS_KEY) });
    const { queryClient } = renderApp("/current");
    expect(await screen.findByRole("region", { name: "API key needed" })).toBeInTheDocument();

    api.route("GET /model/current", make.current());
    await queryClient.invalidateQueries();

    await waitFor(() => expect(screen.queryByRole("region", { name: "API key needed" })).not.toBeInTheDocument());
  });

  it("is not shown while the API answers", async () => {
    mockApi({ "GET /model/current": make.current() });
    renderApp("/current");

    expect(await screen.findByText("No model loaded", { selector: "p" })).toBeInTheDocument();
    expect(screen.queryByRole("region", { name: "API key needed" })).not.toBeInTheDocument();
    expect(getKeyProblem()).toBeNull();
  });
});

describe("SavedApiKey", () => {
  it("says a key is saved without showing it, and Forget key removes it", async () => {
    setApiKey(KEY);
    const api = mockApi({ "GET /model/current": make.current() });
    const { user } = renderApp("/system");

    const section = await screen.findByRole("region", { name: "API key" });
    expect(section).toHaveTextContent("An API key is saved in this browser");
    expectKeyNotInPage();
    await waitFor(() => expect(api.calls("GET /model/current").length).toBeGreaterThan(0));
    const before = api.calls("GET /model/current").length;

    await user.click(within(section).getByRole("button", { name: "Forget key" }));

    expect(localStorage.getItem(API_KEY_STORAGE)).toBeNull();
    expect(within(section).getByRole("status")).toHaveTextContent("The key is forgotten.");
    expect(within(section).getByRole("status")).toHaveFocus();
    expect(within(section).queryByRole("button", { name: "Forget key" })).not.toBeInTheDocument();
    await waitFor(() => expect(api.calls("GET /model/current").length).toBeGreaterThan(before));
    expect(api.calls("GET /model/current").at(-1)?.request.headers.get("Authorization")).toBeNull();
  });

  it("is not there when no key is saved", () => {
    render(
      <QueryClientProvider client={createQueryClient()}>
        <SavedApiKey />
      </QueryClientProvider>,
    );
    expect(screen.queryByRole("region", { name: "API key" })).not.toBeInTheDocument();
  });
});

describe("the key outside the generated client", () => {
  const body = { messages: [{ role: "user" as const, content: "hi" }] };

  it("goes with the chat stream's own fetch, and a 401 there brings up the prompt", async () => {
    setApiKey(KEY);
    const api = mockApi({ "POST /chat": apiError(401, "unauthorized", "Wrong API key.") });

    const outcome = await streamChat(body, { signal: new AbortController().signal, onToken: vi.fn() });

    expect(api.calls("POST /chat")[0].request.headers.get("Authorization")).toBe(`Bearer ${KEY}`);
    expect(outcome).toMatchObject({ kind: "error", error: { status: 401, message: "Wrong API key." } });
    expect(getKeyProblem()?.message).toBe("Wrong API key.");
  });

  it("makes a job poll instead of opening an EventSource (which cannot send the header)", async () => {
    setApiKey(KEY);
    const eventSource = vi.fn();
    vi.stubGlobal("EventSource", eventSource);
    const api = mockApi({ "GET /jobs/job-1": make.job() });
    function Progress() {
      const { data } = useJobEvents("job-1");
      return <p>{data?.status ?? "…"}</p>;
    }
    render(
      <QueryClientProvider client={createQueryClient()}>
        <Progress />
      </QueryClientProvider>,
    );

    expect(await screen.findByText("downloading")).toBeInTheDocument();
    await waitFor(() => expect(api.calls("GET /jobs/job-1").length).toBeGreaterThan(1), { timeout: 3000 });
    expect(eventSource).not.toHaveBeenCalled();
    expect(api.calls("GET /jobs/job-1")[0].request.headers.get("Authorization")).toBe(`Bearer ${KEY}`);
  });
});
