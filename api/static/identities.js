// Users and service accounts: their account role, namespace access and API keys, over the Cloud Ops JSON routes.
// Account admins manage them; the other roles see what the API lets them read and no management controls (the API
// refuses anyway, and its message is shown whenever it does).
import { call } from "./api.js";
import { badge, empty, failure, h, table, view } from "./ui.js";

const api = (method, path, body) => call("customer", method, path, body);
const enc = encodeURIComponent;

const ROLES = { ROLE_ADMIN: "Admin", ROLE_DEVELOPER: "Developer", ROLE_FINANCE_ADMIN: "Finance admin",
                ROLE_READ: "Read-only" };
const PERMISSIONS = { PERMISSION_ADMIN: "admin", PERMISSION_WRITE: "write", PERMISSION_READ: "read" };

const KINDS = {
  user: {
    section: "users", title: "Users", one: "user", list: "/cloud/users", listKey: "users", getKey: "user",
    path: (id) => `/cloud/users/${enc(id)}`, ownerType: "OWNER_TYPE_USER",
    accessPath: (ns, id) => `/cloud/namespaces/${enc(ns)}/users/${enc(id)}/access`,
    label: (i) => i.spec.email,
  },
  service_account: {
    section: "service-accounts", title: "Service accounts", one: "service account", list: "/cloud/service-accounts",
    listKey: "serviceAccount", getKey: "serviceAccount", ownerType: "OWNER_TYPE_SERVICE_ACCOUNT",
    path: (id) => `/cloud/service-accounts/${enc(id)}`,
    accessPath: (ns, id) => `/cloud/namespaces/${enc(ns)}/service-accounts/${enc(id)}/access`,
    label: (i) => i.spec.name,
  },
};

const roleOf = (identity) => ((identity.spec.access || {}).accountAccess || {}).role || "ROLE_UNSPECIFIED";
const roleText = (role) => ROLES[role] || String(role).replace(/^ROLE_/, "").toLowerCase();
const shortTime = (t) => (t || "").slice(0, 16).replace("T", " ");

// {namespace: "PERMISSION_…"} of an identity.
function accessOf(identity) {
  const found = {};
  for (const [ns, a] of Object.entries((identity.spec.access || {}).namespaceAccesses || {})) found[ns] = a.permission;
  return found;
}

// The Access message for an update: the role given and the namespace access as it is.
function accessBody(role, namespaceAccess) {
  const namespaceAccesses = {};
  for (const [ns, permission] of Object.entries(namespaceAccess)) namespaceAccesses[ns] = { permission };
  return { accountAccess: { role }, namespaceAccesses };
}

function accessText(identity) {
  const entries = Object.entries(accessOf(identity));
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return entries.map(([ns, p]) => h("div", {}, `${ns}: ${PERMISSIONS[p] || p}`));
}

function select(id, options, value, extra = {}) {
  return h("select", { id, ...extra }, Object.entries(options).map(([v, text]) =>
    h("option", { value: v, selected: v === value }, text)));
}

// Every page of a Cloud Ops listing.
async function listAll(path, key) {
  const items = [];
  let pageToken = "";
  do {
    const q = new URLSearchParams({ pageSize: "1000" });
    if (pageToken) q.set("pageToken", pageToken);
    const page = await api("GET", `${path}?${q}`);
    items.push(...(page[key] || []));
    pageToken = page.nextPageToken || "";
  } while (pageToken);
  return items;
}

// The caller: its identity's id and whether its account role manages identities (admins, as the API decides).
async function caller() {
  const me = await api("GET", "/cloud/current-identity");
  const owner = me.user || me.serviceAccount || null;
  const role = owner ? roleOf(owner) : "ROLE_UNSPECIFIED";
  return { id: owner ? owner.id : "", role, admin: role === "ROLE_ADMIN" };
}

// The account's namespaces that access can be given to.
async function grantableNamespaces() {
  const { namespaces = [] } = await api("GET", "/cloud/namespaces?pageSize=1000");
  return namespaces.filter((n) => !/DELET/.test(n.state || "")).map((n) => n.namespace).sort();
}

function readOnlyNote(me, kind) {
  const what = kind === "user" ? "users: only admins invite, change or delete them"
                               : "service accounts: only admins create, change or delete them";
  return h("p", { class: "muted", "data-testid": "read-only-note" },
    `Your account role (${roleText(me.role)}) does not manage ${what}.`);
}

// ---- the list ----------------------------------------------------------------------------------------------------
async function listView(main, kind) {
  const K = KINDS[kind];
  const box = h("div");
  const controls = h("div");
  const status = h("div", { "aria-live": "polite", "data-testid": "identity-status" });
  main.replaceChildren(h("section", { class: "card" }, h("h2", {}, K.title), controls, status, box));
  let me = null;
  let drawnFor = null;

  async function remove(identity) {
    if (!confirm(`Delete the ${K.one} ${K.label(identity)}? Its API keys are revoked with it.`)) return;
    try {
      await api("DELETE", `${K.path(identity.id)}?resourceVersion=${enc(identity.resourceVersion)}`);
      status.replaceChildren(`Deleted ${K.label(identity)}.`);
    } catch (err) { status.replaceChildren(failure(err)); }
    await refresh();
  }

  // The caller's role is read again at every redraw: controls follow it (the API decides all the same).
  async function refresh() {
    await view(box, K.title.toLowerCase(), async () => {
      me = await caller();
      if (drawnFor !== me.role) {
        drawnFor = me.role;
        let namespaces = [];
        if (me.admin) {
          try { namespaces = await grantableNamespaces(); } catch (err) { status.replaceChildren(failure(err)); }
        }
        controls.replaceChildren(me.admin ? createForm(kind, namespaces, status, refresh)
                                          : readOnlyNote(me, kind));
      }
      const identities = await listAll(K.list, K.listKey);
      const keyCounts = {};
      if (me.admin) {  // admins see every key; the others only their own, so no count is shown to them
        for (const k of await listAll("/cloud/api-keys", "apiKeys")) {
          keyCounts[k.spec.ownerId] = (keyCounts[k.spec.ownerId] || 0) + 1;
        }
      }
      if (!identities.length) return empty(`No ${K.title.toLowerCase()} yet.`);
      return table([
        { label: kind === "user" ? "Email" : "Name", render: (i) => h("a", { href: `#/${K.section}/${enc(i.id)}`,
            "data-testid": `identity-${i.id}` }, K.label(i)) },
        kind === "user" ? null : { label: "Description", render: (i) => i.spec.description || "" },
        { label: "Role", render: (i) => h("span", { "data-testid": `role-${i.id}` }, roleText(roleOf(i))) },
        { label: "Namespace access", render: accessText },
        me.admin ? { label: "API keys", num: true, render: (i) => String(keyCounts[i.id] || 0) } : null,
        { label: "Created", render: (i) => shortTime(i.createdTime) },
        me.admin ? { label: "", render: (i) => h("button", { class: "danger", type: "button",
            "aria-label": `Delete ${K.label(i)}`, onclick: () => remove(i) }, "Delete") } : null,
      ].filter(Boolean), identities, { testid: K.section });
    });
  }

  await refresh();
}

// The invite / create form: who, the account role and (optionally) access to one namespace.
function createForm(kind, namespaces, status, refresh) {
  const K = KINDS[kind];
  const p = kind === "user" ? "user" : "sa";
  const fields = kind === "user"
    ? { email: h("input", { id: "user-email", type: "email", required: true, size: 28, maxlength: 254 }) }
    : { name: h("input", { id: "sa-name", required: true, size: 20, maxlength: 200 }),
        description: h("input", { id: "sa-description", size: 28, maxlength: 1000 }) };
  const role = select(`${p}-role`, ROLES, "ROLE_DEVELOPER");
  const ns = select(`${p}-namespace`, { "": "— none —", ...Object.fromEntries(namespaces.map((n) => [n, n])) }, "");
  const permission = select(`${p}-permission`, PERMISSIONS, "PERMISSION_WRITE");
  const form = h("form", { class: "inline", "data-testid": `create-${K.section}`, onsubmit: async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    const namespaceAccess = ns.value ? { [ns.value]: permission.value } : {};
    const spec = kind === "user"
      ? { email: fields.email.value.trim(), access: accessBody(role.value, namespaceAccess) }
      : { name: fields.name.value.trim(), description: fields.description.value.trim(),
          access: accessBody(role.value, namespaceAccess) };
    try {
      const made = await api("POST", K.list, { spec });
      const id = made.userId || made.serviceAccountId;
      const name = kind === "user" ? spec.email : spec.name;
      status.replaceChildren(kind === "user" ? `Invited ${name}. ` : `Created ${name}. `,
        h("a", { href: `#/${K.section}/${enc(id)}` }, "Manage its access and API keys →"));
      for (const input of Object.values(fields)) input.value = "";
    } catch (err) {
      status.replaceChildren(failure(err));
    } finally {
      button.disabled = false;
    }
    await refresh();
  } },
  kind === "user" ? h("label", { for: "user-email" }, "Email", fields.email)
                  : [h("label", { for: "sa-name" }, "Name", fields.name),
                     h("label", { for: "sa-description" }, "Description", fields.description)],
  h("label", { for: `${p}-role` }, "Account role", role),
  h("label", { for: `${p}-namespace` }, "Namespace access", ns),
  h("label", { for: `${p}-permission` }, "Permission", permission),
  h("button", { type: "submit" }, kind === "user" ? "Invite user" : "Create service account"));
  return form;
}

// ---- one user or service account -------------------------------------------------------------------------------
async function detailView(main, kind, id) {
  const K = KINDS[kind];
  const status = h("div", { "aria-live": "polite", "data-testid": "identity-status" });
  const head = h("div");
  const accessBox = h("div");
  const keysBox = h("div");
  const secret = h("div", { "aria-live": "polite" });
  main.replaceChildren(
    h("section", { class: "card" }, h("p", {}, h("a", { href: `#/${K.section}` }, `← All ${K.title.toLowerCase()}`)),
      head, status),
    h("section", { class: "card" }, h("h2", {}, "Namespace access"), accessBox),
    h("section", { class: "card" }, h("h2", {}, "API keys"), secret, keysBox));
  let me = null;
  let namespaces = [];

  // Run a change, redraw from what the API now says, then tell how it went (the API's message if it refused).
  async function act(what, done) {
    let outcome = done || "";
    try {
      await what();
    } catch (err) {
      outcome = failure(err);
    }
    await refresh();
    status.replaceChildren(outcome);
  }

  // The caller's role is read again at every redraw: controls follow it (the API decides all the same).
  async function refresh() {
    let identity;
    try {
      me = await caller();
      namespaces = me.admin ? await grantableNamespaces() : [];
      identity = (await api("GET", K.path(id)))[K.getKey];
    } catch (err) {
      head.replaceChildren(h("h2", {}, `The ${K.one} ${id}`), failure(err));
      accessBox.replaceChildren();
      keysBox.replaceChildren();
      return;
    }
    drawHead(identity);
    drawAccess(identity);
    await drawKeys(identity);
  }

  function drawHead(identity) {
    const role = roleOf(identity);
    const facts = h("p", { class: "muted" }, `Id ${identity.id} · role `,
      h("strong", { "data-testid": "identity-role" }, roleText(role)), ` · version ${identity.resourceVersion}`,
      ` · created ${shortTime(identity.createdTime)}`);
    const title = h("h2", { "data-testid": "identity-name" }, kind === "user" ? `User ${K.label(identity)}`
                                                                              : `Service account ${K.label(identity)}`);
    if (!me.admin) {
      head.replaceChildren(...[title, identity.spec.description ? h("p", {}, identity.spec.description) : null, facts,
                               readOnlyNote(me, kind)].filter(Boolean));
      return;
    }
    const roleSelect = select("identity-role-select", ROLES, role);
    const fields = kind === "user"
      ? { email: h("input", { id: "identity-email", type: "email", required: true, value: identity.spec.email,
                              size: 28 }) }
      : { name: h("input", { id: "identity-sa-name", required: true, value: identity.spec.name, size: 20 }),
          description: h("input", { id: "identity-description", value: identity.spec.description || "", size: 28 }) };
    const form = h("form", { class: "inline", "data-testid": "edit-identity", onsubmit: (ev) => {
      ev.preventDefault();
      const access = accessBody(roleSelect.value, accessOf(identity));
      const spec = kind === "user" ? { email: fields.email.value.trim(), access }
                                   : { name: fields.name.value.trim(), description: fields.description.value, access };
      act(() => api("POST", K.path(id), { spec, resourceVersion: identity.resourceVersion }), "Saved.");
    } },
    kind === "user" ? h("label", { for: "identity-email" }, "Email", fields.email)
                    : [h("label", { for: "identity-sa-name" }, "Name", fields.name),
                       h("label", { for: "identity-description" }, "Description", fields.description)],
    h("label", { for: "identity-role-select" }, "Account role", roleSelect),
    h("button", { type: "submit" }, "Save"),
    h("button", { type: "button", class: "danger", "aria-label": `Delete ${K.label(identity)}`, onclick: async () => {
      if (!confirm(`Delete the ${K.one} ${K.label(identity)}? Its API keys are revoked with it.`)) return;
      try {
        await api("DELETE", `${K.path(id)}?resourceVersion=${enc(identity.resourceVersion)}`);
        location.hash = `#/${K.section}`;
      } catch (err) { status.replaceChildren(failure(err)); }
    } }, `Delete ${K.one}`));
    head.replaceChildren(title, facts, form);
  }

  function setAccess(identity, ns, permission) {
    const body = { access: permission ? { permission } : {}, resourceVersion: identity.resourceVersion };
    return act(() => api("POST", K.accessPath(ns, id), body),
               permission ? `Access to ${ns} set to ${PERMISSIONS[permission]}.` : `Access to ${ns} removed.`);
  }

  function drawAccess(identity) {
    const current = accessOf(identity);
    const rows = Object.entries(current).map(([ns, permission]) => ({ ns, permission }));
    const listing = rows.length ? table([
      { label: "Namespace", render: (r) => r.ns },
      { label: "Permission", render: (r) => me.admin
          ? select(`permission-${r.ns}`, PERMISSIONS, r.permission, { "aria-label": `Permission on ${r.ns}`,
              "data-testid": `permission-${r.ns}`, onchange: (ev) => setAccess(identity, r.ns, ev.target.value) })
          : h("span", { "data-testid": `permission-${r.ns}` }, PERMISSIONS[r.permission] || r.permission) },
      me.admin ? { label: "", render: (r) => h("button", { class: "danger", type: "button",
          "aria-label": `Remove access to ${r.ns}`, onclick: () => setAccess(identity, r.ns, "") }, "Remove") } : null,
    ].filter(Boolean), rows, { testid: "namespace-access" }) : empty("No namespace access.");
    const free = namespaces.filter((n) => !(n in current));
    if (!me.admin || !free.length) {
      accessBox.replaceChildren(listing, ...(me.admin ? [h("p", { class: "muted" },
        namespaces.length ? "It has access to every namespace of the account." : "The account has no namespaces.")]
        : []));
      return;
    }
    const ns = select("grant-namespace", Object.fromEntries(free.map((n) => [n, n])), free[0]);
    const permission = select("grant-permission", PERMISSIONS, "PERMISSION_WRITE");
    const form = h("form", { class: "inline", "data-testid": "grant-access", onsubmit: (ev) => {
      ev.preventDefault();
      setAccess(identity, ns.value, permission.value);
    } }, h("label", { for: "grant-namespace" }, "Namespace", ns),
    h("label", { for: "grant-permission" }, "Permission", permission), h("button", { type: "submit" }, "Grant access"));
    accessBox.replaceChildren(listing, form);
  }

  async function drawKeys(identity) {
    if (!me.admin && me.id !== id) {
      keysBox.replaceChildren(empty("Only admins see the API keys of other users and service accounts."));
      return;
    }
    const name = h("input", { id: "identity-key-name", required: true, maxlength: 200 });
    const form = h("form", { class: "inline", "data-testid": "create-identity-key", onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const made = await api("POST", "/cloud/api-keys", { spec: { ownerId: id, ownerType: K.ownerType,
                                                                   displayName: name.value.trim() } });
        secret.replaceChildren(h("p", {}, `Copy this key of ${K.label(identity)} now: it is shown only once.`),
                               h("div", { class: "secret", "data-testid": "new-key" }, made.token));
        name.value = "";
        status.replaceChildren();
      } catch (err) { secret.replaceChildren(failure(err)); }
      await drawKeys(identity);
    } }, h("label", { for: "identity-key-name" }, "Key name", name), h("button", { type: "submit" }, "Create key"));

    const keyAct = async (what) => {
      try { await what(); secret.replaceChildren(); } catch (err) { secret.replaceChildren(failure(err)); }
      await drawKeys(identity);
    };
    const toggle = (k) => keyAct(() => api("POST", `/cloud/api-keys/${enc(k.id)}`, {
      spec: { displayName: k.spec.displayName || "", description: k.spec.description || "", disabled: !k.spec.disabled },
      resourceVersion: k.resourceVersion }));
    const remove = (k) => {
      if (!confirm(`Delete the key "${k.spec.displayName}"? Programs using it stop working.`)) return;
      return keyAct(() => api("DELETE", `/cloud/api-keys/${enc(k.id)}?resourceVersion=${enc(k.resourceVersion)}`));
    };
    await view(keysBox, "API keys", async () => {
      const q = new URLSearchParams({ ownerId: id, pageSize: "1000" });
      const { apiKeys = [] } = await api("GET", `/cloud/api-keys?${q}`);
      return [form, apiKeys.length ? table([
        { label: "Name", render: (k) => k.spec.displayName || "" },
        { label: "Id", render: (k) => k.id },
        { label: "State", render: (k) => h("span", { "data-testid": `key-state-${k.spec.displayName}` },
            k.spec.disabled ? badge("disabled", "bad") : badge("enabled", "ok")) },
        { label: "Expires", render: (k) => k.spec.expiryTime ? shortTime(k.spec.expiryTime) : "never" },
        { label: "Created", render: (k) => shortTime(k.createdTime) },
        { label: "", render: (k) => [
          h("button", { class: "secondary", type: "button", onclick: () => toggle(k),
                        "aria-label": `${k.spec.disabled ? "Enable" : "Disable"} ${k.spec.displayName}` },
            k.spec.disabled ? "Enable" : "Disable"), " ",
          h("button", { class: "danger", type: "button", onclick: () => remove(k),
                        "aria-label": `Delete key ${k.spec.displayName}` }, "Delete")] },
      ], apiKeys, { testid: "identity-keys" }) : empty("No API keys.")];
    });
  }

  await refresh();
}

// `#/users`, `#/users/<id>`, `#/service-accounts`, `#/service-accounts/<id>`.
export function identitiesView(main, kind, id) {
  return id ? detailView(main, kind, decodeURIComponent(id)) : listView(main, kind);
}
