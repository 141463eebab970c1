// The customer portal: a few views over the Cloud-Ops-shaped JSON API, signed in with an API key.
import { call, setToken, token } from "./api.js";
import { identitiesView } from "./identities.js";
import { badge, empty, failure, h, money, table, view } from "./ui.js";

const api = (method, path, body) => call("customer", method, path, body);
const main = document.getElementById("main");
const charts = [];

function stateBadge(state) {
  const s = String(state || "").replace(/^(RESOURCE_STATE_|STATE_)/, "");
  const kind = /ACTIVE|FULFILLED|PAID/.test(s) ? "ok" : /FAIL|DELET|REJECT|VOID|UNCOLLECT/.test(s) ? "bad" : "warn";
  return badge(s.toLowerCase().replace(/_/g, " "), kind);
}

// ---- sign in ---------------------------------------------------------------------------------------
function signIn(message) {
  document.getElementById("nav").hidden = true;
  document.getElementById("who").replaceChildren();
  const input = h("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true,
                             size: 48, "aria-describedby": "signin-help" });
  const status = h("div", { "aria-live": "polite" }, message ? failure({ message }) : null);
  const form = h("form", { class: "inline", "data-testid": "signin", onsubmit: async (ev) => {
    ev.preventDefault();
    setToken("customer", input.value.trim());
    try {
      await api("GET", "/cloud/account");
      location.hash = "#/namespaces";
      route();
    } catch (err) {
      setToken("customer", null);
      status.replaceChildren(failure(err.status === 401 ? { message: "That API key is not valid." } : err));
      input.focus();
    }
  } }, h("label", { for: "api-key" }, "API key", input), h("button", { type: "submit" }, "Sign in"));
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Sign in"),
    h("p", { id: "signin-help", class: "muted" }, "Paste an API key of your account. It stays in this tab only."),
    form, status));
  input.focus();
}

// ---- namespaces ------------------------------------------------------------------------------------
async function waitForOperation(id, statusEl) {
  for (let i = 0; i < 120; i++) {
    const { asyncOperation: op } = await api("GET", `/cloud/operations/${encodeURIComponent(id)}`);
    const state = String(op.state || op.stateDeprecated || "");
    statusEl.replaceChildren("Operation ", stateBadge(state));
    if (/FULFILLED/.test(state)) return op;
    if (/FAILED|REJECTED|CANCELLED/.test(state)) throw new Error(op.failureReason || `operation ${state.toLowerCase()}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
  throw new Error("The operation is still running; refresh later.");
}

async function namespacesView() {
  const listBox = h("div");
  const opStatus = h("div", { "aria-live": "polite", "data-testid": "operation" });
  const name = h("input", { id: "ns-name", required: true, pattern: "[a-z][a-z0-9-]{0,37}[a-z0-9]", size: 24 });
  const retention = h("input", { id: "ns-retention", type: "number", min: 1, max: 90, value: 30, required: true });
  const form = h("form", { class: "inline", "data-testid": "create-namespace", onsubmit: async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const created = await api("POST", "/cloud/namespaces",
        { spec: { name: name.value.trim(), retentionDays: Number(retention.value) } });
      opStatus.replaceChildren(`Creating ${created.namespace}…`);
      await refresh();
      await waitForOperation(created.asyncOperation.id, opStatus);
      name.value = "";
    } catch (err) {
      opStatus.replaceChildren(failure(err));
    } finally {
      button.disabled = false;
      await refresh();
    }
  } },
  h("label", { for: "ns-name" }, "Name", name), h("label", { for: "ns-retention" }, "Retention (days)", retention),
  h("button", { type: "submit" }, "Create namespace"));

  async function remove(ns) {
    if (!confirm(`Delete namespace ${ns}? Its workflows are removed; its usage history is kept.`)) return;
    try {
      const res = await api("DELETE", `/cloud/namespaces/${encodeURIComponent(ns)}`);
      await refresh();
      await waitForOperation(res.asyncOperation.id, opStatus);
    } catch (err) {
      opStatus.replaceChildren(failure(err));
    }
    await refresh();
  }

  async function refresh() {
    await view(listBox, "namespaces", async () => {
      const { namespaces = [] } = await api("GET", "/cloud/namespaces");
      if (!namespaces.length) return empty("No namespaces yet. Create one above.");
      return table([
        // Its page in the customers' Temporal UI (sign-in there with an API key of the account).
        { label: "Namespace", render: (n) => /ACTIVE|UPDATING/.test(n.state) && n.endpoints && n.endpoints.webAddress
          ? h("a", { href: n.endpoints.webAddress, target: "_blank", rel: "noopener",
                     "data-testid": `ui-link-${n.namespace}`, title: "Open in the Temporal UI" }, n.namespace, " ↗")
          : n.namespace },
        { label: "State", render: (n) => h("span", { "data-testid": `state-${n.namespace}` }, stateBadge(n.state)) },
        { label: "Retention", num: true, render: (n) => `${n.spec.retentionDays} d` },
        { label: "Created", render: (n) => (n.createdTime || "").slice(0, 16).replace("T", " ") },
        { label: "", render: (n) => /DELET/.test(n.state) ? "" :
          h("button", { class: "danger", type: "button", onclick: () => remove(n.namespace),
                        "aria-label": `Delete ${n.namespace}` }, "Delete") },
      ], namespaces, { testid: "namespaces" });
    });
  }
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Namespaces"), form, opStatus, listBox));
  await refresh();
}

// ---- usage -----------------------------------------------------------------------------------------
const RECORD = { RECORD_TYPE_ACTIONS: "actions", RECORD_TYPE_ACTIVE_STORAGE: "active",
                 RECORD_TYPE_RETAINED_STORAGE: "retained" };

function isoDay(d) { return d.toISOString().slice(0, 10); }

function usageSeries(summaries, granularity) {
  // -> { labels: [...], perNamespace: {ns: {actions: [...], active: [...], retained: [...]}} }
  const labels = summaries.map((s) => granularity === "hour" ? s.startTime.slice(5, 13).replace("T", " ") + "h"
                                                               : s.startTime.slice(0, 10));
  const perNamespace = {};
  summaries.forEach((s, i) => {
    for (const group of s.recordGroups || []) {
      const ns = (group.groupBys || []).map((g) => g.value).join(" ") || "all";
      perNamespace[ns] ||= { actions: Array(summaries.length).fill(0), active: Array(summaries.length).fill(0),
                             retained: Array(summaries.length).fill(0) };
      for (const rec of group.records || []) {
        const key = RECORD[rec.type];
        if (key) perNamespace[ns][key][i] += Number(rec.value || 0);
      }
    }
  });
  return { labels, perNamespace, incomplete: summaries.filter((s) => s.incomplete).length };
}

function drawChart(canvas, type, labels, datasets, yTitle) {
  if (!window.Chart) throw new Error("The chart library did not load (run npm ci on the server).");
  charts.push(new window.Chart(canvas, { type, data: { labels, datasets },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
               scales: { x: { stacked: type === "bar" }, y: { stacked: type === "bar", beginAtZero: true,
                         title: { display: true, text: yTitle } } } } }));
}

async function usageView() {
  const today = new Date();
  const start = h("input", { id: "u-start", type: "date", value: isoDay(new Date(today.getTime() - 6 * 864e5)) });
  const end = h("input", { id: "u-end", type: "date", value: isoDay(today) });
  const gran = h("select", { id: "u-gran" }, h("option", { value: "day" }, "per day"),
                 h("option", { value: "hour" }, "per hour"));
  const out = h("div");
  const estimate = h("div", { "data-testid": "estimate" });
  async function load() {
    charts.splice(0).forEach((c) => c.destroy());
    await view(out, "usage", async () => {
      const endExclusive = isoDay(new Date(new Date(end.value).getTime() + 864e5));
      const q = new URLSearchParams({ startTimeInclusive: `${start.value}T00:00:00Z`,
                                      endTimeExclusive: `${endExclusive}T00:00:00Z`, granularity: gran.value });
      const { summaries = [] } = await api("GET", `/cloud/usage?${q}`);
      const { labels, perNamespace, incomplete } = usageSeries(summaries, gran.value);
      const names = Object.keys(perNamespace);
      if (!names.length) return empty("No usage recorded in this range yet.");
      const actions = h("canvas", { "aria-label": "Actions chart", role: "img", "data-testid": "actions-chart" });
      const storage = h("canvas", { "aria-label": "Storage chart", role: "img" });
      const content = [
        incomplete ? h("p", { class: "muted" }, `${incomplete} period(s) not fully collected yet.`) : null,
        h("h3", {}, "Actions"), h("div", { class: "chart-box" }, actions),
        h("h3", {}, "Storage (GB-hours)"), h("div", { class: "chart-box" }, storage),
        table([{ label: "Namespace", key: "ns" }, { label: "Actions", key: "actions", num: true },
               { label: "Active GBh", key: "active", num: true }, { label: "Retained GBh", key: "retained", num: true }],
              names.map((ns) => ({ ns, actions: sum(perNamespace[ns].actions).toLocaleString("en-US"),
                                   active: sum(perNamespace[ns].active).toFixed(3),
                                   retained: sum(perNamespace[ns].retained).toFixed(3) })),
              { testid: "usage-table" }),
      ];
      queueMicrotask(() => {
        drawChart(actions, "bar", labels, names.map((ns) => ({ label: ns, data: perNamespace[ns].actions })), "actions");
        drawChart(storage, "line", labels, names.flatMap((ns) => [
          { label: `${ns} active`, data: perNamespace[ns].active },
          { label: `${ns} retained`, data: perNamespace[ns].retained }]), "GB-hours");
      });
      return content;
    });
  }
  main.replaceChildren(
    h("section", { class: "card" }, h("h2", {}, "Month to date"), estimate),
    h("section", { class: "card" }, h("h2", {}, "Usage"),
      h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); load(); } },
        h("label", { for: "u-start" }, "From", start), h("label", { for: "u-end" }, "To", end),
        h("label", { for: "u-gran" }, "Granularity", gran), h("button", { type: "submit" }, "Show")), out));
  view(estimate, "estimate", async () => {
    const up = await api("GET", "/cloud/billing/upcoming");
    return [h("div", { class: "figure", "data-testid": "estimate-total" }, money(up.total_cents, up.currency)),
            h("div", { class: "muted" }, `${up.period}, ${up.plan} plan: estimated from usage collected so far`)];
  });
  await load();
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);

// ---- invoices --------------------------------------------------------------------------------------
async function invoicesView(id) {
  const box = h("div");
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, id ? "Invoice" : "Invoices"), box));
  if (id) {
    await view(box, "invoice", async () => {
      const inv = await api("GET", `/cloud/billing/invoices/${encodeURIComponent(id)}`);
      return [
        h("p", {}, `Period ${inv.period} · `, stateBadge(inv.status), " · ",
          h("strong", { "data-testid": "invoice-total" }, money(inv.total_cents, inv.currency))),
        inv.last_payment_error ? failure({ message: `Last payment attempt failed: ${inv.last_payment_error}` }) : null,
        inv.hosted_invoice_url ? h("p", {}, h("a", { href: inv.hosted_invoice_url, target: "_blank",
                                                     rel: "noopener" }, "Open the Stripe invoice")) : null,
        table([{ label: "Line", key: "description" }, { label: "Quantity", render: (l) => `${l.quantity} ${l.unit}`,
                 num: true },
               { label: "Amount", num: true, render: (l) => money(l.amount_cents, inv.currency) }],
              inv.lines || [], { testid: "invoice-lines" }),
        h("p", {}, h("a", { href: "#/invoices" }, "← All invoices")),
      ];
    });
    return;
  }
  await view(box, "invoices", async () => {
    const { invoices = [] } = await api("GET", "/cloud/billing/invoices");
    if (!invoices.length) return empty("No invoices yet: the first one comes after your first full month.");
    return table([
      { label: "Period", render: (i) => h("a", { href: `#/invoices/${i.id}` }, i.period) },
      { label: "Status", render: (i) => stateBadge(i.status) },
      { label: "Total", num: true, render: (i) => money(i.total_cents, i.currency) },
    ], invoices, { testid: "invoices" });
  });
}

// ---- API keys --------------------------------------------------------------------------------------
async function keysView() {
  const box = h("div");
  const shown = h("div", { "aria-live": "polite" });
  const nameInput = h("input", { id: "key-name", required: true, maxlength: 64 });
  const form = h("form", { class: "inline", "data-testid": "create-key", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const res = await api("POST", "/cloud/api-keys", { spec: { displayName: nameInput.value.trim() } });
      shown.replaceChildren(h("p", {}, "Copy this key now: it is shown only once."),
                            h("div", { class: "secret", "data-testid": "new-key" }, res.token));
      nameInput.value = "";
      await refresh();
    } catch (err) { shown.replaceChildren(failure(err)); }
  } }, h("label", { for: "key-name" }, "Name", nameInput), h("button", { type: "submit" }, "Create key"));
  async function revoke(key) {
    if (!confirm(`Revoke the key "${key.spec.displayName}"? Programs using it stop working.`)) return;
    try { await api("DELETE", `/cloud/api-keys/${encodeURIComponent(key.id)}`); }
    catch (err) { shown.replaceChildren(failure(err)); }
    await refresh();
  }
  async function refresh() {
    await view(box, "API keys", async () => {
      const { apiKeys = [] } = await api("GET", "/cloud/api-keys");
      if (!apiKeys.length) return empty("No API keys.");
      return table([
        { label: "Name", render: (k) => k.spec.displayName },
        { label: "Id", render: (k) => k.id },
        { label: "State", render: (k) => stateBadge(k.state) },
        { label: "Created", render: (k) => (k.createdTime || "").slice(0, 16).replace("T", " ") },
        { label: "", render: (k) => h("button", { class: "danger", type: "button",
            "aria-label": `Revoke ${k.spec.displayName}`, onclick: () => revoke(k) }, "Revoke") },
      ], apiKeys, { testid: "api-keys" });
    });
  }
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "API keys"), form, shown, box));
  await refresh();
}

// ---- spend alerts ----------------------------------------------------------------------------------
async function alertsView() {
  const box = h("div");
  const channelsBox = h("div");
  const sent = h("div");
  const status = h("div", { "aria-live": "polite" });
  const amount = h("input", { id: "alert-amount", type: "number", min: 1, step: "0.01", required: true });
  const hookUrl = h("input", { id: "alert-webhook", type: "url", size: 48, placeholder: "https://…" });
  const email = h("input", { id: "alert-email", type: "email", size: 32 });
  let cfg = { thresholds_cents: [], webhook_url: null, email: null };
  // PUT replaces the whole configuration: always send every field.
  async function save(patch) {
    const body = { thresholds_cents: cfg.thresholds_cents, webhook_url: cfg.webhook_url, email: cfg.email, ...patch };
    try {
      cfg = await api("PUT", "/cloud/billing/alerts", body);
      status.replaceChildren();
    } catch (err) { status.replaceChildren(failure(err)); }
    await refresh();
  }
  const form = h("form", { class: "inline", "data-testid": "create-alert", onsubmit: async (ev) => {
    ev.preventDefault();
    await save({ thresholds_cents: [...cfg.thresholds_cents, Math.round(Number(amount.value) * 100)] });
    amount.value = "";
  } }, h("label", { for: "alert-amount" }, "Notify me when the month reaches (USD)", amount),
  h("button", { type: "submit" }, "Add alert"));
  const channels = h("form", { class: "inline", "data-testid": "alert-channels", onsubmit: async (ev) => {
    ev.preventDefault();
    await save({ webhook_url: hookUrl.value.trim() || null, email: email.value.trim() || null });
  } }, h("label", { for: "alert-webhook" }, "Webhook URL", hookUrl),
  h("label", { for: "alert-email" }, "Email", email), h("button", { type: "submit" }, "Save where alerts go"));
  const deliveryBadge = (d) => h("span", { title: d.last_error || d.target },
    `${d.channel} `, badge(`${d.state}${d.attempts > 1 ? ` (${d.attempts} tries)` : ""}`,
                           d.state === "delivered" ? "ok" : d.state === "failed" ? "bad" : "warn"), " ");
  async function refresh() {
    await view(box, "alerts", async () => {
      cfg = await api("GET", "/cloud/billing/alerts");
      hookUrl.value = cfg.webhook_url || "";
      email.value = cfg.email || "";
      channelsBox.replaceChildren(cfg.webhook_secret ? h("p", { class: "muted" }, "Webhooks are signed with ",
        h("code", { "data-testid": "webhook-secret" }, cfg.webhook_secret),
        " (header Tcloud-Signature). ", h("button", { class: "secondary", type: "button",
          onclick: () => save({ rotate_webhook_secret: true }) }, "Rotate secret")) : "");
      sent.replaceChildren(cfg.notifications.length ? table([
        { label: "Period", render: (n) => n.period },
        { label: "Threshold", num: true, render: (n) => money(n.threshold_cents) },
        { label: "Estimate", num: true, render: (n) => money(n.estimate_cents) },
        { label: "Notified", render: (n) => n.notified_at.slice(0, 16).replace("T", " ") },
        { label: "Sent to", render: (n) => n.deliveries.length ? n.deliveries.map(deliveryBadge) : "nowhere" },
      ], cfg.notifications, { testid: "alert-notifications" }) : empty("No alert has been reached yet."));
      const current = cfg.thresholds_cents;
      if (!current.length) return empty("No spend alerts.");
      return table([{ label: "Threshold", num: true, render: (c) => money(c) },
                    { label: "", render: (c) => h("button", { class: "danger", type: "button",
                      "aria-label": `Remove the ${money(c)} alert`,
                      onclick: () => save({ thresholds_cents: current.filter((x) => x !== c) }) }, "Remove") }],
                   current, { testid: "alerts" });
    });
  }
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Spend alerts"), form, status, box,
    h("h3", {}, "Where alerts go"), channels, channelsBox, h("h3", {}, "Notifications"), sent));
  await refresh();
}

// ---- payment method --------------------------------------------------------------------------------
// The card is collected and confirmed by Stripe.js (a SetupIntent): its number goes from this page to Stripe only.
// The platform gets the SetupIntent's id back and keeps brand, last 4 digits and expiry.
const stripeScripts = {};
function loadStripeJs(url) {
  stripeScripts[url] ||= new Promise((resolve, reject) => {
    if (window.Stripe) return resolve(window.Stripe);
    const script = document.createElement("script");
    script.src = url;
    script.onload = () => window.Stripe ? resolve(window.Stripe) : reject(new Error("Stripe.js did not load."));
    script.onerror = () => { delete stripeScripts[url]; reject(new Error("Stripe.js could not be loaded.")); };
    document.head.append(script);
  });
  return stripeScripts[url];
}

function cardText(pm) {
  return `${pm.brand} •••• ${pm.last4}, expires ${String(pm.expMonth).padStart(2, "0")}/${pm.expYear}`;
}

async function paymentView() {
  const onFile = h("div", { "aria-live": "polite" });
  const status = h("div", { "aria-live": "polite", "data-testid": "card-status" });
  const cardBox = h("div", { id: "card-element", class: "card-element", "data-testid": "card-element" });
  const button = h("button", { type: "submit", disabled: true }, "Save card");
  let stripe = null, card = null, clientSecret = null;
  const form = h("form", { "data-testid": "add-card", onsubmit: async (ev) => {
    ev.preventDefault();
    if (!stripe || !card) return;
    button.disabled = true;
    status.replaceChildren("Saving the card…");
    try {
      const result = await stripe.confirmCardSetup(clientSecret, { payment_method: { card } });
      if (result.error) throw new Error(result.error.message || "The card was not accepted.");
      const saved = await api("POST", "/cloud/billing/payment-method", { setupIntentId: result.setupIntent.id });
      status.replaceChildren(h("p", {}, "Card saved.",
        saved.retryingInvoices && saved.retryingInvoices.length
          ? ` Paying the overdue invoice(s) of ${saved.retryingInvoices.join(", ")} with it.` : ""));
      if (typeof card.clear === "function") card.clear();
      await refresh();
      await prepare();  // a SetupIntent is used once: ready another for a later change
    } catch (err) {
      status.replaceChildren(failure(err));
      await prepare().catch(() => {});
    } finally {
      button.disabled = false;
    }
  } }, h("label", { for: "card-element" }, "Card"), cardBox, h("p", {}, button));

  async function refresh() {
    await view(onFile, "card on file", async () => {
      try {
        const pm = await api("GET", "/cloud/billing/payment-method");
        return h("p", {}, "Invoices are charged to ", h("strong", { "data-testid": "card-on-file" }, cardText(pm)), ".");
      } catch (err) {
        if (err.status === 404) return empty("No card on file: add one below so invoices can be paid.");
        throw err;
      }
    });
  }

  async function prepare() {
    const setup = await api("POST", "/cloud/billing/payment-method/setup");
    clientSecret = setup.clientSecret;
    if (!stripe) {
      const Stripe = await loadStripeJs(setup.stripeJsUrl);
      stripe = Stripe(setup.publishableKey);
      card = stripe.elements().create("card");
      card.mount(cardBox);
    }
    button.disabled = false;
  }

  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, "Payment method"), onFile,
    h("h3", {}, "Add or replace the card"),
    h("p", { class: "muted" }, "The card number goes to Stripe directly; we keep only its brand, last 4 digits and expiry."),
    form, status));
  await refresh();
  try { await prepare(); } catch (err) { status.replaceChildren(failure(err)); }
}

// ---- routing ---------------------------------------------------------------------------------------
// Each navigation renders once: a route() still waiting for the account when a newer one starts (a click right after
// signing in) stops there instead of rendering the same view a second time over the first.
let routeSeq = 0;
async function route() {
  const mine = ++routeSeq;
  if (!token("customer")) return signIn();
  let account;
  try {
    account = await api("GET", "/cloud/account");
  } catch (err) {
    if (mine !== routeSeq) return;
    setToken("customer", null);
    return signIn(err.status === 401 ? "Your API key is no longer valid." : err.message);
  }
  if (mine !== routeSeq) return;
  const nav = document.getElementById("nav");
  nav.hidden = false;
  const acct = account.account || account;
  document.getElementById("who").replaceChildren(`${acct.name || acct.id} `,
    h("button", { class: "secondary", type: "button", onclick: () => { setToken("customer", null); signIn(); } },
      "Sign out"));
  const [, section, id] = (location.hash || "#/namespaces").split("/");
  for (const a of nav.querySelectorAll("a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${section}`);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  charts.splice(0).forEach((c) => c.destroy());
  const views = { namespaces: namespacesView, usage: usageView, invoices: () => invoicesView(id),
                  keys: keysView, alerts: alertsView, payment: paymentView,
                  users: () => identitiesView(main, "user", id),
                  "service-accounts": () => identitiesView(main, "service_account", id) };
  await (views[section] || namespacesView)();
}

window.addEventListener("hashchange", route);
route();
