// Small DOM helpers: build elements, and the empty / loading / error states every view shows.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export const loading = (what) => h("div", { class: "state loading", role: "status" }, `Loading ${what}…`);
export const empty = (text) => h("div", { class: "state empty", "data-testid": "empty" }, text);
export const failure = (err) => h("div", { class: "state error", role: "alert", "data-testid": "error" },
  err && err.message ? err.message : String(err));

export function table(columns, rows, { testid } = {}) {
  return h("div", { class: "scroll" }, h("table", { "data-testid": testid },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((row) => h("tr", {},
      columns.map((c) => h("td", { class: c.num ? "num" : null }, c.render ? c.render(row) : row[c.key])))))));
}

// Render `build()`'s element into `target`, with a loading state first and an error state on failure.
export async function view(target, what, build) {
  target.replaceChildren(loading(what));
  try {
    const content = await build();
    target.replaceChildren(...[content].flat().filter((c) => c !== null && c !== undefined && c !== false));
  } catch (err) {
    target.replaceChildren(failure(err));
  }
}

export function money(cents, currency = "usd") {
  return new Intl.NumberFormat("en-US", { style: "currency", currency: currency.toUpperCase() })
    .format(Number(cents) / 100);
}

export function badge(text, kind) { return h("span", { class: `badge ${kind || ""}` }, text); }
