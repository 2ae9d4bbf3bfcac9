// Conversations as JSON files: messages in OpenAI's {role, content} shape (the system prompt first), with the model
// and parameters that produced the replies, ready to become fine-tuning data.
import type { ChatMessage } from "../../api/queries";
import { type Conversation, parseSettings, type Sampling, toApiMessages } from "../../hooks/useChatStore";

export type ConversationExport = {
  title: string;
  /** The model that wrote the last reply; null before any reply. */
  model: string | null;
  /** The parameters of the last reply, or the conversation's current ones before any reply. */
  parameters: Sampling | null;
  messages: ChatMessage[];
  created_at: string;
  updated_at: string;
};

export type ChatExport = {
  source: "orchard";
  version: 1;
  exported_at: string;
  conversations: ConversationExport[];
};

export function conversationExport(conversation: Conversation): ConversationExport {
  const replies = conversation.messages.filter((m) => m.role === "assistant" && m.content);
  const last = replies.at(-1);
  const current = parseSettings(conversation.settings);
  return {
    title: conversation.title,
    model: last?.model ?? null,
    parameters: last?.params ?? (current.valid ? current.params : null),
    messages: toApiMessages(conversation),
    created_at: conversation.createdAt,
    updated_at: conversation.updatedAt,
  };
}

/** One file for one or many conversations, so every export reads the same way. */
export function chatExport(conversations: Conversation[], now = new Date()): ChatExport {
  return {
    source: "orchard",
    version: 1,
    exported_at: now.toISOString(),
    conversations: conversations.filter((c) => c.messages.length > 0).map(conversationExport),
  };
}

export function exportFileName(conversations: Conversation[], now = new Date()): string {
  const date = now.toISOString().slice(0, 10);
  if (conversations.length !== 1) return `orchard-chats-${date}.json`;
  const slug = conversations[0].title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  return `orchard-chat-${slug || "conversation"}-${date}.json`;
}

/** Save the conversations as a .json download. */
export function downloadExport(conversations: Conversation[]): void {
  const blob = new Blob([`${JSON.stringify(chatExport(conversations), null, 2)}\n`], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = exportFileName(conversations);
  link.style.display = "none";
  document.body.append(link);
  link.click();
  link.remove();
  // Give the browser a moment to start the download before the URL goes away.
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
