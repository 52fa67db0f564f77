// How each kind of metric is written on the page.

const integer = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
const decimal2 = new Intl.NumberFormat("en", { maximumFractionDigits: 2, minimumFractionDigits: 2 });
const decimal1 = new Intl.NumberFormat("en", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
const percent1 = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1, minimumFractionDigits: 1 });

export const NONE = "–";

export function count(v) {
  return v === null || v === undefined ? NONE : integer.format(v);
}

export function ratio(v) {
  return v === null || v === undefined ? NONE : decimal2.format(v);
}

export function share(v) {
  return v === null || v === undefined ? NONE : percent1.format(v);
}

export function score(v) {
  return v === null || v === undefined ? NONE : decimal1.format(v);
}

export function seconds(v) {
  if (v === null || v === undefined) return NONE;
  if (v < 60) return `${decimal1.format(v)} s`;
  if (v >= 3600) {
    const h = Math.floor(v / 3600);
    return `${integer.format(h)}h ${String(Math.floor((v - h * 3600) / 60)).padStart(2, "0")}m`;
  }
  const m = Math.floor(v / 60);
  const s = Math.round(v - m * 60);
  return `${m}m ${String(s).padStart(2, "0")}s`;
}

export function ms(v) {
  if (v === null || v === undefined) return NONE;
  if (v >= 1000) return `${decimal2.format(v / 1000)} s`;
  return `${integer.format(v)} ms`;
}

export function cls(v) {
  return v === null || v === undefined ? NONE : decimal2.format(v);
}

/** A relative change (0.125 -> "+12.5%"), or a dash when there is none. */
export function change(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return NONE;
  const text = percent1.format(Math.abs(v));
  return v > 0 ? `+${text}` : v < 0 ? `−${text}` : "±0.0%";
}

const utcFormat = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  year: "numeric",
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});
const utcDay = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  year: "numeric",
  month: "short",
  day: "numeric",
});

export function when(t) {
  return `${utcFormat.format(new Date(t))} UTC`;
}

/** A range [from, to) written for people: whole days as days (the last one included). */
export function range(from, to) {
  const DAY = 86400000;
  if (from % DAY === 0 && to % DAY === 0) {
    const last = to - DAY;
    return last === from
      ? `${utcDay.format(new Date(from))} (UTC)`
      : `${utcDay.format(new Date(from))} – ${utcDay.format(new Date(last))} (UTC)`;
  }
  return `${utcFormat.format(new Date(from))} – ${utcFormat.format(new Date(to))} UTC`;
}
