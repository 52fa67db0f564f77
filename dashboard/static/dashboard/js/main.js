// The dashboard: reads the state from the query string, asks the reporting API for
// the summary, the time series and the top pages of that state, and draws them.
// Every control writes the state back to the URL (history.pushState), so a view
// can be bookmarked, shared and reloaded, and back / forward redraw it.

import { apiUrl, getJson, mustJson, ApiError } from "dashboard/api.js";
import * as fmt from "dashboard/format.js";
import { clearCharts, sharesChart, trafficChart, vitalChart, VITAL_NAMES } from "dashboard/charts.js";
import { fillOrderSelect, renderPages } from "dashboard/pages.js";
import {
  autoGranularity, isoDay, isoHour, parseBound, parseState, resolveRange, stateQuery, withState,
} from "dashboard/state.js";

const CONFIG = JSON.parse(document.getElementById("dashboard-config").textContent);
const VITALS = Object.keys(CONFIG.thresholds); // lcp_ms, inp_ms, cls
const HOUR = 3600 * 1000;
const $ = (id) => document.getElementById(id);
const get = (object, path) => path.reduce((o, k) => (o == null ? null : o[k]), object);

// Headline cards: [label, path in an answer, format, which direction is better].
function cardDefinitions(strategy) {
  const perf = ["performance", strategy];
  return [
    ["views", "Views", ["traffic", "views"], fmt.count, 1],
    ["sessions", "Sessions", ["traffic", "sessions"], fmt.count, 1],
    ["users", "Users", ["traffic", "users"], fmt.count, 1],
    ["bounce_rate", "Bounce rate", ["traffic", "bounce_rate"], fmt.share, -1],
    ["avg_engagement_seconds", "Avg engagement", ["traffic", "avg_engagement_seconds"], fmt.seconds, 1],
    ["views_per_session", "Views / session", ["traffic", "views_per_session"], fmt.ratio, 1],
    ["performance_score_avg", "Performance score", [...perf, "performance_score_avg"], fmt.score, 1],
    ["lcp_ms", "LCP p75", [...perf, "lcp_ms", "p75"], fmt.ms, -1],
    ["inp_ms", "INP p75", [...perf, "inp_ms", "p75"], fmt.ms, -1],
    ["cls", "CLS p75", [...perf, "cls", "p75"], fmt.cls, -1],
  ];
}

// ------------------------------------------------------------------ sites and bounds

let sitesPromise = null;
const probedBounds = new Map();
let compareUnsupported = false;

/** The user's sites from /api/sites, or null when the API has no such endpoint. */
function loadSites() {
  sitesPromise ??= getJson("/api/sites").then((answer) => {
    if (!answer.ok) return null;
    const list = Array.isArray(answer.data) ? answer.data : answer.data?.sites;
    return Array.isArray(list) ? list : null;
  }).catch(() => null);
  return sitesPromise;
}

/** The site of `key` (its host or its id) among the user's sites, or undefined. */
const findSite = (sites, key) => sites?.find((s) => s.host === key || String(s.id) === key);

/** A site or page of the URL that the user cannot see (or that does not exist). */
class NotFound extends Error {
  constructor(message, title, link) {
    super(message);
    this.title = title;
    this.link = link;
  }
}

const hourOf = (value) => (value ? Date.parse(value) : NaN);

function siteBounds(site) {
  const first = hourOf(site.first_hour ?? site.data_first_hour ?? site.first_data_hour ?? site.data?.first_hour);
  const last = hourOf(site.last_hour ?? site.data_last_hour ?? site.last_data_hour ?? site.data?.last_hour);
  return Number.isFinite(first) && Number.isFinite(last) ? { first, last } : null;
}

const hasData = (p) =>
  (p.traffic?.views || 0) + (p.traffic?.sessions || 0) + (p.performance?.both?.samples || 0) > 0;

/** First and last bucket with data of a granularity over [from, to). */
async function dataBuckets(site, granularity, from, to) {
  const body = await mustJson("/api/reports/timeseries", {
    granularity, from: isoHour(from), to: isoHour(to), site,
  });
  const filled = body.series.filter(hasData);
  if (!filled.length) return null;
  const span = (p) => [Date.parse(p.start), Date.parse(p.end)];
  return { first: span(filled[0]), last: span(filled[filled.length - 1]) };
}

/**
 * Without /api/sites (or without its hours), the first and last hour with data are
 * found from the time series: years, then the months, days and hours inside them.
 */
async function probeBounds(site) {
  if (probedBounds.has(site)) return probedBounds.get(site);
  const promise = (async () => {
    const [earliest, latest] = CONFIG.supported.map((bound) => Date.parse(bound));
    const years = await dataBuckets(site, "year", earliest, latest);
    if (!years) return null;
    const [firstMonths, lastMonths] = await Promise.all([
      dataBuckets(site, "month", ...years.first),
      dataBuckets(site, "month", ...years.last),
    ]);
    const [firstDays, lastDays] = await Promise.all([
      dataBuckets(site, "day", ...firstMonths.first),
      dataBuckets(site, "day", ...lastMonths.last),
    ]);
    const lastHours = await dataBuckets(site, "hour", ...lastDays.last);
    return { first: firstDays.first[0], last: lastHours.last[0] };
  })();
  probedBounds.set(site, promise);
  return promise;
}

async function boundsFor(state, sites) {
  if (sites && !sites.length) return null; // no site: nothing to look for
  if (sites) {
    const chosen = state.site ? sites.filter((s) => s === findSite(sites, state.site)) : sites;
    const known = chosen.map(siteBounds).filter(Boolean);
    if (known.length) {
      return {
        first: Math.min(...known.map((b) => b.first)),
        last: Math.max(...known.map((b) => b.last)),
      };
    }
    if (chosen.length && chosen.every((s) => "last_hour" in s)) return null; // sites without data
  }
  return probeBounds(state.site);
}

// ------------------------------------------------------------------ controls

const controls = {
  site: $("site"), range: $("range"), from: $("from"), to: $("to"), compare: $("compare"),
  granularity: $("granularity"), strategy: $("strategy"), order: $("order"), prefix: $("prefix"),
  limit: $("limit"),
};
fillOrderSelect(controls.order);

function showSites(sites, state) {
  const box = $("site-control");
  if (!sites || !sites.length) {
    box.hidden = true;
    return;
  }
  const select = controls.site;
  const options = [];
  if (sites.length > 1) options.push(new Option("All sites", ""));
  for (const site of sites) options.push(new Option(site.name || site.host, site.host));
  const chosen = state.site ? findSite(sites, state.site) : sites.length === 1 ? sites[0] : null;
  if (state.site && !chosen) options.push(new Option(`${state.site} (not found)`, state.site));
  select.replaceChildren(...options);
  select.value = chosen ? chosen.host : state.site;
  box.hidden = false;
}

/** The controls show the state (the URL's values, else the defaults); `range`, once
 * resolved, gives the days of the custom-range inputs. */
function syncControls(state, range) {
  controls.range.value = state.range;
  $("custom-range").hidden = state.range !== "custom";
  const custom = { from: parseBound(state.from), to: parseBound(state.to) };
  const days = range && !range.error ? range : state.range === "custom" ? custom : null;
  if (days && Number.isFinite(days.from) && Number.isFinite(days.to)) {
    controls.from.value = isoDay(days.from);
    controls.to.value = isoDay(Math.ceil(days.to / 86400000) * 86400000 - 86400000);
  }
  controls.compare.value = state.compare;
  controls.granularity.value = state.granularity;
  controls.strategy.value = state.strategy;
  controls.order.value = state.order;
  if (![...controls.limit.options].some((o) => o.value === state.limit)) {
    controls.limit.append(new Option(state.limit, state.limit));
  }
  controls.limit.value = state.limit;
  if (document.activeElement !== controls.prefix) controls.prefix.value = state.prefix;
  for (const option of controls.compare.options) {
    if (option.value) option.disabled = compareUnsupported;
  }
}

function navigate(state) {
  const url = `${location.pathname}${stateQuery(state)}`;
  if (url !== `${location.pathname}${location.search || "?"}`) history.pushState(null, "", url);
  render();
}

const current = () => parseState(location.search);
// Changing what is looked at starts the top pages again at their first rows.
const fresh = (changes) => navigate(withState(current(), { cursor: "", ...changes }));

controls.site.addEventListener("change", () => fresh({ site: controls.site.value, page: "" }));
controls.range.addEventListener("change", () => {
  if (controls.range.value === "custom") {
    $("custom-range").hidden = false;
    controls.from.focus();
    return;
  }
  fresh({ range: controls.range.value, from: "", to: "" });
});
$("controls").addEventListener("submit", (event) => {
  event.preventDefault();
  if (controls.range.value !== "custom") return;
  if (!controls.from.value || !controls.to.value) return showError("Choose both days of the custom range.");
  const end = Date.parse(`${controls.to.value}T00:00:00Z`) + 86400000;
  fresh({ range: "custom", from: controls.from.value, to: isoDay(end) });
});
controls.compare.addEventListener("change", () => fresh({ compare: controls.compare.value }));
controls.granularity.addEventListener("change", () => fresh({ granularity: controls.granularity.value }));
controls.strategy.addEventListener("change", () => fresh({ strategy: controls.strategy.value }));
controls.order.addEventListener("change", () => fresh({ order: controls.order.value }));
controls.limit.addEventListener("change", () => fresh({ limit: controls.limit.value }));
$("pages-controls").addEventListener("submit", (event) => {
  event.preventDefault();
  fresh({ prefix: controls.prefix.value.trim() });
});
// Links inside the dashboard (sort, pages, page rows) change the state in place.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a.nav");
  if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  history.pushState(null, "", link.getAttribute("href"));
  render();
});
window.addEventListener("popstate", () => render());

// ------------------------------------------------------------------ drawing

/** The error box: a message, and a `link` ({href, text}) out of the failed view. */
function showError(message, link = null) {
  const box = $("error");
  box.textContent = message || "";
  if (message && link) {
    const a = document.createElement("a");
    a.href = link.href;
    a.className = "nav";
    a.id = "error-link";
    a.textContent = link.text;
    box.append(" ", a);
  }
  box.hidden = !message;
}

// The CSV downloads of the view shown, separated by " · " (none when a view failed).
const CSV = { timeseries: $("csv-timeseries"), summary: $("csv-summary"), pages: $("csv-pages") };

function showDownloads(links) {
  const box = $("csv-links");
  box.replaceChildren();
  links.forEach((link, i) => box.append(...(i ? [" · ", link] : [link])));
  $("downloads").hidden = !links.length;
}

/** Takes away what an earlier view drew, so a failed view shows nothing stale. */
function clearView() {
  clearCharts();
  for (const id of ["cards", "chart-traffic", "vitals"]) $(id).replaceChildren();
  $("pages-section").hidden = true;
  $("range-label").textContent = "";
  $("compare-label").textContent = "";
  $("page-back").hidden = true;
  renderFreshness(null);
}

function notice(messages) {
  $("notice").textContent = messages.filter(Boolean).join(" ");
}

/** A metric's relative change: the API's `change`, else computed from `previous`. */
function changeOf(answer, path) {
  if (!answer.previous) return undefined;
  const given = get(answer.change, path);
  if (given !== null && given !== undefined) return given;
  if (answer.change && get(answer.change, path) === null) return null;
  const now = get(answer, path);
  const before = get(answer.previous, path);
  return now == null || !before ? null : (now - before) / before;
}

function rating(vital, value) {
  if (value == null) return "";
  const [good, poor] = CONFIG.thresholds[vital];
  return value <= good ? "good" : value > poor ? "poor" : "needs improvement";
}

function renderCards(summary, state) {
  const cards = cardDefinitions(state.strategy).map(([key, label, path, format, better]) => {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.metric = key;
    const value = get(summary, path);
    card.dataset.value = value ?? "";
    const title = document.createElement("div");
    title.className = "card-label";
    title.textContent = label;
    const number = document.createElement("div");
    number.className = "card-value";
    number.textContent = format(value);
    card.append(title, number);
    if (VITALS.includes(key)) {
      const verdict = rating(key, value);
      if (verdict) {
        const tag = document.createElement("div");
        tag.className = `rating ${verdict.replace(" ", "-")}`;
        tag.textContent = verdict;
        card.append(tag);
      }
    }
    const change = changeOf(summary, path);
    if (change !== undefined) {
      const line = document.createElement("div");
      line.className = "card-change";
      line.dataset.change = change ?? "";
      const direction = change == null || change === 0 ? "" : (change > 0 ? 1 : -1) * better > 0 ? "better" : "worse";
      if (direction) line.classList.add(direction);
      const arrow = change > 0 ? "▲ " : change < 0 ? "▼ " : "";
      line.textContent = `${arrow}${fmt.change(change)}`;
      line.title = `Compared: ${format(get(summary.previous, path))}`;
      line.setAttribute("aria-label", `${fmt.change(change)} against the compared period (${format(get(summary.previous, path))})${direction ? `, ${direction}` : ""}`);
      card.append(line);
    }
    return card;
  });
  $("cards").replaceChildren(...cards);
}

function renderVitals(series, state, compare) {
  const box = $("vitals");
  box.replaceChildren();
  for (const vital of VITALS) {
    const block = document.createElement("div");
    block.className = "vital";
    const heading = document.createElement("h3");
    heading.textContent = `${VITAL_NAMES[vital]} (${state.strategy === "both" ? "mobile and desktop" : state.strategy})`;
    const p75 = document.createElement("div");
    p75.className = "chart";
    p75.id = `chart-${vital}`;
    p75.setAttribute("role", "img");
    p75.setAttribute("aria-label", `${VITAL_NAMES[vital]} p75 over time with its good and poor thresholds`);
    const shares = document.createElement("div");
    shares.className = "chart";
    shares.id = `chart-${vital}-shares`;
    shares.setAttribute("role", "img");
    shares.setAttribute("aria-label", `${VITAL_NAMES[vital]}: shares of good, needs improvement and poor samples over time`);
    block.append(heading, p75, shares);
    box.append(block);
    vitalChart(p75, vital, series, state.strategy, CONFIG.thresholds[vital], compare);
    sharesChart(shares, vital, series, state.strategy);
  }
}

function pageHref(state, changes) {
  return stateQuery(withState(state, changes));
}

function markLinks(root) {
  for (const link of root.querySelectorAll("a[href^='?']")) link.classList.add("nav");
}

function renderTable(body, state, sites) {
  renderPages($("pages-table"), body, {
    order: state.order,
    hrefFor: (row) => pageHref(state, { page: String(row.page.id), cursor: "", prefix: "", order: "-views" }),
    sortHref: (order) => pageHref(state, { order, cursor: "" }),
    showHost: !state.site && (!sites || sites.length !== 1),
  });
  const shown = body.results.length;
  $("pages-count").textContent = shown
    ? `${fmt.count(body.count)} page${body.count === 1 ? "" : "s"}${body.next || state.cursor ? `, ${shown} on this page` : ""}`
    : "";
  const next = $("pages-next");
  next.hidden = !body.next;
  if (body.next) next.href = pageHref(state, { cursor: body.next });
  const first = $("pages-first");
  first.hidden = !state.cursor;
  first.href = pageHref(state, { cursor: "" });
  markLinks($("pages-section"));
}

function renderFreshness(answer) {
  const fresh = answer?.freshness;
  const parts = [];
  if (fresh) {
    parts.push(fresh.pipeline_run_at ? `Data as of the pipeline run of ${fmt.when(Date.parse(fresh.pipeline_run_at))}.` : "The pipeline has not run over this range yet.");
    parts.push(fresh.pending ? "More data for this range is still being processed." : "Nothing is pending for this range.");
  }
  const el = $("freshness");
  el.textContent = parts.join(" ");
  el.dataset.pending = fresh ? String(fresh.pending) : "";
  el.dataset.runAt = fresh?.pipeline_run_at ?? "";
}

// ------------------------------------------------------------------ one render

let renderToken = 0;
let firstRender = true;

/** A report with `compare`, retried without it when the API does not know it. */
async function withCompare(path, params, compare) {
  if (!compare || compareUnsupported) return mustJson(path, params);
  const answer = await getJson(path, { ...params, compare });
  if (answer.ok) return answer.data;
  if (answer.status === 400 && answer.data && "compare" in answer.data) {
    compareUnsupported = true;
    return mustJson(path, params);
  }
  throw new ApiError(answer.status, answer.data, answer.url);
}

async function render() {
  const token = ++renderToken;
  const root = $("dashboard");
  root.setAttribute("aria-busy", "true");
  showError("");
  showDownloads([]);
  const state = current();
  syncControls(state, null); // the URL's values (or the defaults) from the start
  const allSites = {
    href: pageHref(state, { site: "", page: "", cursor: "", prefix: "" }), text: "← All sites",
  };
  const noSite = () => new NotFound(`There is no site ${state.site} you can see.`, `Site ${state.site}`, allSites);
  try {
    const sites = await loadSites();
    if (token !== renderToken) return;
    showSites(sites, state);
    if (state.site && sites && !findSite(sites, state.site)) throw noSite();
    const site = findSite(sites, state.site)?.host ?? state.site ?? "";
    const only = !state.site && sites && sites.length === 1 ? sites[0].host : site;
    let bounds;
    try {
      bounds = state.range === "custom" && !sites ? null : await boundsFor({ ...state, site: only }, sites);
    } catch (error) {
      // Without the list of sites, an unknown site shows here first.
      if (error instanceof ApiError && error.status === 404 && state.site) throw noSite();
      throw error;
    }
    if (token !== renderToken) return;
    const range = resolveRange(state, bounds);
    syncControls(state, range);
    if (range.error) throw new Error(range.error);
    const granularity = state.granularity || autoGranularity(range.from, range.to);
    const base = { from: isoHour(range.from), to: isoHour(range.to) };
    const filter = { ...base, site: state.page ? "" : only, page: state.page };
    const pagesParams = {
      ...base, site: only, path_prefix: state.prefix, order_by: state.order,
      limit: Math.min(Number(state.limit), CONFIG.maxPageSize), cursor: state.cursor,
    };
    const pageAnswer = state.page ? getJson(`/api/reports/pages/${state.page}`, base) : null;
    const reports = Promise.all([
      withCompare("/api/reports/summary", filter, state.compare),
      withCompare("/api/reports/timeseries", { ...filter, granularity }, state.compare),
      state.page ? null : mustJson("/api/reports/pages", pagesParams),
    ]);
    reports.catch(() => {}); // a page that is not there is the error to show, below
    const page = await pageAnswer;
    if (token !== renderToken) return;
    if (page && page.status === 404) {
      throw new NotFound(`There is no page ${state.page} you can see.`, `Page ${state.page}`, {
        href: pageHref(state, { page: "", cursor: "" }), text: "← All pages",
      });
    }
    if (page && !page.ok) throw new ApiError(page.status, page.data, page.url);
    const [summary, series, pages] = await reports;
    if (token !== renderToken) return;

    const compare = Boolean(summary.previous);
    const messages = [];
    if (state.compare && !compare) messages.push("The API gives no comparison for this view.");
    if (sites && !sites.length) {
      messages.push(
        "You have no sites yet: a site's admin or a staff member can grant you one "
        + "(the admin's Sites page, or manage.py sites grant USERNAME HOST).",
      );
    } else if (!bounds && state.range !== "custom") {
      messages.push("No data yet: the range ends now.");
    }
    notice(messages);
    syncControls(state, range);

    $("title").textContent = page ? page.data.page.url : state.site ? (findSite(sites, state.site)?.name || state.site) : "All pages";
    $("page-back").hidden = !state.page;
    $("all-pages-link").href = pageHref(state, { page: "" });
    $("range-label").textContent = `${fmt.range(range.from, range.to)}, per ${granularity === "interval" ? `${CONFIG.intervalHours} hours` : granularity}.`;
    $("compare-label").textContent = compare
      ? `Compared with ${fmt.range(Date.parse(summary.previous.from), Date.parse(summary.previous.to))} (dashed).`
      : "";

    renderCards(summary, state);
    clearCharts();
    trafficChart($("chart-traffic"), series.series, Boolean(series.series.some((p) => p.previous)), bounds);
    renderVitals(series.series, state, series.series.some((p) => p.previous));
    $("pages-section").hidden = Boolean(state.page);
    if (pages) renderTable(pages, state, sites);
    renderFreshness(summary);
    CSV.summary.href = apiUrl("/api/reports/summary", { ...filter, format: "csv" });
    CSV.timeseries.href = apiUrl("/api/reports/timeseries", { ...filter, granularity, format: "csv" });
    CSV.pages.href = apiUrl("/api/reports/pages", { ...pagesParams, format: "csv" });
    showDownloads(state.page ? [CSV.timeseries, CSV.summary] : [CSV.timeseries, CSV.summary, CSV.pages]);
    markLinks(root);
  } catch (error) {
    if (token !== renderToken) return;
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      location.assign(`/login/?next=${encodeURIComponent(location.pathname + location.search)}`);
      return;
    }
    clearView();
    if (error instanceof NotFound) $("title").textContent = error.title;
    showError(error.message || String(error), error.link);
    markLinks($("error"));
  }
  root.setAttribute("aria-busy", "false");
  root.dataset.renders = String(Number(root.dataset.renders || 0) + 1);
  root.dataset.query = location.search;
  if (firstRender) {
    firstRender = false;
    performance.mark("dashboard:rendered");
  }
}

render();
