import { describe, expect, it, vi } from "vitest";
import { apiError, mockApi } from "../test/api";
import { streamChat } from "./useChatStream";

describe("streamChat", () => {
  const body = { messages: [{ role: "user" as const, content: "hi" }] };

  it("reports an error response in the API's words", async () => {
    mockApi({ "POST /chat": apiError(503, "server_busy", "8 requests are waiting; try again in 2 s.") });
    const outcome = await streamChat(body, { signal: new AbortController().signal, onToken: vi.fn() });
    expect(outcome).toMatchObject({ kind: "error", received: false, error: { code: "server_busy", status: 503, message: "8 requests are waiting; try again in 2 s." } });
  });

  it("says when the stream ends without a done event", async () => {
    mockApi({ "POST /chat": () => new Response('event: token\ndata: {"text":"x"}\n\n', { headers: { "Content-Type": "text/event-stream" } }) });
    const onToken = vi.fn();
    const outcome = await streamChat(body, { signal: new AbortController().signal, onToken });
    expect(onToken).toHaveBeenCalledWith("x");
    expect(outcome).toMatchObject({ kind: "error", received: true, error: { code: "stream_ended" } });
  });

  it("says the server cannot be reached when fetch fails", async () => {
    vi.stubGlobal("fetch", vi.fn().mockRejectedValue(new TypeError("Failed to fetch")));
    const outcome = await streamChat(body, { signal: new AbortController().signal, onToken: vi.fn() });
    expect(outcome).toMatchObject({ kind: "error", error: { code: "network_error" } });
  });
});
