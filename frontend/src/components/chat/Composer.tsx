// Where a message is written: Enter sends, Shift+Enter starts a new line, Escape stops a reply that is streaming.
import { type ReactNode, type RefObject, useId } from "react";
import { Button } from "../ui";

export function Composer({
  value,
  onChange,
  onSend,
  onStop,
  generating,
  blocked,
  inputRef,
}: {
  value: string;
  onChange: (value: string) => void;
  onSend: () => void;
  onStop: () => void;
  generating: boolean;
  /** Why sending is not possible now (shown under the box), or null. */
  blocked: ReactNode;
  inputRef: RefObject<HTMLTextAreaElement | null>;
}) {
  const hintId = useId();
  const canSend = !generating && !blocked && value.trim() !== "";
  return (
    <form
      className="border-t border-zinc-200 p-3 sm:p-4 dark:border-zinc-800"
      onSubmit={(event) => {
        event.preventDefault();
        if (canSend) onSend();
      }}
    >
      <label htmlFor={`${hintId}-input`} className="sr-only">
        Message
      </label>
      <div className="flex items-end gap-2 rounded-xl border border-zinc-300 bg-white p-1.5 pl-3 shadow-xs focus-within:border-brand-600 focus-within:ring-1 focus-within:ring-brand-600 dark:border-zinc-700 dark:bg-zinc-950">
        <textarea
          id={`${hintId}-input`}
          ref={inputRef}
          rows={1}
          value={value}
          onChange={(e) => onChange(e.target.value)}
          onKeyDown={(event) => {
            if (event.key === "Escape" && generating) {
              event.preventDefault();
              onStop();
              return;
            }
            // Enter sends; Shift+Enter is a newline; Enter that ends an IME composition is not a send.
            if (event.key === "Enter" && !event.shiftKey && !event.nativeEvent.isComposing) {
              event.preventDefault();
              if (canSend) onSend();
            }
          }}
          aria-describedby={hintId}
          placeholder="Write a message…"
          className="max-h-60 min-h-9 flex-1 resize-none bg-transparent py-1.5 text-sm leading-6 [field-sizing:content] placeholder:text-zinc-400 focus:outline-none focus-visible:outline-none"
        />
        {generating ? (
          <Button variant="danger" onClick={onStop} className="shrink-0">
            <span className="size-2.5 rounded-[2px] bg-current" aria-hidden="true" />
            Stop
          </Button>
        ) : (
          <Button type="submit" variant="primary" disabled={!canSend} className="shrink-0">
            Send
          </Button>
        )}
      </div>
      <p id={hintId} className="mt-1.5 px-1 text-xs text-zinc-500 dark:text-zinc-400">
        {blocked ?? (generating ? "Generating… Esc or Stop ends the reply; what came so far is kept." : "Enter sends · Shift+Enter for a new line")}
      </p>
    </form>
  );
}
