// The reporting API, same-origin with the session cookie. Every call answers
// {ok, status, data}: a 404 or a 400 is information for the page, not an exception.

export class ApiError extends Error {
  constructor(status, data, url) {
    super(describe(status, data));
    this.status = status;
    this.data = data;
    this.url = url;
  }
}

function describe(status, data) {
  if (status === 401 || status === 403) return "Your session has ended: log in again.";
  if (status === 429) return "Too many requests: wait a moment and reload.";
  if (data && typeof data === "object") {
    if (data.detail) return String(data.detail);
    return Object.entries(data)
      .map(([field, problems]) => `${field}: ${[].concat(problems).join(" ")}`)
      .join("; ");
  }
  return `The API answered ${status}.`;
}

/** The URL of an API path with the given parameters (empty ones left out). */
export function apiUrl(path, params = {}) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) q.set(key, value);
  }
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}

const RETRIES = 2; // a 429 (the user's reports running at once, or the rate limit)
const MAX_WAIT_MS = 5000;

export async function getJson(path, params = {}, { signal } = {}) {
  const url = apiUrl(path, params);
  let response;
  for (let attempt = 0; ; attempt += 1) {
    response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      signal,
    });
    if (response.status !== 429 || attempt >= RETRIES) break;
    // Wait as the API asks (Retry-After, in seconds), briefly, then ask again.
    const wait = Math.min(MAX_WAIT_MS, 1000 * (Number(response.headers.get("Retry-After")) || 1));
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data, url };
}

/** Like getJson, but a non-2xx answer throws an ApiError. */
export async function mustJson(path, params = {}, options = {}) {
  const answer = await getJson(path, params, options);
  if (!answer.ok) throw new ApiError(answer.status, answer.data, answer.url);
  return answer.data;
}
