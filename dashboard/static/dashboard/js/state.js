// The dashboard's whole state lives in the query string: parse it, write it back,
// and turn a preset into a UTC range anchored on the newest hour with data.

export const PRESETS = ["24h", "7d", "28d", "90d", "month", "last-month", "12m", "all"];
export const DEFAULTS = {
  site: "",
  range: "28d",
  from: "",
  to: "",
  compare: "",
  granularity: "",
  strategy: "both",
  page: "",
  order: "-views",
  prefix: "",
  limit: "20",
  cursor: "",
};
const COMPARES = ["", "previous_period", "previous_year"];
const GRANULARITIES = ["", "hour", "interval", "day", "month", "year"];
const STRATEGIES = ["both", "mobile", "desktop"];
const HOUR = 3600 * 1000;
const DAY = 24 * HOUR;

/** The state a query string describes; values it does not know fall back to defaults. */
export function parseState(search) {
  const q = new URLSearchParams(search);
  const state = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    if (q.has(key)) state[key] = q.get(key).trim();
  }
  if (state.from && state.to) state.range = "custom";
  else if (!PRESETS.includes(state.range)) state.range = DEFAULTS.range;
  if (state.range !== "custom") state.from = state.to = "";
  if (!COMPARES.includes(state.compare)) state.compare = "";
  if (!GRANULARITIES.includes(state.granularity)) state.granularity = "";
  if (!STRATEGIES.includes(state.strategy)) state.strategy = "both";
  if (!/^\d+$/.test(state.page)) state.page = "";
  if (!/^[1-9]\d{0,3}$/.test(state.limit)) state.limit = DEFAULTS.limit;
  return state;
}

/** The query string of a state, defaults left out (so URLs stay short). */
export function stateQuery(state) {
  const q = new URLSearchParams();
  for (const [key, fallback] of Object.entries(DEFAULTS)) {
    const value = state[key];
    if (key === "range" && state.range === "custom") continue;
    if ((key === "from" || key === "to") && state.range !== "custom") continue;
    if (value && value !== fallback) q.set(key, value);
  }
  const text = q.toString();
  return text ? `?${text}` : "?";
}

export function withState(state, changes) {
  return { ...state, ...changes };
}

// ------------------------------------------------------------------ UTC dates

const floorHour = (t) => Math.floor(t / HOUR) * HOUR;
const floorDay = (t) => Math.floor(t / DAY) * DAY;
const ceilDay = (t) => Math.ceil(t / DAY) * DAY;
const monthStart = (t, add = 0) => {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + add, 1);
};

/** `2025-01-02T03:00:00Z` as the API reads it (hour precision, UTC). */
export function isoHour(t) {
  return new Date(floorHour(t)).toISOString().replace(":00.000Z", "Z");
}

export function isoDay(t) {
  return new Date(t).toISOString().slice(0, 10);
}

/** A bound from the URL (an ISO date or datetime; no zone means UTC) as a time, or NaN. */
export function parseBound(text) {
  if (!text) return NaN;
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(text);
  const iso = text.length === 10 ? `${text}T00:00:00Z` : zoned ? text : `${text}Z`;
  return Date.parse(iso);
}

/**
 * [from, to) of the state's range, in milliseconds since the epoch.
 * `bounds` = {first, last}: the first and last hour with data. "Last N" presets end
 * with the newest data (a demo data set lies in the past), whole UTC days for the
 * day presets; month presets are the months of the newest data.
 */
export function resolveRange(state, bounds) {
  if (state.range === "custom") {
    const from = parseBound(state.from);
    const to = parseBound(state.to);
    if (Number.isNaN(from) || Number.isNaN(to)) return { error: "The custom range is not a pair of dates." };
    if (from >= to) return { error: "The custom range ends before it starts." };
    return { from: floorHour(from), to: floorHour(to) };
  }
  const last = bounds && Number.isFinite(bounds.last) ? bounds.last : floorHour(Date.now() - HOUR);
  const first = bounds && Number.isFinite(bounds.first) ? bounds.first : last;
  const end = last + HOUR;
  const days = (n) => ({ from: ceilDay(end) - n * DAY, to: ceilDay(end) });
  switch (state.range) {
    case "24h":
      return { from: end - DAY, to: end };
    case "7d":
      return days(7);
    case "28d":
      return days(28);
    case "90d":
      return days(90);
    case "month":
      return { from: monthStart(last), to: monthStart(last, 1) };
    case "last-month":
      return { from: monthStart(last, -1), to: monthStart(last) };
    case "12m":
      return { from: monthStart(last, -11), to: monthStart(last, 1) };
    case "all":
    default:
      return { from: floorDay(first), to: ceilDay(end) };
  }
}

/** The bucket size that suits a range: hours up to 2 days, days up to ~90, then months. */
export function autoGranularity(from, to) {
  const hours = (to - from) / HOUR;
  if (hours <= 48) return "hour";
  if (hours <= 92 * 24) return "day";
  return "month";
}
