// Enough Markdown for an experiment's report.md: headings, paragraphs, lists, tables, code, images.
// Builds DOM nodes (never HTML strings), so nothing in a report runs as markup.
import { h } from "./api.js";

const INLINE = /!\[([^\]]*)\]\(([^)\s]+)\)|`([^`]+)`|\*\*([^*]+)\*\*|\*([^*]+)\*/g;

/** Inline text to nodes; `image(src, alt)` makes the element for ![alt](src). */
function inline(text, image) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[2] !== undefined) out.push(image(m[2], m[1]));
    else if (m[3] !== undefined) out.push(h("code", {}, m[3]));
    else if (m[4] !== undefined) out.push(h("strong", {}, m[4]));
    else out.push(h("em", {}, m[5]));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

const cells = (line) => line.trim().replace(/^\||\|$/g, "").split("|").map((c) => c.trim());

export function renderMarkdown(markdown, image) {
  const root = document.createDocumentFragment();
  const lines = markdown.replace(/\r\n/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const level = Math.min(6, heading[1].length + 3); // the report sits under the page's own h3
      root.append(h(`h${level}`, {}, inline(heading[2], image)));
      i += 1;
    } else if (line.startsWith("```")) {
      const code = [];
      for (i += 1; i < lines.length && !lines[i].startsWith("```"); i += 1) code.push(lines[i]);
      root.append(h("pre", {}, h("code", {}, code.join("\n"))));
      i += 1;
    } else if (line.trim().startsWith("|")) {
      const rows = [];
      for (; i < lines.length && lines[i].trim().startsWith("|"); i += 1) rows.push(cells(lines[i]));
      const body = rows.filter((r, n) => !(n === 1 && r.every((c) => /^:?-{2,}:?$/.test(c))));
      const [head, ...rest] = body;
      root.append(h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, head.map((c) => h("th", { scope: "col" }, inline(c, image))))),
        h("tbody", {}, rest.map((r) => h("tr", {}, r.map((c) => h("td", {}, inline(c, image)))))))));
    } else if (/^\s*([-*]|\d+\.)\s+/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items = [];
      for (; i < lines.length && /^\s*([-*]|\d+\.)\s+/.test(lines[i]); i += 1) {
        items.push(h("li", {}, inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, ""), image)));
      }
      root.append(h(ordered ? "ol" : "ul", {}, items));
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && !/^(#|```|\s*\||\s*([-*]|\d+\.)\s)/.test(lines[i]); i += 1) {
        para.push(lines[i]);
      }
      if (!para.length) { para.push(line); i += 1; }
      root.append(h("p", {}, inline(para.join(" "), image)));
    }
  }
  return root;
}
