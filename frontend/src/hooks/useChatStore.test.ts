import { describe, expect, it } from "vitest";
import { DEFAULT_SETTINGS, loadState, parseSettings, parseStops, STORAGE_KEY, titleFrom, toApiMessages } from "./useChatStore";

describe("parseSettings", () => {
  it("turns the defaults into the API's parameters", () => {
    expect(parseSettings(DEFAULT_SETTINGS)).toEqual({
      params: { temperature: 0.7, top_p: 0.9, top_k: null, max_new_tokens: 512, repetition_penalty: 1, stop: [], seed: null },
      errors: {},
      valid: true,
    });
  });

  it("names each field outside the API's range", () => {
    const { errors, valid } = parseSettings({
      ...DEFAULT_SETTINGS,
      temperature: "2.5",
      top_p: "0",
      top_k: "1.5",
      max_new_tokens: "0",
      repetition_penalty: "abc",
      seed: "-1",
      stop: Array.from({ length: 9 }, (_, i) => `s${i}`).join("\n"),
    });
    expect(valid).toBe(false);
    expect(errors).toEqual({
      temperature: "A number from 0 to 2.",
      top_p: "A number above 0 up to 1.",
      top_k: "A whole number from 1 to 1000.",
      max_new_tokens: "A whole number from 1 to 32768.",
      repetition_penalty: "A number above 0 up to 3.",
      seed: "A whole number from 0 to 4294967295.",
      stop: "At most 8 stop sequences.",
    });
  });

  it("leaves optional fields empty for the server to decide", () => {
    const { params } = parseSettings({ ...DEFAULT_SETTINGS, max_new_tokens: " ", temperature: "0", seed: "42" });
    expect(params).toMatchObject({ max_new_tokens: null, temperature: 0, seed: 42 });
  });
});

describe("helpers", () => {
  it("reads stop sequences one per line, with escapes", () => {
    expect(parseStops("END\n\n\\n\\nUser:\na\\\\nb\n")).toEqual(["END", "\n\nUser:", "a\\nb"]);
  });

  it("titles a conversation from its first line", () => {
    expect(titleFrom("  How do   I bake\nbread?")).toBe("How do I bake");
    expect(titleFrom("x".repeat(60))).toBe(`${"x".repeat(47)}…`);
    expect(titleFrom("   ")).toBe("New chat");
  });

  it("sends the system prompt first and skips empty replies", () => {
    const messages = toApiMessages({
      settings: { ...DEFAULT_SETTINGS, systemPrompt: " Be kind. " },
      messages: [
        { id: "1", role: "user", content: "a", createdAt: "" },
        { id: "2", role: "assistant", content: "", createdAt: "", status: "stopped" },
        { id: "3", role: "user", content: "b", createdAt: "" },
      ],
    });
    expect(messages).toEqual([
      { role: "system", content: "Be kind." },
      { role: "user", content: "a" },
      { role: "user", content: "b" },
    ]);
  });

  it("starts afresh from unreadable storage", () => {
    localStorage.setItem(STORAGE_KEY, "{not json");
    const state = loadState(localStorage);
    expect(state.conversations).toHaveLength(1);
    expect(state.conversations[0]).toMatchObject({ title: "New chat", messages: [], settings: DEFAULT_SETTINGS });
    expect(state.activeId).toBe(state.conversations[0].id);
  });
});
