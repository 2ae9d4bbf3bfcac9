import { act, screen, waitFor, within } from "@testing-library/react";
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { ChatResponse, Usage } from "../api/queries";
import { STORAGE_KEY } from "../hooks/useChatStore";
import { apiError, mockApi, renderWithProviders } from "../test/api";
import * as make from "../test/factories";
import { ChatPage } from "./ChatPage";

/** A Server-Sent Events response whose events the test sends one at a time, as a streaming server would. */
function sseResponse() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let open = true;
  const encoder = new TextEncoder();
  const stream = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    cancel() {
      open = false;
    },
  });
  const raw = (text: string) => {
    if (open) controller.enqueue(encoder.encode(text));
  };
  return {
    response: new Response(stream, { headers: { "Content-Type": "text/event-stream" } }),
    raw,
    send: (event: string, data: unknown) => raw(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`),
    close() {
      if (open) controller.close();
      open = false;
    },
  };
}

function usage(overrides: Partial<Usage> = {}): Usage {
  return {
    prompt_tokens: 12,
    completion_tokens: 3,
    total_tokens: 15,
    time_to_first_token_ms: 85.4,
    tokens_per_second: 42.13,
    queue_ms: 0,
    total_seconds: 0.2,
    ...overrides,
  };
}

function done(content: string, overrides: Partial<ChatResponse> = {}): ChatResponse {
  return { model: "tiny-gpt2", message: { role: "assistant", content }, finish_reason: "stop", usage: usage(), ...overrides };
}

const loaded = () => make.current({ loaded: true, metadata: make.metadata() });

/** The API with a loaded model; each POST /chat answers with the next stream the test made. */
function chatApi() {
  const streams: Array<ReturnType<typeof sseResponse>> = [];
  const requests: Request[] = [];
  const api = mockApi({
    "GET /model/current": loaded(),
    "POST /chat": (request) => {
      requests.push(request);
      const stream = sseResponse();
      streams.push(stream);
      return stream.response;
    },
  });
  return { api, streams, requests };
}

const assistantMessages = () => document.querySelectorAll<HTMLElement>('[data-role="assistant"]');
const userMessages = () => document.querySelectorAll<HTMLElement>('[data-role="user"]');

function stored() {
  return JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null") as {
    conversations: Array<{ title: string; messages: Array<{ role: string; content: string; status?: string }> }>;
  };
}

beforeEach(() => {
  localStorage.clear();
});

describe("ChatPage", () => {
  it("answers from a chosen document collection and shows the cited passages", async () => {
    const { api, streams, requests } = chatApi();
    api.route("GET /rag/collections", {
      collections: [
        {
          id: "c1",
          name: "Manuals",
          embedding_model: "all-MiniLM-L6-v2",
          embedding_dim: 384,
          chunk_size: 256,
          chunk_overlap: 32,
          documents: 2,
          chunks: 9,
          store: "sqlite-vec",
          created_at: "2026-12-02T10:00:00Z",
        },
      ],
    });
    const { user } = renderWithProviders(<ChatPage />);
    const picker = await screen.findByLabelText("Answer from documents");
    await waitFor(() => expect(within(picker).getByRole("option", { name: "Manuals (2 documents)" })).toBeInTheDocument());
    await user.selectOptions(picker, "c1");
    await user.type(screen.getByLabelText("Message"), "How do I prime the pump?");
    await user.click(screen.getByRole("button", { name: "Send" }));

    await waitFor(() => expect(streams).toHaveLength(1));
    expect(await requests[0].json()).toMatchObject({ collection_id: "c1" });
    const citation = {
      index: 1,
      chunk_id: "k1",
      document_id: "d1",
      filename: "pump.pdf",
      page: 3,
      heading: "Priming",
      text: "Open the bleed valve and wait for water.",
    };
    act(() => {
      streams[0].send("done", done("Open the bleed valve [1].", { citations: [citation] }));
      streams[0].close();
    });
    const sources = await screen.findByRole("region", { name: "Sources" });
    const item = within(sources).getByText("[1] pump.pdf, p. 3 · Priming");
    expect(within(sources).getByText(citation.text)).not.toBeVisible();
    await user.click(item);
    expect(within(sources).getByText(citation.text)).toBeVisible();
    // the choice stays with the conversation
    expect(JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "{}").conversations[0].settings.collectionId).toBe("c1");
  });

  it("streams a reply token by token, then shows its speed", async () => {
    const { streams, requests } = chatApi();
    const { user } = renderWithProviders(<ChatPage />);

    expect(screen.getByRole("heading", { level: 1, name: "Chat" })).toBeInTheDocument();
    expect(await screen.findByText("tiny-gpt2")).toBeInTheDocument();
    await user.type(screen.getByLabelText("Message"), "Say hello");
    await user.click(screen.getByRole("button", { name: "Send" }));

    await waitFor(() => expect(streams).toHaveLength(1));
    const body = await requests[0].json();
    expect(body).toMatchObject({
      messages: [{ role: "user", content: "Say hello" }],
      stream: true,
      temperature: 0.7,
      top_p: 0.9,
      max_new_tokens: 512,
      repetition_penalty: 1,
      stop: [],
      top_k: null,
      seed: null,
    });
    expect(userMessages()[0]).toHaveTextContent("Say hello");
    expect(screen.getByLabelText("Message")).toHaveValue("");
    expect(screen.getByRole("button", { name: "Stop" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Send" })).not.toBeInTheDocument();

    const stream = streams[0];
    act(() => stream.send("token", { text: "Hello" }));
    await waitFor(() => expect(assistantMessages()[0]).toHaveTextContent("Hello"));
    // An event split across chunks still arrives whole.
    act(() => stream.raw('event: token\ndata: {"text": " wor'));
    act(() => stream.raw('ld"}\n\n'));
    await waitFor(() => expect(assistantMessages()[0]).toHaveTextContent("Hello world"));
    expect(assistantMessages()[0]).toHaveAttribute("aria-busy", "true");
    expect(screen.queryByText(/tok\/s/)).not.toBeInTheDocument();

    act(() => {
      stream.send("done", done("Hello world!"));
      stream.close();
    });

    expect(await screen.findByText("42.1 tok/s · 85 ms to first token · 3 tokens")).toBeInTheDocument();
    expect(assistantMessages()[0]).toHaveTextContent("Hello world!");
    expect(assistantMessages()[0]).not.toHaveAttribute("aria-busy");
    expect(screen.getByRole("button", { name: "Send" })).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Stop" })).not.toBeInTheDocument();
    // The first message names the conversation.
    expect(screen.getByRole("heading", { level: 2, name: "Say hello" })).toBeInTheDocument();
  });

  it("Stop aborts the request and keeps the partial reply, marked stopped", async () => {
    const { streams, requests } = chatApi();
    const { user } = renderWithProviders(<ChatPage />);
    await screen.findByText("tiny-gpt2");

    await user.type(screen.getByLabelText("Message"), "Tell me a long story{Enter}");
    await waitFor(() => expect(streams).toHaveLength(1));
    act(() => streams[0].send("token", { text: "Once upon" }));
    await waitFor(() => expect(assistantMessages()[0]).toHaveTextContent("Once upon"));
    expect(requests[0].signal.aborted).toBe(false);

    await user.click(screen.getByRole("button", { name: "Stop" }));

    expect(await screen.findByRole("button", { name: "Send" })).toBeInTheDocument();
    expect(requests[0].signal.aborted).toBe(true);
    expect(assistantMessages()[0]).toHaveTextContent("Once upon");
    expect(within(assistantMessages()[0]).getByText("Stopped")).toBeInTheDocument();
    expect(screen.getByLabelText("Message")).toHaveFocus();
    await waitFor(() => expect(stored().conversations[0].messages.at(-1)).toMatchObject({ content: "Once upon", status: "stopped" }));

    // The stopped reply is part of the conversation the next message continues.
    await user.type(screen.getByLabelText("Message"), "Go on{Enter}");
    await waitFor(() => expect(streams).toHaveLength(2));
    expect((await requests[1].json()).messages).toEqual([
      { role: "user", content: "Tell me a long story" },
      { role: "assistant", content: "Once upon" },
      { role: "user", content: "Go on" },
    ]);
  });

  it("shows the API's error and gives the message back when no model is loaded", async () => {
    const api = mockApi({
      "GET /model/current": loaded(),
      "POST /chat": apiError(
        409,
        "model_not_loaded",
        "No model is loaded. Load one first: on the Models page, or with POST /model/upload?model_path=<local model>.",
      ),
    });
    const { user } = renderWithProviders(<ChatPage />);
    await screen.findByText("tiny-gpt2");

    await user.type(screen.getByLabelText("Message"), "Hello?{Enter}");

    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("No model is loaded. Load one first: on the Models page");
    expect(alert).toHaveTextContent("model_not_loaded");
    expect(alert).not.toHaveTextContent("[object Object]");
    expect(userMessages()).toHaveLength(0);
    expect(assistantMessages()).toHaveLength(0);
    expect(screen.getByLabelText("Message")).toHaveValue("Hello?");
    // It asks again whether a model is loaded, so the page can say so.
    await waitFor(() => expect(api.calls("GET /model/current").length).toBeGreaterThan(1));
  });

  it("shows an error event that arrives mid-stream, keeping what came before it", async () => {
    const { streams } = chatApi();
    const { user } = renderWithProviders(<ChatPage />);
    await screen.findByText("tiny-gpt2");

    await user.type(screen.getByLabelText("Message"), "Hi{Enter}");
    await waitFor(() => expect(streams).toHaveLength(1));
    act(() => {
      streams[0].send("token", { text: "Partial" });
      streams[0].send("error", { error: { code: "generation_failed", message: "Generation failed: RuntimeError. See the log." } });
    });

    expect(await screen.findByRole("alert")).toHaveTextContent("Generation failed: RuntimeError. See the log.");
    expect(assistantMessages()[0]).toHaveTextContent("Partial");
    expect(within(assistantMessages()[0]).getByText("Failed")).toBeInTheDocument();
  });

  it("says when no model is loaded, links to the Models page, and offers no way to send", async () => {
    mockApi({ "GET /model/current": make.current() });
    renderWithProviders(<ChatPage />);

    expect(await screen.findByText("No model loaded")).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Load a model on the Models page" })).toHaveAttribute("href", "/models");
    expect(screen.queryByLabelText("Message")).not.toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Send" })).not.toBeInTheDocument();
  });

  it("keeps conversations in localStorage and brings them back", async () => {
    const { streams } = chatApi();
    const first = renderWithProviders(<ChatPage />);
    await screen.findByText("tiny-gpt2");
    await first.user.type(screen.getByLabelText("Message"), "Remember me{Enter}");
    await waitFor(() => expect(streams).toHaveLength(1));
    act(() => {
      streams[0].send("token", { text: "I will." });
      streams[0].send("done", done("I will."));
      streams[0].close();
    });
    await screen.findByText(/tok\/s/);
    await first.user.clear(screen.getByLabelText("System prompt"));
    await first.user.type(screen.getByLabelText("System prompt"), "Be brief.");
    await first.user.clear(screen.getByLabelText("Temperature"));
    await first.user.type(screen.getByLabelText("Temperature"), "0");

    // A second, renamed conversation.
    await first.user.click(screen.getByRole("button", { name: "New chat" }));
    expect(screen.getByRole("heading", { level: 2, name: "New chat" })).toBeInTheDocument();
    expect(userMessages()).toHaveLength(0);
    expect(screen.getByLabelText("System prompt")).toHaveValue("Be brief."); // a new chat keeps the settings
    await first.user.click(screen.getByRole("button", { name: "Rename" }));
    const title = screen.getByRole("textbox", { name: "Conversation title" });
    await first.user.clear(title);
    await first.user.type(title, "Scratch{Enter}");
    expect(screen.getByRole("heading", { level: 2, name: "Scratch" })).toBeInTheDocument();
    first.unmount();

    expect(stored().conversations.map((c) => c.title).sort()).toEqual(["Remember me", "Scratch"]);

    const second = renderWithProviders(<ChatPage />);
    expect(screen.getByRole("heading", { level: 2, name: "Scratch" })).toBeInTheDocument();
    await second.user.click(screen.getByRole("button", { name: /^Remember me/ }));
    expect(userMessages()[0]).toHaveTextContent("Remember me");
    expect(assistantMessages()[0]).toHaveTextContent("I will.");
    expect(screen.getByText(/42\.1 tok\/s/)).toBeInTheDocument();
    expect(screen.getByLabelText("System prompt")).toHaveValue("Be brief.");
    expect(screen.getByLabelText("Temperature")).toHaveValue(0);

    // Delete asks first, then removes it from the browser too.
    await second.user.click(screen.getByRole("button", { name: "Delete" }));
    await second.user.click(within(screen.getByRole("dialog")).getByRole("button", { name: "Delete" }));
    expect(screen.queryByRole("button", { name: /^Remember me/ })).not.toBeInTheDocument();
    expect(screen.getByRole("heading", { level: 2, name: "Scratch" })).toBeInTheDocument();
    await waitFor(() => expect(stored().conversations.map((c) => c.title)).toEqual(["Scratch"]));
  });

  it("shows conversations another tab saved, keeping this tab's open one", async () => {
    mockApi({ "GET /model/current": loaded() });
    renderWithProviders(<ChatPage />);
    expect(screen.getByRole("heading", { level: 2, name: "New chat" })).toBeInTheDocument();
    const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "{}");
    const other = { ...saved.conversations[0], id: "other", title: "From the other tab", updatedAt: "2099-01-01T00:00:00Z" };
    const value = JSON.stringify({ ...saved, activeId: "other", conversations: [other, ...saved.conversations] });
    localStorage.setItem(STORAGE_KEY, value);

    act(() => window.dispatchEvent(new StorageEvent("storage", { key: STORAGE_KEY, newValue: value })));

    expect(await screen.findByRole("button", { name: /^From the other tab/ })).toBeInTheDocument();
    expect(screen.getByRole("heading", { level: 2, name: "New chat" })).toBeInTheDocument();
    expect(localStorage.getItem(STORAGE_KEY)).toBe(value); // not written back
  });

  it("a reply cut off by a reload comes back marked stopped", async () => {
    localStorage.setItem(
      STORAGE_KEY,
      JSON.stringify({
        version: 1,
        activeId: "c1",
        conversations: [
          {
            id: "c1",
            title: "Cut off",
            autoTitle: true,
            createdAt: "2025-01-02T10:00:00Z",
            updatedAt: "2025-01-02T10:00:00Z",
            settings: { temperature: "0.2" },
            messages: [
              { id: "m1", role: "user", content: "Hi", createdAt: "2025-01-02T10:00:00Z" },
              { id: "m2", role: "assistant", content: "Hel", createdAt: "2025-01-02T10:00:00Z", status: "streaming" },
              { id: "m3", role: "robot", content: "not a message" },
            ],
          },
          "not a conversation",
        ],
      }),
    );
    mockApi({ "GET /model/current": loaded() });
    renderWithProviders(<ChatPage />);

    expect(screen.getByRole("heading", { level: 2, name: "Cut off" })).toBeInTheDocument();
    expect(assistantMessages()).toHaveLength(1);
    expect(within(assistantMessages()[0]).getByText("Stopped")).toBeInTheDocument();
    expect(screen.getByLabelText("Temperature")).toHaveValue(0.2);
    expect(screen.getByLabelText("Max new tokens")).toHaveValue(512); // missing settings take the defaults
  });

  it("exports the conversation as JSON in OpenAI's message shape with the model and parameters", async () => {
    const { streams } = chatApi();
    const blobs: Blob[] = [];
    vi.stubGlobal("URL", Object.assign(URL, { createObjectURL: vi.fn((blob: Blob) => (blobs.push(blob), "blob:chat")), revokeObjectURL: vi.fn() }));
    const click = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(() => undefined);
    const { user } = renderWithProviders(<ChatPage />);
    await screen.findByText("tiny-gpt2");
    expect(screen.getByRole("button", { name: "Export JSON" })).toBeDisabled();

    await user.type(screen.getByLabelText("System prompt"), "You are terse.");
    await user.clear(screen.getByLabelText("Seed"));
    await user.type(screen.getByLabelText("Seed"), "7");
    await user.type(screen.getByLabelText("Stop sequences"), "END\\n");
    await user.type(screen.getByLabelText("Message"), "Line one{Shift>}{Enter}{/Shift}line two");
    expect(screen.getByLabelText("Message")).toHaveValue("Line one\nline two");
    await user.keyboard("{Enter}");
    await waitFor(() => expect(streams).toHaveLength(1));
    act(() => {
      streams[0].send("done", done("Two lines.", { finish_reason: "length" }));
      streams[0].close();
    });
    await screen.findByText("Hit the token limit");

    await user.click(screen.getByRole("button", { name: "Export JSON" }));

    expect(click).toHaveBeenCalledOnce();
    const link = click.mock.contexts[0] as HTMLAnchorElement;
    expect(link.download).toMatch(/^orchard-chat-line-one-\d{4}-\d{2}-\d{2}\.json$/);
    expect(blobs[0].type).toBe("application/json");
    const file = JSON.parse(await blobs[0].text());
    expect(file).toEqual({
      source: "orchard",
      version: 1,
      exported_at: expect.any(String),
      conversations: [
        {
          title: "Line one",
          model: "tiny-gpt2",
          parameters: {
            temperature: 0.7,
            top_p: 0.9,
            top_k: null,
            max_new_tokens: 512,
            repetition_penalty: 1,
            stop: ["END\n"],
            seed: 7,
          },
          messages: [
            { role: "system", content: "You are terse." },
            { role: "user", content: "Line one\nline two" },
            { role: "assistant", content: "Two lines." },
          ],
          created_at: expect.any(String),
          updated_at: expect.any(String),
        },
      ],
    });
  });

  it("will not send with a parameter out of range, and says which", async () => {
    const { streams } = chatApi();
    const { user } = renderWithProviders(<ChatPage />);
    await screen.findByText("tiny-gpt2");

    await user.clear(screen.getByLabelText("Temperature"));
    await user.type(screen.getByLabelText("Temperature"), "5");
    await user.type(screen.getByLabelText("Message"), "Hi{Enter}");

    expect(screen.getByLabelText("Temperature")).toHaveAttribute("aria-invalid", "true");
    expect(screen.getByText("A number from 0 to 2.")).toBeInTheDocument();
    expect(screen.getByText("Fix the parameters marked in red to send.")).toBeInTheDocument();
    expect(screen.getByRole("button", { name: "Send" })).toBeDisabled();
    expect(streams).toHaveLength(0);
  });
});
