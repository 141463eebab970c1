// The JSON API, with the token kept for this browser tab only.
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export function token(kind) { return sessionStorage.getItem(`tcloud.${kind}`); }
export function setToken(kind, value) {
  if (value) sessionStorage.setItem(`tcloud.${kind}`, value); else sessionStorage.removeItem(`tcloud.${kind}`);
}

export async function call(kind, method, path, body) {
  const headers = { Accept: "application/json" };
  const bearer = token(kind);
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, "The platform could not be reached. Check your connection and try again.");
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.message) || `Request failed (${response.status})`);
  }
  return data;
}
