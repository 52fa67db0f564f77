// Charts drawn with uPlot: traffic over time, each vital's p75 against its Core Web
// Vitals thresholds, and its good / needs-improvement / poor shares as stacked bars.
// Colours are Okabe-Ito's colour-blind-safe palette; the compared period is dashed.

import uPlot from "uplot";
import * as fmt from "dashboard/format.js";

export const COLOURS = {
  blue: "#0072B2",
  orange: "#E69F00",
  purple: "#CC79A7",
  green: "#009E73",
  vermillion: "#D55E00",
  yellow: "#F0E442",
  sky: "#56B4E9",
  black: "#000000",
};
const DASH = [6, 4];
const VITAL_FORMAT = { lcp_ms: fmt.ms, inp_ms: fmt.ms, cls: fmt.cls };
export const VITAL_NAMES = { lcp_ms: "LCP", inp_ms: "INP", cls: "CLS" };

const charts = new Set();
const observer = new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = entry.target.uplot;
    const width = Math.floor(entry.contentRect.width);
    if (chart && width > 0 && width !== chart.width) chart.setSize({ width, height: chart.height });
  }
});

/** Removes every chart drawn so far (before a new state is drawn). */
export function clearCharts() {
  for (const chart of charts) {
    observer.unobserve(chart.root.parentElement);
    chart.destroy();
  }
  charts.clear();
}

const get = (object, path) => path.reduce((o, k) => (o == null ? null : o[k]), object);
const seconds = (iso) => Date.parse(iso) / 1000;
const utc = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");

function draw(el, options, data) {
  el.replaceChildren();
  const width = Math.max(280, Math.floor(el.clientWidth || el.parentElement.clientWidth));
  const chart = new uPlot({ width, tzDate: utc, ...options }, data, el);
  el.uplot = chart;
  observer.observe(el);
  charts.add(chart);
  return chart;
}

function valueAxis(format, extra = {}) {
  return {
    size: 64,
    values: (u, ticks) => ticks.map((v) => format(v)),
    grid: { stroke: "#e6e6e6" },
    ...extra,
  };
}

const timeAxis = { grid: { stroke: "#eeeeee" } };

// The legends are a key while nothing is hovered: a value cell is empty (and
// dashboard.css hides it, with the time row) until the cursor is over a bucket.
const hovered = (format) => (u, v, si, i) => (i == null ? "" : format(v));
const TIME_SERIES = { label: "Time", value: hovered((v) => (v == null ? "" : fmt.when(v * 1000))) };
// A threshold's label says its value; its value cell stays empty.
const noValue = () => "";

/**
 * Views, sessions and users per bucket; with `compare`, the previous period dashed.
 * `span` = {first, last}: the first and last hour with data (ms). A bucket wholly
 * outside it has no value (a gap), not 0: no data was collected then. Inside it a
 * bucket without sessions is a real 0.
 */
export function trafficChart(el, series, compare, span = null) {
  const x = series.map((p) => seconds(p.start));
  const outside = (p) =>
    span != null && (Date.parse(p.end) <= span.first || Date.parse(p.start) > span.last);
  const traffic = (p, key) => (outside(p) ? null : get(p, ["traffic", key]));
  const metrics = [
    ["views", "Views", COLOURS.blue],
    ["sessions", "Sessions", COLOURS.orange],
    ["users", "Users", COLOURS.purple],
  ];
  const lines = [];
  const data = [x];
  for (const [key, label, colour] of metrics) {
    lines.push({ label, stroke: colour, width: 2, value: hovered(fmt.count) });
    data.push(series.map((p) => traffic(p, key)));
  }
  if (compare) {
    for (const [key, label, colour] of metrics) {
      lines.push({ label: `${label} (compared)`, stroke: colour, width: 1.5, dash: DASH, value: hovered(fmt.count) });
      data.push(series.map((p) => get(p, ["previous", "traffic", key])));
    }
  }
  return draw(el, {
    height: 260,
    series: [TIME_SERIES, ...lines],
    axes: [timeAxis, valueAxis(fmt.count)],
    scales: { y: { range: (u, min, max) => [0, Math.max(10, max) * 1.05] } },
  }, data);
}

/** One vital's p75 per bucket, with its good and poor thresholds as dashed lines. */
export function vitalChart(el, vital, series, strategy, thresholds, compare) {
  const format = VITAL_FORMAT[vital];
  const x = series.map((p) => seconds(p.start));
  const [good, poor] = thresholds;
  const lines = [
    { label: `${VITAL_NAMES[vital]} p75`, stroke: COLOURS.blue, width: 2, value: hovered(format), spanGaps: false },
  ];
  const data = [x, series.map((p) => get(p, ["performance", strategy, vital, "p75"]))];
  if (compare) {
    lines.push({ label: "p75 (compared)", stroke: COLOURS.blue, width: 1.5, dash: DASH, value: hovered(format) });
    data.push(series.map((p) => get(p, ["previous", "performance", strategy, vital, "p75"])));
  }
  lines.push(
    { label: `Good ≤ ${format(good)}`, stroke: COLOURS.green, width: 1.5, dash: [2, 3], points: { show: false }, value: noValue },
    { label: `Poor > ${format(poor)}`, stroke: COLOURS.vermillion, width: 1.5, dash: [2, 3], points: { show: false }, value: noValue },
  );
  data.push(x.map(() => good), x.map(() => poor));
  return draw(el, {
    height: 190,
    series: [TIME_SERIES, ...lines],
    axes: [timeAxis, valueAxis(format)],
    scales: { y: { range: (u, min, max) => [0, Math.max(max ?? 0, poor) * 1.1] } },
  }, data);
}

/** Good / needs improvement / poor shares of a vital's samples, stacked per bucket. */
export function sharesChart(el, vital, series, strategy) {
  const x = series.map((p) => seconds(p.start));
  const share = (p, key) => get(p, ["performance", strategy, vital, key]);
  const good = series.map((p) => share(p, "good"));
  const middle = series.map((p) => share(p, "needs_improvement"));
  const poor = series.map((p) => share(p, "poor"));
  const stack = (i, parts) => (good[i] == null ? null : parts.reduce((s, a) => s + (a[i] ?? 0), 0));
  const data = [
    x,
    x.map((_, i) => stack(i, [good, middle, poor])),
    x.map((_, i) => stack(i, [good, middle])),
    x.map((_, i) => stack(i, [good])),
  ];
  const step = x.length > 1 ? x[1] - x[0] : 3600;
  const bars = uPlot.paths.bars({ size: [0.8, 48], gap: 1 });
  const shown = (raw) => (u, v, si, i) => (i == null ? "" : fmt.share(raw[i]));
  return draw(el, {
    height: 130,
    series: [
      TIME_SERIES,
      { label: "Poor", stroke: COLOURS.vermillion, fill: COLOURS.vermillion, paths: bars, points: { show: false }, value: shown(poor) },
      { label: "Needs improvement", stroke: COLOURS.yellow, fill: COLOURS.yellow, paths: bars, points: { show: false }, value: shown(middle) },
      { label: "Good", stroke: COLOURS.green, fill: COLOURS.green, paths: bars, points: { show: false }, value: shown(good) },
    ],
    axes: [timeAxis, valueAxis(fmt.share, { splits: () => [0, 0.5, 1] })],
    scales: {
      x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] },
      y: { range: [0, 1] },
    },
  }, data);
}
