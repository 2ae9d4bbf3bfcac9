// Conversations, kept in the browser (localStorage) so they survive reloads: a list to pick from, each with its own
// system prompt and sampling parameters, and every reply with the model, parameters and usage that made it.
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { ChatMessage, Citation, Usage } from "../api/queries";

export const STORAGE_KEY = "orchard.chat.v1";
export const UNTITLED = "New chat";

/** The parameter form as typed (strings), so a half-typed number is never lost; parsed when a message is sent. */
export type ChatSettings = {
  systemPrompt: string;
  temperature: string;
  top_p: string;
  top_k: string;
  max_new_tokens: string;
  repetition_penalty: string;
  /** One per line; `\n` and `\t` stand for a newline and a tab. */
  stop: string;
  seed: string;
  /** A document collection the replies answer from ("" = none). */
  collectionId: string;
};

export const DEFAULT_SETTINGS: ChatSettings = {
  systemPrompt: "",
  temperature: "0.7",
  top_p: "0.9",
  top_k: "",
  max_new_tokens: "512",
  repetition_penalty: "1.0",
  stop: "",
  seed: "",
  collectionId: "",
};

/** What `POST /chat` takes besides the messages; every key present, so an export says exactly what was used. */
export type Sampling = {
  temperature: number;
  top_p: number;
  top_k: number | null;
  max_new_tokens: number | null;
  repetition_penalty: number;
  stop: string[];
  seed: number | null;
};

export type MessageStatus = "streaming" | "done" | "stopped" | "error";

export type StoredMessage = {
  id: string;
  role: "user" | "assistant";
  content: string;
  createdAt: string;
  /** Assistant replies only, from here on. */
  status?: MessageStatus;
  finishReason?: "stop" | "length" | "cancelled";
  usage?: Usage;
  model?: string;
  params?: Sampling;
  error?: { code: string; message: string };
  /** The passages of a document collection the reply was given to cite, numbered as in the prompt. */
  citations?: Citation[];
};

export type Conversation = {
  id: string;
  title: string;
  /** False once the user renames it; until then the first message names it. */
  autoTitle: boolean;
  createdAt: string;
  updatedAt: string;
  settings: ChatSettings;
  messages: StoredMessage[];
};

type State = { activeId: string; conversations: Conversation[] };

export function newId(): string {
  // randomUUID needs a secure context; the app may be opened over plain http on a LAN address.
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

export function newConversation(settings: ChatSettings = DEFAULT_SETTINGS): Conversation {
  const now = new Date().toISOString();
  return { id: newId(), title: UNTITLED, autoTitle: true, createdAt: now, updatedAt: now, settings: { ...settings }, messages: [] };
}

/** A short title from the first message: its first line, at most 48 characters. */
export function titleFrom(text: string): string {
  const line = text.trim().split("\n")[0].replace(/\s+/g, " ").trim();
  if (!line) return UNTITLED;
  return line.length > 48 ? `${line.slice(0, 47).trimEnd()}…` : line;
}

// ------------------------------------------------------------------ parameters

export type SettingsErrors = Partial<Record<keyof ChatSettings, string>>;

function numberField(
  raw: string,
  errors: SettingsErrors,
  key: keyof ChatSettings,
  { min, max, minExclusive = false, integer = false }: { min: number; max: number; minExclusive?: boolean; integer?: boolean },
): number | null {
  const text = raw.trim();
  if (text === "") return null;
  const value = Number(text);
  const low = minExclusive ? value <= min : value < min;
  if (!Number.isFinite(value) || low || value > max || (integer && !Number.isInteger(value))) {
    const kind = integer ? "A whole number" : "A number";
    errors[key] = `${kind} ${minExclusive ? "above" : "from"} ${min} ${minExclusive ? "up to" : "to"} ${max}.`;
    return null;
  }
  return value;
}

function required(value: number | null, errors: SettingsErrors, key: keyof ChatSettings, fallback: number): number {
  if (value === null && errors[key] === undefined) return fallback;
  return value ?? fallback;
}

/** Stop sequences: one per line, `\n`, `\t` and `\\` unescaped, blank lines ignored. */
export function parseStops(raw: string): string[] {
  return raw
    .split(/\r?\n/)
    .filter((line) => line !== "")
    .map((line) => line.replace(/\\(n|t|\\)/g, (_, c: string) => (c === "n" ? "\n" : c === "t" ? "\t" : "\\")));
}

/** The form's values as the API takes them, or what is wrong with each field (in the API's ranges). */
export function parseSettings(settings: ChatSettings): { params: Sampling; errors: SettingsErrors; valid: boolean } {
  const errors: SettingsErrors = {};
  const temperature = numberField(settings.temperature, errors, "temperature", { min: 0, max: 2 });
  const top_p = numberField(settings.top_p, errors, "top_p", { min: 0, max: 1, minExclusive: true });
  const top_k = numberField(settings.top_k, errors, "top_k", { min: 1, max: 1000, integer: true });
  const max_new_tokens = numberField(settings.max_new_tokens, errors, "max_new_tokens", { min: 1, max: 32768, integer: true });
  const repetition_penalty = numberField(settings.repetition_penalty, errors, "repetition_penalty", {
    min: 0,
    max: 3,
    minExclusive: true,
  });
  const seed = numberField(settings.seed, errors, "seed", { min: 0, max: 2 ** 32 - 1, integer: true });
  const stop = parseStops(settings.stop);
  if (stop.length > 8) errors.stop = "At most 8 stop sequences.";
  const params: Sampling = {
    temperature: required(temperature, errors, "temperature", 0.7),
    top_p: required(top_p, errors, "top_p", 1),
    top_k,
    max_new_tokens,
    repetition_penalty: required(repetition_penalty, errors, "repetition_penalty", 1),
    stop,
    seed,
  };
  return { params, errors, valid: Object.keys(errors).length === 0 };
}

/** The conversation as the API (and OpenAI) take it: the system prompt first, replies that have text. */
export function toApiMessages(conversation: Pick<Conversation, "settings" | "messages">): ChatMessage[] {
  const messages: ChatMessage[] = [];
  const system = conversation.settings.systemPrompt.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const message of conversation.messages) {
    if (message.role === "assistant" && !message.content) continue;
    messages.push({ role: message.role, content: message.content });
  }
  return messages;
}

// ------------------------------------------------------------------ storage

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

function readMessage(value: unknown): StoredMessage | null {
  if (!isRecord(value) || typeof value.id !== "string" || typeof value.content !== "string") return null;
  if (value.role !== "user" && value.role !== "assistant") return null;
  const message = value as StoredMessage;
  // A reply that was streaming when the page went away was cut off there.
  return message.status === "streaming" ? { ...message, status: "stopped" } : message;
}

function readConversation(value: unknown): Conversation | null {
  if (!isRecord(value) || typeof value.id !== "string" || !Array.isArray(value.messages)) return null;
  const now = new Date().toISOString();
  const settings = isRecord(value.settings) ? value.settings : {};
  return {
    id: value.id,
    title: typeof value.title === "string" && value.title ? value.title : UNTITLED,
    autoTitle: value.autoTitle !== false,
    createdAt: typeof value.createdAt === "string" ? value.createdAt : now,
    updatedAt: typeof value.updatedAt === "string" ? value.updatedAt : now,
    settings: {
      ...DEFAULT_SETTINGS,
      ...Object.fromEntries(Object.entries(settings).filter(([key, v]) => key in DEFAULT_SETTINGS && typeof v === "string")),
    },
    messages: value.messages.map(readMessage).filter((m): m is StoredMessage => m !== null),
  };
}

/** What the browser holds; anything unreadable is dropped rather than breaking the page. */
export function loadState(storage: Storage | null): State {
  let conversations: Conversation[] = [];
  let activeId = "";
  try {
    const raw = storage?.getItem(STORAGE_KEY);
    const parsed: unknown = raw ? JSON.parse(raw) : null;
    if (isRecord(parsed) && Array.isArray(parsed.conversations)) {
      conversations = parsed.conversations.map(readConversation).filter((c): c is Conversation => c !== null);
      if (typeof parsed.activeId === "string") activeId = parsed.activeId;
    }
  } catch {
    // unreadable: start afresh (the next save replaces it)
  }
  if (conversations.length === 0) conversations = [newConversation()];
  if (!conversations.some((c) => c.id === activeId)) activeId = conversations[0].id;
  return { activeId, conversations };
}

function saveState(storage: Storage | null, state: State): string | null {
  if (!storage) return null;
  try {
    storage.setItem(STORAGE_KEY, JSON.stringify({ version: 1, ...state }));
    return null;
  } catch {
    return "This browser would not store the conversations (storage full or disabled): they will be lost on reload. Export or delete some.";
  }
}

function browserStorage(): Storage | null {
  try {
    return typeof window === "undefined" ? null : window.localStorage;
  } catch {
    return null; // blocked by the browser's privacy settings
  }
}

const isStreaming = (state: State) => state.conversations.some((c) => c.messages.some((m) => m.status === "streaming"));

/** The conversations, persisted to localStorage: at most once a second while a reply streams, at once otherwise. */
export function useChatStore() {
  const storage = useMemo(browserStorage, []);
  const [state, setState] = useState<State>(() => loadState(storage));
  const [storageError, setStorageError] = useState<string | null>(null);
  const latest = useRef(state);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  /** The state just came from another tab's save: writing it back would only bounce it between the tabs. */
  const fromOtherTab = useRef(false);

  useEffect(() => {
    latest.current = state;
    if (fromOtherTab.current) {
      fromOtherTab.current = false;
      return;
    }
    if (!isStreaming(state)) {
      if (timer.current !== null) clearTimeout(timer.current);
      timer.current = null;
      setStorageError(saveState(storage, state));
    } else if (timer.current === null) {
      timer.current = setTimeout(() => {
        timer.current = null;
        setStorageError(saveState(storage, latest.current));
      }, 1000);
    }
  }, [state, storage]);

  useEffect(() => {
    const flush = () => void saveState(storage, latest.current);
    // Another tab changed the conversations: show them (keeping this tab's open one), unless a reply streams here.
    const onStorage = (event: StorageEvent) => {
      if (event.key !== STORAGE_KEY || isStreaming(latest.current)) return;
      const next = loadState(storage);
      const activeId = latest.current.activeId;
      fromOtherTab.current = true;
      setState(next.conversations.some((c) => c.id === activeId) ? { ...next, activeId } : next);
    };
    window.addEventListener("pagehide", flush);
    window.addEventListener("storage", onStorage);
    return () => {
      window.removeEventListener("pagehide", flush);
      window.removeEventListener("storage", onStorage);
      if (timer.current !== null) clearTimeout(timer.current);
      flush();
    };
  }, [storage]);

  /** Change one conversation; `touch` (for new messages, not for settings) moves it to the top of the list. */
  const update = useCallback((id: string, change: (conversation: Conversation) => Conversation, { touch = true } = {}) => {
    setState((s) => ({
      ...s,
      conversations: s.conversations.map((c) => {
        if (c.id !== id) return c;
        const changed = change(c);
        return touch ? { ...changed, updatedAt: new Date().toISOString() } : changed;
      }),
    }));
  }, []);

  const updateMessage = useCallback((id: string, messageId: string, change: (message: StoredMessage) => StoredMessage) => {
    setState((s) => ({
      ...s,
      conversations: s.conversations.map((c) =>
        c.id === id ? { ...c, messages: c.messages.map((m) => (m.id === messageId ? change(m) : m)) } : c,
      ),
    }));
  }, []);

  /** A new conversation with these settings, made the active one; an empty active conversation is reused. */
  const create = useCallback((settings: ChatSettings) => {
    setState((s) => {
      const active = s.conversations.find((c) => c.id === s.activeId);
      if (active && active.messages.length === 0) return s;
      const conversation = newConversation(settings);
      return { activeId: conversation.id, conversations: [conversation, ...s.conversations] };
    });
  }, []);

  const select = useCallback((id: string) => setState((s) => (s.conversations.some((c) => c.id === id) ? { ...s, activeId: id } : s)), []);

  const rename = useCallback(
    (id: string, title: string) => {
      const trimmed = title.trim();
      if (trimmed) update(id, (c) => ({ ...c, title: trimmed, autoTitle: false }), { touch: false });
    },
    [update],
  );

  /** Delete one; the newest remaining becomes active, and there is always at least one conversation. */
  const remove = useCallback((id: string) => {
    setState((s) => {
      const rest = s.conversations.filter((c) => c.id !== id);
      const settings = s.conversations.find((c) => c.id === id)?.settings;
      if (rest.length === 0) {
        const fresh = newConversation(settings);
        return { activeId: fresh.id, conversations: [fresh] };
      }
      const activeId = s.activeId === id ? newest(rest).id : s.activeId;
      return { activeId, conversations: rest };
    });
  }, []);

  const conversations = useMemo(() => [...state.conversations].sort(byRecent), [state.conversations]);
  const active = state.conversations.find((c) => c.id === state.activeId) ?? state.conversations[0];

  return { conversations, active, update, updateMessage, create, select, rename, remove, storageError };
}

const byRecent = (a: Conversation, b: Conversation) => b.updatedAt.localeCompare(a.updatedAt);
const newest = (conversations: Conversation[]) => [...conversations].sort(byRecent)[0];
