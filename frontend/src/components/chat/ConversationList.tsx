// The conversations kept in this browser, newest first: pick one, rename or delete the open one, export them all.
// Folds away on a phone like the parameter panel.
import { useId, useState } from "react";
import type { Conversation } from "../../hooks/useChatStore";
import { PanelToggle } from "../ui";

function when(iso: string): string {
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return today
    ? date.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
    : date.toLocaleDateString(undefined, { month: "short", day: "numeric" });
}

function RenameInput({ title, onDone }: { title: string; onDone: (title: string | null) => void }) {
  const [value, setValue] = useState(title);
  return (
    <input
      aria-label="Conversation title"
      autoFocus
      value={value}
      maxLength={120}
      onChange={(e) => setValue(e.target.value)}
      onBlur={() => onDone(value)}
      onKeyDown={(e) => {
        if (e.key === "Enter") {
          e.preventDefault();
          onDone(value);
        } else if (e.key === "Escape") {
          e.preventDefault();
          onDone(null);
        }
      }}
      className="w-full rounded-lg border border-brand-600 bg-white px-2.5 py-1.5 text-sm dark:bg-zinc-950"
    />
  );
}

const ACTION =
  "rounded-md px-2 py-1 text-xs font-medium text-zinc-600 hover:bg-zinc-200/70 disabled:cursor-not-allowed disabled:opacity-50 dark:text-zinc-400 dark:hover:bg-zinc-800";

export function ConversationList({
  conversations,
  activeId,
  busyId,
  onSelect,
  onRename,
  onDelete,
  onExportAll,
}: {
  conversations: Conversation[];
  activeId: string;
  /** The conversation a reply is streaming into: it cannot be deleted until the reply ends. */
  busyId: string | null;
  onSelect: (id: string) => void;
  onRename: (id: string, title: string) => void;
  onDelete: (conversation: Conversation) => void;
  onExportAll: () => void;
}) {
  const [open, setOpen] = useState(false);
  const [renaming, setRenaming] = useState<string | null>(null);
  const titleId = useId();
  const bodyId = useId();
  const active = conversations.find((c) => c.id === activeId);
  const exportable = conversations.some((c) => c.messages.length > 0);

  return (
    <section
      aria-labelledby={titleId}
      className="rounded-xl border border-zinc-200 bg-white p-4 shadow-sm dark:border-zinc-800 dark:bg-zinc-900"
    >
      <div className="flex items-center justify-between gap-2">
        <h2 id={titleId} className="text-base font-semibold">
          Conversations <span className="text-sm font-normal text-zinc-500 dark:text-zinc-400">{conversations.length}</span>
        </h2>
        <PanelToggle open={open} controls={bodyId} onToggle={() => setOpen((o) => !o)} />
      </div>
      {!open && active && <p className="mt-1 truncate text-xs text-zinc-500 lg:hidden dark:text-zinc-400">Open: {active.title}</p>}
      <div id={bodyId} className={`${open ? "block" : "hidden"} mt-3 lg:block`}>
        <ul className="-mx-1 max-h-72 space-y-0.5 overflow-y-auto px-1 py-0.5">
          {conversations.map((conversation) => {
            const isActive = conversation.id === activeId;
            const count = conversation.messages.length;
            return (
              <li key={conversation.id}>
                {renaming === conversation.id ? (
                  <RenameInput
                    title={conversation.title}
                    onDone={(title) => {
                      setRenaming(null);
                      if (title !== null) onRename(conversation.id, title);
                    }}
                  />
                ) : (
                  <button
                    type="button"
                    aria-current={isActive ? "true" : undefined}
                    onClick={() => onSelect(conversation.id)}
                    className={`block w-full rounded-lg px-2.5 py-1.5 text-left text-sm ${
                      isActive
                        ? "bg-brand-50 text-brand-900 dark:bg-brand-900/40 dark:text-brand-100"
                        : "text-zinc-700 hover:bg-zinc-100 dark:text-zinc-300 dark:hover:bg-zinc-800"
                    }`}
                  >
                    <span className="block truncate font-medium">{conversation.title}</span>
                    <span className="block text-xs text-zinc-500 dark:text-zinc-400">
                      {count === 0 ? "empty" : `${count} ${count === 1 ? "message" : "messages"}`} · {when(conversation.updatedAt)}
                    </span>
                  </button>
                )}
                {isActive && renaming !== conversation.id && (
                  <div className="flex gap-1 px-1 pt-0.5 pb-1">
                    <button type="button" className={ACTION} onClick={() => setRenaming(conversation.id)}>
                      Rename
                    </button>
                    <button
                      type="button"
                      className={`${ACTION} hover:text-red-700 dark:hover:text-red-300`}
                      onClick={() => onDelete(conversation)}
                      disabled={busyId === conversation.id}
                    >
                      Delete
                    </button>
                  </div>
                )}
              </li>
            );
          })}
        </ul>
        <div className="mt-3 border-t border-zinc-100 pt-3 dark:border-zinc-800">
          <button type="button" className={ACTION} onClick={onExportAll} disabled={!exportable}>
            Export all as JSON
          </button>
        </div>
      </div>
    </section>
  );
}
