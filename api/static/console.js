// The operator console: accounts, billing runs, backups and the platform's own cost, linked to the Temporal UI.
import { call, setToken, token } from "./api.js";
import { badge, empty, failure, h, money, table, view } from "./ui.js";

const api = (method, path, body) => call("operator", method, path, body);
const main = document.getElementById("main");
let platform = null; // { temporalUiUrl, controlNamespace }

function workflowLink(workflowId, text) {
  const href = `${platform.temporalUiUrl}/namespaces/${encodeURIComponent(platform.controlNamespace)}` +
               `/workflows/${encodeURIComponent(workflowId)}`;
  return h("a", { href, target: "_blank", rel: "noopener", "data-workflow-id": workflowId }, text || workflowId);
}

function statusBadge(s) {
  const kind = /active|paid|done|completed|succeeded|void/.test(s) ? "ok"
             : /suspend|fail|uncollect|closed|written/.test(s) ? "bad" : "warn";
  return badge(String(s).replace(/_/g, " "), kind);
}

function signIn(message) {
  document.getElementById("nav").hidden = true;
  const input = h("input", { id: "operator-token", type: "password", required: true, size: 48, autocomplete: "off" });
  const status = h("div", { "aria-live": "polite" }, message ? failure({ message }) : null);
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Operator sign in"),
    h("form", { class: "inline", "data-testid": "signin", onsubmit: async (ev) => {
      ev.preventDefault();
      setToken("operator", input.value.trim());
      try { await route(); } catch (err) { setToken("operator", null); status.replaceChildren(failure(err)); }
    } }, h("label", { for: "operator-token" }, "Operator token", input), h("button", { type: "submit" }, "Sign in")),
    status));
  input.focus();
}

async function accountsView() {
  const box = h("div");
  const status = h("div", { "aria-live": "polite" });
  async function setStatus(id, action) {
    try { await api("POST", `/admin/accounts/${encodeURIComponent(id)}/${action}`, {}); }
    catch (err) { status.replaceChildren(failure(err)); }
    await refresh();
  }
  async function refresh() {
    await view(box, "accounts", async () => {
      const data = await api("GET", "/admin/overview");
      const p = data.platform;
      const rows = data.accounts;
      return [
        h("p", {}, `Platform's own use this month (${platform.controlNamespace}): `,
          h("strong", { "data-testid": "platform-actions" }, `${p.actions.toLocaleString("en-US")} actions`),
          `, ${p.activeGbHours} active GBh, ${p.retainedGbHours} retained GBh — `,
          h("strong", {}, money(p.listPriceCents)), " at list price (not billed)."),
        rows.length ? table([
          { label: "Account", render: (a) => h("a", { href: `#/accounts/${encodeURIComponent(a.id)}`,
                                                         "data-testid": `account-${a.id}` }, `${a.name} (${a.id})`) },
          { label: "Plan", key: "plan" },
          { label: "Status", render: (a) => h("span", { "data-testid": `status-${a.id}` }, statusBadge(a.status)) },
          { label: `Month to date (${data.period})`, num: true, render: (a) => money(a.monthToDateCents) },
          { label: "", render: (a) => a.status === "active"
              ? h("button", { class: "danger", type: "button", "aria-label": `Suspend ${a.id}`,
                              onclick: () => setStatus(a.id, "suspend") }, "Suspend")
              : h("button", { class: "secondary", type: "button", "aria-label": `Resume ${a.id}`,
                              onclick: () => setStatus(a.id, "resume") }, "Resume") },
        ], rows, { testid: "accounts" }) : empty("No accounts yet."),
      ];
    });
  }
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Accounts"), status, box));
  await refresh();
}

// One account: its details, and its users and service accounts with their roles, namespace access and keys
// (read-only: customers manage them in the portal).
async function accountView(id) {
  const box = h("div");
  const people = h("div");
  main.replaceChildren(h("section", { class: "card" }, h("p", {}, h("a", { href: "#/accounts" }, "← All accounts")),
                         box),
                       h("section", { class: "card" }, h("h2", {}, "Users and service accounts"), people));
  const access = (i) => {
    const entries = Object.entries(i.namespaceAccess || {});
    return entries.length ? entries.map(([ns, p]) => h("div", {}, `${ns}: ${p}`)) : h("span", { class: "muted" }, "none");
  };
  const keys = (i) => `${i.keys.active} active${i.keys.disabled ? `, ${i.keys.disabled} disabled` : ""}`;
  const columns = (first) => [
    first,
    { label: "Role", render: (i) => i.role.replace(/_/g, " ") },
    { label: "Namespace access", render: access },
    { label: "API keys", render: (i) => h("span", { "data-testid": `keys-${i.id}` }, keys(i)) },
    { label: "State", render: (i) => h("span", { "data-testid": `identity-state-${i.id}` },
        statusBadge(i.state === "deleted" ? `deleted ${(i.deletedAt || "").slice(0, 10)}` : i.state)) },
    { label: "Created", render: (i) => i.createdAt.slice(0, 16).replace("T", " ") },
  ];
  await Promise.all([
    view(box, "account", async () => {
      const a = await api("GET", `/admin/accounts/${encodeURIComponent(id)}`);
      return [h("h2", { "data-testid": "account-name" }, `${a.name} (${a.id})`),
              h("p", {}, `${a.email} · plan ${a.plan} · `, statusBadge(a.status),
                a.statusReason ? ` (${a.statusReason})` : "", ` · created ${a.createdAt.slice(0, 10)}`)];
    }),
    view(people, "users and service accounts", async () => {
      const data = await api("GET", `/admin/accounts/${encodeURIComponent(id)}/identities`);
      return [
        h("h3", {}, "Users"),
        data.users.length ? table(columns({ label: "Email", render: (i) => i.name }), data.users,
                                  { testid: "account-users" }) : empty("No users."),
        h("h3", {}, "Service accounts"),
        data.serviceAccounts.length ? table(columns({ label: "Name", render: (i) => [i.name,
            i.description ? h("div", { class: "muted" }, i.description) : null] }), data.serviceAccounts,
                                            { testid: "account-service-accounts" }) : empty("No service accounts."),
        data.truncated ? h("p", { class: "muted" }, "Only the first 1,000 are shown.") : null,
      ];
    }),
  ]);
}

function lastMonth() {
  const d = new Date();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() - 1);
  return d.toISOString().slice(0, 7);
}

async function billingView() {
  const period = h("input", { id: "period", required: true, pattern: "[0-9]{4}-[0-9]{2}", value: lastMonth(), size: 8 });
  const box = h("div");
  const status = h("div", { "aria-live": "polite" });
  async function show() {
    await view(box, "billing run", async () => {
      let run = null;
      try { run = await api("GET", `/admin/billing/runs/${period.value}`); }
      catch (err) { if (err.status !== 404) throw err; }
      const { invoices = [] } = await api("GET", `/admin/billing/invoices?period=${period.value}`);
      return [
        run ? h("p", { "data-testid": "run" }, "Run ", workflowLink(run.workflow_id), " ", statusBadge(run.status),
                run.phase ? ` · phase ${run.phase}` : "",
                run.missing_hours ? ` · ${run.missing_hours} hours of usage still missing` : "",
                ` · ${Object.entries(run.counts || {}).map(([k, v]) => `${v} ${k}`).join(", ") || "no children yet"}`)
            : h("p", { class: "muted" }, `No billing run for ${period.value} yet.`),
        invoices.length ? table([
          { label: "Account", key: "account_id" },
          { label: "Invoice", render: (i) => i.id },
          { label: "Status", render: (i) => h("span", { "data-testid": `invoice-status-${i.account_id}` },
                                               statusBadge(i.status)) },
          { label: "Total", num: true, render: (i) => money(i.total_cents, i.currency) },
          { label: "Payment attempts", num: true, key: "payment_attempts" },
          { label: "Workflow", render: (i) => workflowLink(i.workflow_id) },
        ], invoices, { testid: "run-invoices" }) : empty("No invoices for this period."),
      ];
    });
  }
  const form = h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); show(); } },
    h("label", { for: "period" }, "Period (YYYY-MM)", period), h("button", { type: "submit" }, "Show"),
    h("button", { type: "button", class: "secondary", onclick: async () => {
      try { await api("POST", "/admin/billing/runs", { period: period.value }); status.replaceChildren(); }
      catch (err) { status.replaceChildren(failure(err)); }
      await show();
    } }, "Start run"),
    h("button", { type: "button", class: "secondary", onclick: async () => {
      try { await api("POST", "/admin/billing/runs", { period: period.value, rerun: true }); status.replaceChildren(); }
      catch (err) { status.replaceChildren(failure(err)); }
      await show();
    } }, "Retry failed"));
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Billing runs"), form, status, box));
  await show();
}

async function backupsView() {
  const box = h("div");
  const status = h("div", { "aria-live": "polite" });
  async function refresh() {
    await view(box, "backups", async () => {
      const { backups = [] } = await api("GET", "/backups");
      if (!backups.length) return empty("No backups yet: the daily schedule makes one at 03:00 UTC.");
      return table([
        { label: "Backup", render: (b) => b.backup_id },
        { label: "Store", key: "store" },
        { label: "Databases", render: (b) => b.dumps.map((d) => `${d.database} (${(d.size_bytes / 1e6).toFixed(1)} MB)`).join(", ") },
        { label: "Finished", render: (b) => (b.finished_at || "").slice(0, 19).replace("T", " ") },
        { label: "Workflow", render: (b) => workflowLink(b.workflow_id) },
      ], backups, { testid: "backups" });
    });
  }
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Backups"),
    h("button", { type: "button", onclick: async () => {
      try {
        const started = await api("POST", "/backups", {});
        status.replaceChildren("Backup started: ", workflowLink(started.workflow_id));
      } catch (err) { status.replaceChildren(failure(err)); }
    } }, "Back up now"), status, box));
  await refresh();
}

async function route() {
  if (!token("operator")) return signIn();
  try {
    platform = await api("GET", "/admin/overview");
  } catch (err) {
    setToken("operator", null);
    return signIn(err.status === 401 || err.status === 403 ? "That operator token is not valid." : err.message);
  }
  const nav = document.getElementById("nav");
  nav.hidden = false;
  document.getElementById("who").replaceChildren(h("button", { class: "secondary", type: "button",
    onclick: () => { setToken("operator", null); signIn(); } }, "Sign out"));
  const [, section, id] = (location.hash || "#/accounts").split("/");
  for (const a of nav.querySelectorAll("a")) {
    if (a.getAttribute("href") === `#/${section}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const views = { accounts: () => id ? accountView(decodeURIComponent(id)) : accountsView(), billing: billingView,
                  backups: backupsView };
  await (views[section] || accountsView)();
}

window.addEventListener("hashchange", route);
route();
