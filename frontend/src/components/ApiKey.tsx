// The API key in the app: the prompt a 401 brings up (once, above every page), and the System page's
// "a key is saved / Forget key" section. The key itself is never rendered: the input is a password field that is
// emptied on save, and nothing else shows it.
import { useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useEffect, useRef, useState } from "react";
import { clearKeyProblem, forgetApiKey, getKeyProblem, setApiKey, useHasApiKey, useKeyProblem } from "../api/apiKey";
import { Button, Card, TextField } from "./ui";

/** "API key needed": the API's message, a key field and Save. Shown while the API refuses the app's requests. */
export function ApiKeyPrompt() {
  const problem = useKeyProblem();
  const queryClient = useQueryClient();
  const [checking, setChecking] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  // Bumped by each refused try, so the alert is read out again even when the message is the same.
  const [tries, setTries] = useState(0);
  const field = () => formRef.current?.elements.namedItem("apiKey") as HTMLInputElement | null;
  const focusField = () => field()?.focus();

  if (!problem) return null;

  async function save(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const input = field();
    const key = input?.value.trim() ?? "";
    if (!input || !key) {
      focusField();
      return;
    }
    input.value = ""; // the field never keeps the key (uncontrolled, so it is never in a value attribute either)
    const before = getKeyProblem()?.seen ?? 0;
    setApiKey(key);
    setChecking(true);
    try {
      // Everything again, with the key; a refusal among them reports a new 401 (and its message) to the prompt.
      await queryClient.invalidateQueries();
    } finally {
      setChecking(false);
    }
    if ((getKeyProblem()?.seen ?? 0) === before) {
      clearKeyProblem();
    } else {
      setTries((count) => count + 1);
      focusField(); // refused: ready for another try
    }
  }

  return (
    <Card title="API key needed" className="mb-6">
      <p
        key={tries}
        role="alert"
        className="mb-3 rounded-lg bg-amber-50 px-4 py-3 text-sm text-amber-900 dark:bg-amber-900/30 dark:text-amber-100"
      >
        {problem.message}
      </p>
      <p className="mb-4 text-sm text-zinc-600 dark:text-zinc-400">
        This Orchard server was started with <code className="font-mono">ORCHARD_API_KEY</code>. Enter that key to use the
        app: it is kept in this browser and sent with every request.
      </p>
      <form ref={formRef} onSubmit={(event) => void save(event)} className="flex flex-wrap items-end gap-3">
        <TextField
          label="API key"
          name="apiKey"
          type="password"
          autoComplete="off"
          spellCheck={false}
          required
          autoFocus
          className="min-w-0 flex-1 basis-64"
        />
        <Button type="submit" variant="primary" busy={checking}>
          Save
        </Button>
      </form>
    </Card>
  );
}

/** The System page's section about the saved key: that there is one (never which), and Forget key. */
export function SavedApiKey() {
  const hasKey = useHasApiKey();
  const queryClient = useQueryClient();
  const [forgotten, setForgotten] = useState(0);
  const statusRef = useRef<HTMLParagraphElement>(null);

  useEffect(() => {
    if (forgotten > 0) statusRef.current?.focus(); // the button is gone: keep the keyboard's place in the card
  }, [forgotten]);

  if (!hasKey && forgotten === 0) return null;

  function forget() {
    forgetApiKey();
    setForgotten((count) => count + 1);
    // Ask the server again without the key: if it needs one, the prompt comes back.
    void queryClient.invalidateQueries();
  }

  return (
    <Card title="API key">
      {hasKey ? (
        <div className="flex flex-wrap items-center justify-between gap-3">
          <p className="text-sm text-zinc-600 dark:text-zinc-400">
            An API key is saved in this browser and sent with every request. It is not shown.
          </p>
          <Button onClick={forget}>Forget key</Button>
        </div>
      ) : (
        <p ref={statusRef} tabIndex={-1} role="status" className="text-sm text-zinc-600 outline-none dark:text-zinc-400">
          The key is forgotten. If the server needs one, Orchard will ask for it again.
        </p>
      )}
    </Card>
  );
}
