import { render, screen } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { Markdown } from "./Markdown";

describe("Markdown", () => {
  it("renders headings, lists, inline code and code blocks", () => {
    const text = "# Title\n\nSome `inline` code.\n\n- one\n- two\n\n```python\nprint('hi')\n```\n\n[docs](https://example.com)";
    const { container } = render(<Markdown text={text} />);

    expect(screen.getByRole("heading", { name: "Title" })).toBeInTheDocument();
    expect(screen.getAllByRole("listitem").map((li) => li.textContent)).toEqual(["one", "two"]);
    expect(screen.getByText("inline").tagName).toBe("CODE");
    const pre = container.querySelector("pre");
    expect(pre).toHaveTextContent("print('hi')");
    expect(pre?.querySelector("code")).toHaveClass("language-python");
    expect(screen.getByRole("link", { name: "docs" })).toHaveAttribute("rel", "noreferrer noopener");
  });

  it("shows raw HTML as text, never as markup, and drops unsafe links", () => {
    const { container } = render(<Markdown text={'<img src=x onerror="alert(1)"><b>bold?</b>\n\n[click](javascript:alert(1))'} />);

    expect(container.querySelector("img, b, script")).toBeNull();
    expect(container).toHaveTextContent("<b>bold?</b>");
    expect(screen.getByText("click").closest("a")?.getAttribute("href") ?? "").not.toContain("javascript");
  });
});
