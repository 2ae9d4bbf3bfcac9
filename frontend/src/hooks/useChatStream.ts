// POST /chat as a stream: Server-Sent Events read from a fetch body (EventSource cannot POST), one reply at a time,
// stopped by aborting the request (the server stops generating when the connection closes).
import { createParser } from "eventsource-parser";
import { useCallback, useEffect, useRef, useState } from "react";
import { apiKeyHeaders, reportUnauthorized } from "../api/apiKey";
import { ApiError, isUnauthorized, toApiError } from "../api/client";
import { client } from "../api/generated/client.gen";
import type { ChatRequest, ChatResponse } from "../api/queries";

/** An `error` event's data: Orchard's one error shape, `{"error": {code, message, ...}}`. */
function eventError(data: string, status: number): ApiError {
  try {
    const body = JSON.parse(data) as { error?: { message?: unknown } };
    if (typeof body.error?.message === "string") return toApiError(body);
  } catch {
    // fall through
  }
  return new ApiError(`The server sent an unreadable error: ${data.slice(0, 200)}`, "bad_event", status);
}

export type StreamOutcome =
  | { kind: "done"; response: ChatResponse }
  | { kind: "stopped" }
  /** `received`: whether any of the reply had arrived before the error. */
  | { kind: "error"; error: ApiError; received: boolean };

/**
 * Send a conversation to `POST /chat` and read the reply as it streams: `onToken` gets each piece of text.
 * Never throws: the outcome says whether the reply finished, was stopped (`signal` aborted), or failed.
 */
export async function streamChat(
  body: Omit<ChatRequest, "stream">,
  { signal, onToken }: { signal: AbortSignal; onToken: (text: string) => void },
): Promise<StreamOutcome> {
  let received = false;
  let response: Response;
  try {
    response = await fetch(client.buildUrl({ url: "/chat" }), {
      method: "POST",
      // fetch, not the generated client: send the saved API key the way its request interceptor does.
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...apiKeyHeaders() },
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    });
  } catch (error) {
    if (signal.aborted) return { kind: "stopped" };
    return { kind: "error", error: toApiError(error), received };
  }

  if (!response.ok || !response.body) {
    const text = await response.text().catch(() => "");
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: toApiError quotes the text
    }
    const error = toApiError(parsed, response);
    if (isUnauthorized(error)) reportUnauthorized(error.message);
    return { kind: "error", error, received };
  }

  let outcome: StreamOutcome | null = null;
  const parser = createParser({ onEvent: ({ event = "message", data }) => {
    if (outcome) return;
    try {
      if (event === "token") {
        const { text } = JSON.parse(data) as { text: string };
        received = true;
        onToken(text);
      } else if (event === "done") {
        outcome = { kind: "done", response: JSON.parse(data) as ChatResponse };
      } else if (event === "error") {
        outcome = { kind: "error", error: eventError(data, response.status), received };
      }
    } catch {
      outcome = {
        kind: "error",
        error: new ApiError(`The server sent an unreadable ${event} event.`, "bad_event", response.status),
        received,
      };
    }
  } });

  const reader = response.body.getReader();
  // A real fetch rejects the pending read when aborted; cancel it too, for streams that do not know the signal.
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal.addEventListener("abort", onAbort);
  const decoder = new TextDecoder();
  try {
    while (!outcome && !signal.aborted) {
      const { done, value } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
    }
    parser.feed(decoder.decode());
  } catch (error) {
    if (!signal.aborted) {
      return { kind: "error", error: toApiError(error), received };
    }
  } finally {
    signal.removeEventListener("abort", onAbort);
    if (outcome) void reader.cancel().catch(() => undefined);
  }
  if (outcome) return outcome;
  if (signal.aborted) return { kind: "stopped" };
  return {
    kind: "error",
    error: new ApiError("The reply ended before the server said it was done. Is the server still running?", "stream_ended", null),
    received,
  };
}

/** One reply at a time: `run` streams it, `stop` aborts it; `generating` says whether one is under way. */
export function useChatStream() {
  const controller = useRef<AbortController | null>(null);
  const [generating, setGenerating] = useState(false);

  // Leaving the page closes the connection, which stops the generation on the server.
  useEffect(() => () => controller.current?.abort(), []);

  const run = useCallback(async (body: Omit<ChatRequest, "stream">, onToken: (text: string) => void) => {
    controller.current?.abort();
    const current = new AbortController();
    controller.current = current;
    setGenerating(true);
    try {
      return await streamChat(body, { signal: current.signal, onToken });
    } finally {
      if (controller.current === current) {
        controller.current = null;
        setGenerating(false);
      }
    }
  }, []);

  const stop = useCallback(() => controller.current?.abort(), []);

  return { run, stop, generating };
}
