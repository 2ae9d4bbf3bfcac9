// The conversation's system prompt and sampling parameters. On a phone the panel folds away behind a toggle;
// from the lg breakpoint up it is always open beside the conversation.
import { useQuery } from "@tanstack/react-query";
import { type ReactNode, type TextareaHTMLAttributes, useId, useState } from "react";
import { Link } from "react-router";
import { listCollectionsOptions } from "../../api/queries";
import { type ChatSettings, DEFAULT_SETTINGS, type SettingsErrors } from "../../hooks/useChatStore";
import { PanelToggle, SelectField } from "../ui";

export function TextAreaField({
  label,
  hint,
  error,
  className = "",
  ...props
}: TextareaHTMLAttributes<HTMLTextAreaElement> & { label: string; hint?: ReactNode; error?: string }) {
  const id = useId();
  const note = error ?? hint;
  return (
    <div className={className}>
      <label htmlFor={id} className="mb-1 block text-sm font-medium">
        {label}
      </label>
      <textarea
        id={id}
        {...props}
        aria-invalid={error ? true : undefined}
        aria-describedby={note ? `${id}-note` : undefined}
        className="block w-full resize-y rounded-lg border border-zinc-300 bg-white px-3 py-2 text-sm shadow-xs placeholder:text-zinc-400 aria-invalid:border-red-500 dark:border-zinc-700 dark:bg-zinc-950"
      />
      {note && (
        <p id={`${id}-note`} className={`mt-1 text-xs ${error ? "text-red-700 dark:text-red-300" : "text-zinc-500 dark:text-zinc-400"}`}>
          {note}
        </p>
      )}
    </div>
  );
}

type NumberKey = "temperature" | "top_p" | "top_k" | "max_new_tokens" | "repetition_penalty" | "seed";

const NUMBERS: Array<{ key: NumberKey; label: string; step: string; min: number; max: number; hint: string; placeholder?: string }> = [
  { key: "temperature", label: "Temperature", step: "0.1", min: 0, max: 2, hint: "0 = greedy, same reply each time" },
  { key: "top_p", label: "Top p", step: "0.05", min: 0, max: 1, hint: "Nucleus sampling, 0–1" },
  { key: "top_k", label: "Top k", step: "1", min: 1, max: 1000, hint: "Empty = off", placeholder: "off" },
  { key: "max_new_tokens", label: "Max new tokens", step: "1", min: 1, max: 32768, hint: "Empty = server default", placeholder: "default" },
  { key: "repetition_penalty", label: "Repetition penalty", step: "0.05", min: 0, max: 3, hint: "Above 1 repeats less" },
  { key: "seed", label: "Seed", step: "1", min: 0, max: 2 ** 32 - 1, hint: "Empty = random", placeholder: "random" },
];

/** A label and a narrow number box side by side, the hint (or what is wrong) underneath: compact in a side panel. */
function NumberRow({
  field,
  value,
  error,
  onChange,
}: {
  field: (typeof NUMBERS)[number];
  value: string;
  error?: string;
  onChange: (value: string) => void;
}) {
  const id = useId();
  return (
    <div className="grid grid-cols-[minmax(0,1fr)_5.5rem] items-center gap-x-3 gap-y-0.5">
      <label htmlFor={id} className="text-sm font-medium">
        {field.label}
      </label>
      <input
        id={id}
        type="number"
        inputMode={field.step === "1" ? "numeric" : "decimal"}
        step={field.step}
        min={field.min}
        max={field.max}
        placeholder={field.placeholder}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        aria-invalid={error ? true : undefined}
        aria-describedby={`${id}-note`}
        className="w-full rounded-lg border border-zinc-300 bg-white px-2.5 py-1.5 text-right text-sm tabular-nums shadow-xs placeholder:text-zinc-400 aria-invalid:border-red-500 aria-invalid:ring-1 aria-invalid:ring-red-500 dark:border-zinc-700 dark:bg-zinc-950"
      />
      <p id={`${id}-note`} className={`col-span-2 text-xs ${error ? "text-red-700 dark:text-red-300" : "text-zinc-500 dark:text-zinc-400"}`}>
        {error ?? field.hint}
      </p>
    </div>
  );
}

/** Which document collection the replies answer from, with a way to make one when there is none. */
function DocumentsField({ value, onChange }: { value: string; onChange: (value: string) => void }) {
  const collections = useQuery(listCollectionsOptions());
  const list = collections.data?.collections ?? [];
  const known = !value || list.some((c) => c.id === value);
  return (
    <SelectField
      label="Answer from documents"
      value={value}
      onChange={(event) => onChange(event.target.value)}
      options={[
        ["", "None"],
        ...list.map((c): [string, string] => [c.id, `${c.name} (${c.documents} ${c.documents === 1 ? "document" : "documents"})`]),
        ...(known ? [] : ([[value, "A deleted collection", true]] as Array<[string, string, boolean]>)),
      ]}
      hint={
        list.length === 0 ? (
          <>
            Add documents on the{" "}
            <Link to="/documents" className="text-brand-700 underline dark:text-brand-500">
              Documents page
            </Link>{" "}
            to ask about them here.
          </>
        ) : (
          "Replies use the collection's passages and cite them."
        )
      }
    />
  );
}

function summary(settings: ChatSettings): string {
  const parts = [`temperature ${settings.temperature || "—"}`, `max ${settings.max_new_tokens || "default"} tokens`];
  if (settings.seed) parts.push(`seed ${settings.seed}`);
  if (settings.systemPrompt.trim()) parts.push("system prompt");
  if (settings.collectionId) parts.push("with documents");
  return parts.join(" · ");
}

export function ParameterPanel({
  settings,
  errors,
  onChange,
}: {
  settings: ChatSettings;
  errors: SettingsErrors;
  onChange: (patch: Partial<ChatSettings>) => void;
}) {
  const [open, setOpen] = useState(false);
  const titleId = useId();
  const bodyId = useId();
  const invalid = Object.keys(errors).length > 0;
  // Reset is for the sampling parameters: the system prompt and the documents stay as chosen.
  const kept = (k: keyof ChatSettings) => k === "systemPrompt" || k === "collectionId";
  const changed = (Object.keys(DEFAULT_SETTINGS) as Array<keyof ChatSettings>).some((k) => !kept(k) && settings[k] !== DEFAULT_SETTINGS[k]);

  return (
    <section
      aria-labelledby={titleId}
      className="rounded-xl border border-zinc-200 bg-white p-4 shadow-sm dark:border-zinc-800 dark:bg-zinc-900"
    >
      <div className="flex items-center justify-between gap-2">
        <h2 id={titleId} className="text-base font-semibold">
          Parameters
        </h2>
        <div className="flex items-center gap-1">
          {changed && (
            <button
              type="button"
              onClick={() => onChange({ ...DEFAULT_SETTINGS, systemPrompt: settings.systemPrompt, collectionId: settings.collectionId })}
              className={`${open ? "" : "hidden"} rounded-md px-2 py-1 text-xs font-medium text-zinc-600 hover:bg-zinc-100 lg:inline-block dark:text-zinc-400 dark:hover:bg-zinc-800`}
            >
              Reset
            </button>
          )}
          <PanelToggle open={open} controls={bodyId} onToggle={() => setOpen((o) => !o)} />
        </div>
      </div>
      {!open && (
        <p className={`mt-1 text-xs lg:hidden ${invalid ? "text-red-700 dark:text-red-300" : "text-zinc-500 dark:text-zinc-400"}`}>
          {invalid ? "Some parameters need fixing." : summary(settings)}
        </p>
      )}
      <div id={bodyId} className={`${open ? "block" : "hidden"} mt-4 space-y-4 lg:block`}>
        <DocumentsField value={settings.collectionId} onChange={(collectionId) => onChange({ collectionId })} />
        <TextAreaField
          label="System prompt"
          rows={3}
          value={settings.systemPrompt}
          onChange={(e) => onChange({ systemPrompt: e.target.value })}
          placeholder="You are a helpful assistant."
          hint="Sent first, before the conversation."
        />
        <div className="space-y-3">
          {NUMBERS.map((field) => (
            <NumberRow key={field.key} field={field} value={settings[field.key]} error={errors[field.key]} onChange={(value) => onChange({ [field.key]: value })} />
          ))}
        </div>
        <TextAreaField
          label="Stop sequences"
          rows={2}
          value={settings.stop}
          onChange={(e) => onChange({ stop: e.target.value })}
          placeholder={"One per line, e.g.\n\\n\\n"}
          hint={"One per line (at most 8); \\n is a newline."}
          error={errors.stop}
        />
      </div>
    </section>
  );
}
