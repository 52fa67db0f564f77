// The top pages table: one page of /api/reports/pages, sortable by every metric the
// API orders by, each row linking to the dashboard of that one page.

import * as fmt from "dashboard/format.js";

// order_by keys of the API (reporting/selectors.py ORDERINGS) with their column.
export const ORDERINGS = [
  ["views", "Views", (r) => fmt.count(r.traffic.views)],
  ["sessions", "Sessions", (r) => fmt.count(r.traffic.sessions)],
  ["users", "Users", (r) => fmt.count(r.traffic.users)],
  ["bounces", "Bounces", (r) => fmt.count(r.traffic.bounces)],
  ["bounce_rate", "Bounce rate", (r) => fmt.share(r.traffic.bounce_rate)],
  ["engagement_seconds", "Engagement", (r) => fmt.seconds(r.traffic.engagement_seconds)],
  ["avg_engagement_seconds", "Avg engagement", (r) => fmt.seconds(r.traffic.avg_engagement_seconds)],
  ["views_per_session", "Views / session", (r) => fmt.ratio(r.traffic.views_per_session)],
  ["performance_score_avg", "Score", (r) => fmt.score(r.performance.both.performance_score_avg)],
  ["samples", "PSI samples", (r) => fmt.count(r.performance.both.samples)],
];

/** Fills the "Sort by" select with every ordering, both directions. */
export function fillOrderSelect(select) {
  select.replaceChildren();
  for (const [key, label] of ORDERINGS) {
    select.append(new Option(`${label}, highest first`, `-${key}`));
    select.append(new Option(`${label}, lowest first`, key));
  }
}

function pathOf(url) {
  try {
    const parsed = new URL(url);
    return { host: parsed.host, path: `${parsed.pathname}${parsed.search}` };
  } catch {
    return { host: "", path: url };
  }
}

/**
 * Draws the table. `order` is the current order_by; `hrefFor(row)` the link of a row,
 * `sortHref(order)` the link of a column's sort; `showHost` adds the host under the path.
 */
export function renderPages(table, body, { order, hrefFor, sortHref, showHost }) {
  const head = table.tHead;
  const sortKey = order.replace(/^-/, "");
  const descending = order.startsWith("-");
  const headRow = document.createElement("tr");
  const pageTh = document.createElement("th");
  pageTh.scope = "col";
  pageTh.textContent = "Page";
  headRow.append(pageTh);
  for (const [key, label] of ORDERINGS) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = "num";
    const active = key === sortKey;
    if (active) th.setAttribute("aria-sort", descending ? "descending" : "ascending");
    const link = document.createElement("a");
    link.className = "sort";
    link.dataset.order = key;
    // A click on the column sorts by it, highest first; on the sorted column, reverses it.
    const next = active && descending ? key : `-${key}`;
    link.href = sortHref(next);
    link.textContent = label;
    link.setAttribute("aria-label", `Sort by ${label}, ${next.startsWith("-") ? "highest" : "lowest"} first`);
    if (active) {
      const arrow = document.createElement("span");
      arrow.setAttribute("aria-hidden", "true");
      arrow.textContent = descending ? " ▼" : " ▲";
      link.append(arrow);
    }
    th.append(link);
    headRow.append(th);
  }
  head.replaceChildren(headRow);

  const rows = body.results.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.pageId = row.page.id;
    const th = document.createElement("th");
    th.scope = "row";
    const { host, path } = pathOf(row.page.url);
    const link = document.createElement("a");
    link.href = hrefFor(row);
    link.className = "page-link";
    link.textContent = path;
    link.title = row.page.url;
    th.append(link);
    if (showHost && host) {
      const small = document.createElement("span");
      small.className = "host";
      small.textContent = host;
      th.append(small);
    }
    tr.append(th);
    for (const [key, , cell] of ORDERINGS) {
      const td = document.createElement("td");
      td.className = "num";
      td.dataset.metric = key;
      td.textContent = cell(row);
      tr.append(td);
    }
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = ORDERINGS.length + 1;
    td.className = "empty";
    td.textContent = "No page has data in this range.";
    tr.append(td);
    rows.push(tr);
  }
  table.tBodies[0].replaceChildren(...rows);
}
