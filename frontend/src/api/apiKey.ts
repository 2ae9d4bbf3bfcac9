// The API key, when the server has one (ORCHARD_API_KEY): kept in this browser's localStorage, sent by the generated
// client (see setUpClient) and by the chat stream, and never shown. Also the app-wide "the API wants a key" state
// that a 401 sets and the key prompt reads.
import { useSyncExternalStore } from "react";

export const API_KEY_STORAGE = "orchard.apiKey";

type Listener = () => void;

function createSignal() {
  const listeners = new Set<Listener>();
  return {
    subscribe(listener: Listener): () => void {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    emit(): void {
      for (const listener of [...listeners]) listener();
    },
  };
}

// ---- the key --------------------------------------------------------------------------------------------------

const keyChanged = createSignal();
/** Where the key lives when localStorage cannot be used (a locked-down browser): this tab only. */
let memoryKey: string | null = null;

function storage(): Storage | null {
  try {
    return typeof window === "undefined" ? null : window.localStorage;
  } catch {
    return null;
  }
}

export function getApiKey(): string | null {
  try {
    const stored = storage()?.getItem(API_KEY_STORAGE);
    if (stored) return stored;
  } catch {
    // fall back to this tab's copy
  }
  return memoryKey;
}

export function setApiKey(key: string): void {
  const value = key.trim();
  if (!value) return;
  memoryKey = value;
  try {
    const store = storage();
    if (store) {
      store.setItem(API_KEY_STORAGE, value);
      memoryKey = null; // stored: another tab forgetting it must not leave this tab with a copy
    }
  } catch {
    // kept in memory for this tab
  }
  keyChanged.emit();
}

export function forgetApiKey(): void {
  memoryKey = null;
  try {
    storage()?.removeItem(API_KEY_STORAGE);
  } catch {
    // nothing stored
  }
  keyChanged.emit();
}

/** `Authorization: Bearer <key>` when a key is saved; nothing otherwise. */
export function apiKeyHeaders(): Record<string, string> {
  const key = getApiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function subscribeToKey(listener: Listener): () => void {
  const unsubscribe = keyChanged.subscribe(listener);
  // Another tab saving or forgetting the key.
  const onStorage = (event: StorageEvent) => {
    if (event.key === API_KEY_STORAGE || event.key === null) listener();
  };
  window.addEventListener("storage", onStorage);
  return () => {
    unsubscribe();
    window.removeEventListener("storage", onStorage);
  };
}

/** Whether a key is saved (never the key itself: components have no reason to hold it). */
export function useHasApiKey(): boolean {
  return useSyncExternalStore(subscribeToKey, () => getApiKey() !== null, () => false);
}

// ---- "the API wants a key" --------------------------------------------------------------------------------------

export type KeyProblem = {
  /** The API's own words, e.g. "Wrong API key.". */
  message: string;
  /** Counts the 401s seen, so a check after saving a key can tell whether a new one arrived. */
  seen: number;
};

const problemChanged = createSignal();
let problem: KeyProblem | null = null;
let seen = 0;

/** A request answered 401: the app asks for the key (again), in the API's words. */
export function reportUnauthorized(message: string): void {
  seen += 1;
  problem = { message, seen };
  problemChanged.emit();
}

/** The prompt is done: a key was saved and the requests after it were not refused. */
export function clearKeyProblem(): void {
  if (problem === null) return;
  problem = null;
  problemChanged.emit();
}

export function getKeyProblem(): KeyProblem | null {
  return problem;
}

export function useKeyProblem(): KeyProblem | null {
  return useSyncExternalStore(problemChanged.subscribe, getKeyProblem, getKeyProblem);
}
