// The conversation: your messages on the right as typed, replies on the left as Markdown, each reply with its
// speed and how it ended. The view follows a streaming reply unless you have scrolled up to read.
import { memo, type ReactNode, useLayoutEffect, useRef } from "react";
import type { StoredMessage } from "../../hooks/useChatStore";
import { Badge, Spinner } from "../ui";
import { Markdown } from "./Markdown";

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

/** "42.1 tok/s · 85 ms to first token · 96 tokens": the reply's usage, from the stream's done event. */
export function ReplyStats({ message }: { message: StoredMessage }) {
  const { usage } = message;
  if (!usage) return null;
  const speed = usage.tokens_per_second === null ? "— tok/s" : `${usage.tokens_per_second.toFixed(1)} tok/s`;
  const parts = [speed];
  if (usage.time_to_first_token_ms !== null) parts.push(`${formatMs(usage.time_to_first_token_ms)} to first token`);
  parts.push(`${usage.completion_tokens} ${usage.completion_tokens === 1 ? "token" : "tokens"}`);
  if (usage.queue_ms >= 100) parts.push(`waited ${formatMs(usage.queue_ms)}`);
  return (
    <p
      className="font-mono text-xs text-zinc-500 tabular-nums dark:text-zinc-400"
      title={`Prompt ${usage.prompt_tokens} tokens · total ${usage.total_seconds.toFixed(2)} s${message.model ? ` · ${message.model}` : ""}`}
      data-testid="reply-stats"
    >
      {parts.join(" · ")}
    </p>
  );
}

/** The passages a reply was given, numbered as it cites them: each opens to the passage itself. */
function Sources({ message }: { message: StoredMessage }) {
  if (!message.citations?.length) return null;
  return (
    <section aria-label="Sources" className="space-y-1 rounded-lg border border-zinc-200 p-2 text-xs dark:border-zinc-800">
      <p className="font-medium text-zinc-600 dark:text-zinc-400">Sources</p>
      <ol className="space-y-1">
        {message.citations.map((c) => (
          <li key={c.chunk_id}>
            <details>
              <summary className="cursor-pointer text-zinc-700 dark:text-zinc-300">
                [{c.index}] {c.filename}
                {c.page ? `, p. ${c.page}` : ""}
                {c.heading ? ` · ${c.heading}` : ""}
              </summary>
              <p className="mt-1 border-l-2 border-brand-600 pl-2 whitespace-pre-wrap text-zinc-600 dark:text-zinc-400">{c.text}</p>
            </details>
          </li>
        ))}
      </ol>
    </section>
  );
}

function Ending({ message }: { message: StoredMessage }) {
  if (message.status === "stopped" || message.finishReason === "cancelled") return <Badge tone="warn">Stopped</Badge>;
  if (message.status === "error") return <Badge tone="bad">Failed</Badge>;
  if (message.finishReason === "length") return <Badge tone="neutral">Hit the token limit</Badge>;
  return null;
}

const MessageItem = memo(function MessageItem({ message }: { message: StoredMessage }) {
  if (message.role === "user") {
    return (
      <article data-role="user" aria-label="You" className="flex justify-end">
        <div className="max-w-[85%] rounded-2xl rounded-br-md bg-brand-600 px-4 py-2.5 text-sm leading-relaxed whitespace-pre-wrap break-words text-white shadow-xs">
          {message.content}
        </div>
      </article>
    );
  }
  const streaming = message.status === "streaming";
  return (
    <article data-role="assistant" data-status={message.status} aria-label="Assistant" aria-busy={streaming || undefined} className="flex gap-3">
      <div
        aria-hidden="true"
        className="mt-0.5 flex size-7 shrink-0 items-center justify-center rounded-full bg-brand-100 text-xs font-semibold text-brand-900 dark:bg-brand-900/50 dark:text-brand-100"
      >
        AI
      </div>
      <div className="min-w-0 flex-1 space-y-2">
        {message.content ? (
          <Markdown text={message.content} />
        ) : streaming ? null : (
          <p className="text-sm text-zinc-500 italic dark:text-zinc-400">No reply.</p>
        )}
        {streaming ? (
          <p className="flex items-center gap-2 text-xs text-zinc-500 dark:text-zinc-400">
            <Spinner className="size-3.5 text-brand-600" />
            {message.content ? "Generating…" : "Thinking…"}
          </p>
        ) : (
          <>
            <Sources message={message} />
            <div className="flex flex-wrap items-center gap-2">
              <Ending message={message} />
              <ReplyStats message={message} />
            </div>
          </>
        )}
      </div>
    </article>
  );
});

export function MessageList({ messages, generating, empty }: { messages: StoredMessage[]; generating: boolean; empty: ReactNode }) {
  const scroller = useRef<HTMLDivElement>(null);
  const stick = useRef(true);

  useLayoutEffect(() => {
    const el = scroller.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [messages]);

  return (
    <div
      ref={scroller}
      role="log"
      aria-label="Messages"
      aria-busy={generating || undefined}
      tabIndex={0}
      onScroll={(event) => {
        const el = event.currentTarget;
        stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
      }}
      className="min-h-72 flex-1 overflow-y-auto px-4 py-5 sm:px-6"
    >
      {messages.length === 0 ? (
        empty
      ) : (
        <div className="space-y-5">
          {messages.map((message) => (
            <MessageItem key={message.id} message={message} />
          ))}
        </div>
      )}
    </div>
  );
}
