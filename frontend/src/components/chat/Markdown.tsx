// A reply's Markdown, styled to match the app. Raw HTML in a reply shows as text, never as markup
// (react-markdown renders no HTML without rehype-raw), and unsafe link protocols are dropped by its urlTransform.
import { memo, type ReactNode, useRef, useState } from "react";
import ReactMarkdown, { type Components } from "react-markdown";

function CodeBlock({ children }: { children?: ReactNode }) {
  const ref = useRef<HTMLPreElement>(null);
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    const text = ref.current?.textContent ?? "";
    try {
      await navigator.clipboard.writeText(text);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      // no clipboard (insecure context): the text can still be selected by hand
    }
  };
  return (
    <div className="group relative my-3">
      <pre
        ref={ref}
        className="overflow-x-auto rounded-lg bg-zinc-900 p-3 font-mono text-[0.8125rem] leading-relaxed text-zinc-100 dark:bg-black/60 [&_code]:bg-transparent [&_code]:p-0 [&_code]:text-inherit"
      >
        {children}
      </pre>
      {typeof navigator !== "undefined" && navigator.clipboard && (
        <button
          type="button"
          onClick={copy}
          className="absolute top-1.5 right-1.5 rounded-md bg-zinc-700/80 px-2 py-0.5 text-xs text-zinc-100 opacity-0 transition-opacity group-hover:opacity-100 focus-visible:opacity-100 hover:bg-zinc-600"
        >
          {copied ? "Copied" : "Copy"}
        </button>
      )}
    </div>
  );
}

const COMPONENTS: Components = {
  h1: ({ children }) => <h3 className="mt-4 mb-2 text-lg font-semibold first:mt-0">{children}</h3>,
  h2: ({ children }) => <h4 className="mt-4 mb-2 text-base font-semibold first:mt-0">{children}</h4>,
  h3: ({ children }) => <h5 className="mt-3 mb-1.5 font-semibold first:mt-0">{children}</h5>,
  h4: ({ children }) => <h6 className="mt-3 mb-1 font-semibold first:mt-0">{children}</h6>,
  h5: ({ children }) => <h6 className="mt-3 mb-1 font-semibold first:mt-0">{children}</h6>,
  h6: ({ children }) => <h6 className="mt-3 mb-1 font-semibold first:mt-0">{children}</h6>,
  p: ({ children }) => <p className="my-2 first:mt-0 last:mb-0">{children}</p>,
  ul: ({ children }) => <ul className="my-2 list-disc space-y-1 pl-5">{children}</ul>,
  ol: ({ children }) => <ol className="my-2 list-decimal space-y-1 pl-5">{children}</ol>,
  li: ({ children }) => <li className="pl-1">{children}</li>,
  blockquote: ({ children }) => (
    <blockquote className="my-2 border-l-4 border-zinc-300 pl-3 text-zinc-600 dark:border-zinc-700 dark:text-zinc-400">
      {children}
    </blockquote>
  ),
  a: ({ children, href }) => (
    <a href={href} target="_blank" rel="noreferrer noopener" className="font-medium text-brand-700 underline underline-offset-2 dark:text-brand-100">
      {children}
    </a>
  ),
  hr: () => <hr className="my-4 border-zinc-200 dark:border-zinc-800" />,
  code: ({ children, className }) => (
    <code className={`rounded bg-zinc-100 px-1 py-0.5 font-mono text-[0.85em] dark:bg-zinc-800 ${className ?? ""}`}>{children}</code>
  ),
  pre: ({ children }) => <CodeBlock>{children}</CodeBlock>,
  img: ({ alt }) => <span className="text-zinc-500">[image{alt ? `: ${alt}` : ""}]</span>,
};

/** Markdown text; memoised, so only the reply that is streaming re-renders as tokens arrive. */
export const Markdown = memo(function Markdown({ text }: { text: string }) {
  return (
    <div className="min-w-0 text-sm leading-relaxed break-words">
      <ReactMarkdown components={COMPONENTS}>{text}</ReactMarkdown>
    </div>
  );
});
