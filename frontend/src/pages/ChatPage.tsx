// Chat with the loaded model: replies stream in token by token, Stop keeps what came so far, each reply shows its
// speed, and conversations (with their system prompt and parameters) stay in this browser and export as JSON.
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useId, useMemo, useRef, useState } from "react";
import { Link } from "react-router";
import { getCurrentModelOptions, getCurrentModelQueryKey } from "../api/queries";
import { Composer } from "../components/chat/Composer";
import { ConversationList } from "../components/chat/ConversationList";
import { downloadExport } from "../components/chat/exportChat";
import { MessageList } from "../components/chat/MessageList";
import { ParameterPanel } from "../components/chat/ParameterPanel";
import { Badge, Button, ConfirmDialog, EmptyState, ErrorMessage, PageHeader, Spinner } from "../components/ui";
import {
  type ChatSettings,
  type Conversation,
  newId,
  parseSettings,
  type StoredMessage,
  titleFrom,
  toApiMessages,
  useChatStore,
} from "../hooks/useChatStore";
import { useChatStream } from "../hooks/useChatStream";

const SUGGESTIONS = [
  "Write a haiku about an apple orchard.",
  "Explain top-p sampling in two sentences.",
  "Write a Python function that reverses a string.",
];

function StartHere({ onPick, canSend }: { onPick: (text: string) => void; canSend: boolean }) {
  return (
    <div className="mx-auto flex h-full max-w-md flex-col items-center justify-center py-8 text-center">
      <div className="mb-3 flex size-11 items-center justify-center rounded-full bg-brand-100 text-brand-700 dark:bg-brand-900/50 dark:text-brand-100">
        <svg viewBox="0 0 24 24" fill="none" stroke="currentColor" strokeWidth="1.8" strokeLinecap="round" strokeLinejoin="round" className="size-5" aria-hidden="true">
          <path d="M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12Z" />
          <path d="M8.5 12h.01M12 12h.01M15.5 12h.01" strokeWidth="2.6" />
        </svg>
      </div>
      <p className="font-medium">Start a conversation</p>
      <p className="mt-1 text-sm text-zinc-600 dark:text-zinc-400">
        Replies stream in as the model writes them. The system prompt and sampling parameters are beside the chat; this
        conversation is kept in your browser.
      </p>
      {canSend && (
        <ul className="mt-5 flex flex-wrap justify-center gap-2">
          {SUGGESTIONS.map((text) => (
            <li key={text}>
              <button
                type="button"
                onClick={() => onPick(text)}
                className="rounded-full border border-zinc-300 px-3 py-1.5 text-xs text-zinc-700 hover:border-brand-600 hover:text-brand-700 dark:border-zinc-700 dark:text-zinc-300 dark:hover:text-brand-100"
              >
                {text}
              </button>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function ChatPage() {
  const queryClient = useQueryClient();
  const current = useQuery({ ...getCurrentModelOptions(), refetchInterval: 5_000 });
  const store = useChatStore();
  const { run, stop, generating } = useChatStream();
  const [draft, setDraft] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busyId, setBusyId] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<Conversation | null>(null);
  const inputRef = useRef<HTMLTextAreaElement>(null);
  const titleId = useId();

  const conversation = store.active;
  const parsed = useMemo(() => parseSettings(conversation.settings), [conversation.settings]);
  const model = current.data?.metadata ?? null;
  const loading = current.data?.loading ?? null;
  const noModel = current.isSuccess && !current.data.loaded && !loading;

  const blocked = loading ? (
    <span className="inline-flex items-center gap-1.5">
      <Spinner className="size-3.5" /> Loading {loading}… you can send when it is ready.
    </span>
  ) : current.isPending ? (
    "Checking for a loaded model…"
  ) : !parsed.valid ? (
    <span className="text-red-700 dark:text-red-300">Fix the parameters marked in red to send.</span>
  ) : busyId && busyId !== conversation.id ? (
    "A reply is being written in another conversation: stop it or wait for it to finish."
  ) : null;

  const focusInput = () => setTimeout(() => inputRef.current?.focus(), 0);

  async function send() {
    const text = draft;
    if (!text.trim() || generating || !parsed.valid) return;
    setError(null);
    const id = conversation.id;
    const now = new Date().toISOString();
    const question: StoredMessage = { id: newId(), role: "user", content: text, createdAt: now };
    const reply: StoredMessage = {
      id: newId(),
      role: "assistant",
      content: "",
      createdAt: now,
      status: "streaming",
      params: parsed.params,
      model: model?.model_id,
    };
    const messages = toApiMessages({ settings: conversation.settings, messages: [...conversation.messages, question] });
    store.update(id, (c) => ({
      ...c,
      title: c.autoTitle && !c.messages.some((m) => m.role === "user") ? titleFrom(text) : c.title,
      messages: [...c.messages, question, reply],
    }));
    setDraft("");
    setBusyId(id);
    focusInput();

    const collectionId = conversation.settings.collectionId || undefined;
    const outcome = await run({ ...parsed.params, messages, ...(collectionId ? { collection_id: collectionId } : {}) }, (token) =>
      store.updateMessage(id, reply.id, (m) => ({ ...m, content: m.content + token })),
    );
    setBusyId(null);
    if (outcome.kind === "done") {
      const { response } = outcome;
      store.updateMessage(id, reply.id, (m) => ({
        ...m,
        content: response.message.content,
        status: response.finish_reason === "cancelled" ? "stopped" : "done",
        finishReason: response.finish_reason,
        usage: response.usage,
        model: response.model,
        citations: response.citations?.length ? response.citations : undefined,
      }));
    } else if (outcome.kind === "stopped") {
      store.updateMessage(id, reply.id, (m) => ({ ...m, status: "stopped" }));
    } else {
      const { error: failure, received } = outcome;
      setError(failure);
      if (received) {
        store.updateMessage(id, reply.id, (m) => ({ ...m, status: "error", error: { code: failure.code, message: failure.message } }));
      } else {
        // Nothing was generated: take the message back into the box, so it can be sent again as it was.
        store.update(id, (c) => ({ ...c, messages: c.messages.filter((m) => m.id !== question.id && m.id !== reply.id) }), { touch: false });
        setDraft((d) => (d.trim() ? d : text));
      }
      if (failure.code === "model_not_loaded") void queryClient.invalidateQueries({ queryKey: getCurrentModelQueryKey() });
    }
  }

  function onStop() {
    stop();
    focusInput();
  }

  function changeSettings(patch: Partial<ChatSettings>) {
    store.update(conversation.id, (c) => ({ ...c, settings: { ...c.settings, ...patch } }), { touch: false });
  }

  function newChat() {
    store.create(conversation.settings);
    setError(null);
    focusInput();
  }

  const description = model ? (
    <>
      Talking to <span className="font-medium text-zinc-900 dark:text-zinc-100">{model.model_id}</span>
      {model.context_length ? ` · ${model.context_length.toLocaleString()}-token context` : ""}
      {!model.has_chat_template && " · no chat template, a plain one is used"}
    </>
  ) : loading ? (
    `Loading ${loading}…`
  ) : noModel ? (
    "Load a model to start chatting."
  ) : (
    "Talk to the loaded model."
  );

  return (
    <>
      <PageHeader
        title="Chat"
        description={description}
        actions={
          <>
            <Button onClick={newChat}>New chat</Button>
            <Button onClick={() => downloadExport([conversation])} disabled={conversation.messages.length === 0}>
              Export JSON
            </Button>
          </>
        }
      />
      {store.storageError && (
        <p role="alert" className="mb-4 rounded-lg border border-amber-200 bg-amber-50 px-4 py-3 text-sm text-amber-900 dark:border-amber-900/60 dark:bg-amber-950/40 dark:text-amber-200">
          {store.storageError}
        </p>
      )}
      <div className="grid gap-4 lg:grid-cols-[minmax(0,1fr)_17rem] lg:gap-6">
        <section
          aria-labelledby={titleId}
          className="flex h-[calc(100dvh-10rem)] min-h-[26rem] min-w-0 flex-col rounded-xl border border-zinc-200 bg-white shadow-sm md:h-[calc(100dvh-13rem)] dark:border-zinc-800 dark:bg-zinc-900"
        >
          <header className="flex items-center justify-between gap-3 border-b border-zinc-200 px-4 py-3 sm:px-6 dark:border-zinc-800">
            <h2 id={titleId} className="min-w-0 truncate text-base font-semibold">
              {conversation.title}
            </h2>
            {generating && busyId === conversation.id && <Badge tone="good">Generating</Badge>}
          </header>
          <MessageList
            key={conversation.id}
            messages={conversation.messages}
            generating={generating && busyId === conversation.id}
            empty={
              <StartHere
                canSend={!noModel && !blocked}
                onPick={(text) => {
                  setDraft(text);
                  focusInput();
                }}
              />
            }
          />
          {(error || current.isError) && (
            <div className="space-y-2 px-3 pb-3 sm:px-4">
              <ErrorMessage error={error} title="The reply failed" onDismiss={() => setError(null)} />
              {current.isError && <ErrorMessage error={current.error} title="Could not check the loaded model" />}
            </div>
          )}
          {noModel ? (
            <div className="border-t border-zinc-200 p-3 sm:p-4 dark:border-zinc-800">
              <EmptyState title="No model loaded">
                Chat needs a model in memory. <Link to="/models" className="font-medium text-brand-700 underline underline-offset-2 dark:text-brand-100">
                  Load a model on the Models page
                </Link>
                ; your conversations stay here.
              </EmptyState>
            </div>
          ) : (
            <Composer
              value={draft}
              onChange={setDraft}
              onSend={() => void send()}
              onStop={onStop}
              generating={generating}
              blocked={blocked}
              inputRef={inputRef}
            />
          )}
        </section>
        <div className="order-first space-y-4 lg:order-last">
          <ConversationList
            conversations={store.conversations}
            activeId={conversation.id}
            busyId={busyId}
            onSelect={(id) => {
              store.select(id);
              setError(null);
            }}
            onRename={store.rename}
            onDelete={setDeleting}
            onExportAll={() => downloadExport(store.conversations)}
          />
          <ParameterPanel settings={conversation.settings} errors={parsed.errors} onChange={changeSettings} />
        </div>
      </div>
      <ConfirmDialog
        open={deleting !== null}
        title="Delete this conversation?"
        confirmLabel="Delete"
        onCancel={() => setDeleting(null)}
        onConfirm={() => {
          if (deleting) store.remove(deleting.id);
          setDeleting(null);
        }}
      >
        “{deleting?.title}” and its {deleting?.messages.length ?? 0} messages will be removed from this browser. Export it first to keep a copy.
      </ConfirmDialog>
    </>
  );
}
