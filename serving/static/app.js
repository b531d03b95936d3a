// streamrec dashboard: polls the API (no build step, no CDN; Chart.js is vendored).
"use strict";

const POLL_MS = 2000;
const WINDOW_S = 300;
const QUERY_COLORS = { aggregates: "#3b6fd8", foldin: "#e07b39" };
const charts = {};
const state = { ratings: new Map() }; // try-it panel: movie_id -> {title, rating}

const $ = (id) => document.getElementById(id);
const fmt = (x, d = 0) => (x === null || x === undefined ? "—" : Number(x).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d }));
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));

// An API key, typed into the page and kept in this tab's sessionStorage (gone when the tab closes);
// sent as a bearer token on every request. Public routes ignore it; per-user ones need it.
const KEY_ITEM = "streamrec.apiKey";
const apiKey = () => sessionStorage.getItem(KEY_ITEM) || "";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(typeof body.detail === "string" ? body.detail : `${res.status} ${path}`);
    err.status = res.status;
    throw err;
  }
  return body;
}

function needsKey(err) {
  return err.status === 401 ? "needs an API key with the read scope (enter it above)"
    : err.status === 403 ? "this API key lacks the read scope" : err.message;
}

function renderKeyState() {
  $("key-state").textContent = apiKey() ? "key set for this tab" : "no key";
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const value = $("api-key").value.trim();
  if (value) sessionStorage.setItem(KEY_ITEM, value);
  $("api-key").value = "";
  renderKeyState(); recommendMe(); refreshDeadLetters();
});
$("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_ITEM); renderKeyState(); recommendMe(); refreshDeadLetters();
});

function chart(id, config) {
  if (!charts[id]) {
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options || {});
    charts[id] = new Chart($(id), config);
  }
  return charts[id];
}

function timeAxis() {
  return { type: "linear", ticks: { callback: (v) => new Date(v * 1000).toLocaleTimeString(), maxTicksLimit: 6 } };
}

async function refreshStream() {
  const s = await api("/stats/stream?batches=120");
  const byQuery = {};
  const since = Date.now() / 1000 - WINDOW_S; // the charts show the last few minutes only
  for (const b of s.batches) if (b.at >= since) (byQuery[b.query] ||= []).push(b);
  const series = (key) => Object.entries(byQuery).map(([q, rows]) => ({
    label: q, borderColor: QUERY_COLORS[q] || "#888", backgroundColor: QUERY_COLORS[q] || "#888",
    pointRadius: 1.5, borderWidth: 1.5,
    data: rows.filter((r) => r[key] !== null).map((r) => ({ x: r.at, y: r[key] })),
  }));
  const tp = chart("chart-throughput", { type: "line", data: { datasets: [] }, options: { scales: { x: timeAxis(), y: { beginAtZero: true } } } });
  tp.data.datasets = series("events_per_s").filter((d) => d.data.length); tp.update();
  const lat = chart("chart-latency", { type: "line", data: { datasets: [] }, options: { scales: { x: timeAxis(), y: { type: "logarithmic" } } } });
  lat.data.datasets = series("latency_p95_ms").filter((d) => d.data.length); lat.update();
  const q = s.queries;
  $("kpi-agg-p95").textContent = q.aggregates?.latency_p95_ms != null ? `${fmt(q.aggregates.latency_p95_ms)} ms` : "—";
  $("kpi-foldin-p95").textContent = q.foldin?.latency_p95_ms != null ? `${fmt(q.foldin.latency_p95_ms)} ms` : "—";
  $("kpi-rate").textContent = q.aggregates?.events_per_s != null ? fmt(q.aggregates.events_per_s) : "—";
  $("kpi-dead").textContent = fmt(s.dead_letters);
}

async function refreshAggregates() {
  const [hist, genres, trending] = await Promise.all([
    api("/stats/histogram"), api("/stats/genres"), api("/stats/trending?limit=10"),
  ]);
  $("kpi-events").textContent = fmt(hist.reduce((a, r) => a + r.n_ratings, 0));
  const h = chart("chart-histogram", { type: "bar", data: { labels: [], datasets: [{ label: "ratings", data: [], backgroundColor: "#3b6fd8" }] }, options: { plugins: { legend: { display: false } } } });
  h.data.labels = hist.map((r) => r.rating.toFixed(1)); h.data.datasets[0].data = hist.map((r) => r.n_ratings); h.update();
  const g = chart("chart-genres", { type: "bar", data: { labels: [], datasets: [{ label: "average rating", data: [], backgroundColor: "#e07b39" }] },
    options: { indexAxis: "y", plugins: { legend: { display: false }, tooltip: { callbacks: { afterLabel: (c) => `${fmt(genres[c.dataIndex]?.n_ratings)} ratings` } } }, scales: { x: { min: 2.5, max: 4.5 }, y: { ticks: { autoSkip: false, font: { size: 11 } } } } } });
  const top = genres.slice(0, 20);
  g.data.labels = top.map((r) => r.genre); g.data.datasets[0].data = top.map((r) => r.avg_rating); g.update();
  $("trending-window").textContent = trending.window_start ? `week of ${new Date(trending.window_start * 1000).toISOString().slice(0, 10)} (event time)` : "";
  $("trending").querySelector("tbody").innerHTML = trending.items.map((m, i) =>
    `<tr><td>${i + 1}</td><td>${esc(m.title)}</td><td class="num">${fmt(m.n_ratings)}</td><td class="num">${fmt(m.avg_rating, 2)}</td></tr>`).join("")
    || `<tr><td colspan="4" class="muted">no events in a window yet</td></tr>`;
}

async function refreshLiveEval() {  // streaming.live_eval: served lists against popularity, per minute
  const rows = await api("/stats/live-eval?by=minute");
  const served = {}, pop = {};
  for (const r of rows) {
    if (r.source === "shadow") continue;  // a candidate's lists were never served
    const m = (served[r.minute] ||= { n: 0, h: 0 }); m.n += r.events; m.h += r.hits;
    const p = (pop[r.minute] ||= { n: 0, h: 0 }); p.n += r.events; p.h += r.popularity_hit_rate * r.events;
  }
  const points = (acc) => Object.entries(acc).map(([t, v]) => ({ x: Number(t), y: v.n ? v.h / v.n : null }));
  const c = chart("chart-live-eval", { type: "line", data: { datasets: [] }, options: { scales: { x: timeAxis(), y: { beginAtZero: true } } } });
  c.data.datasets = [
    { label: "served lists", data: points(served), borderColor: "#3b6fd8", backgroundColor: "#3b6fd8", pointRadius: 2 },
    { label: "popularity", data: points(pop), borderColor: "#999", backgroundColor: "#999", borderDash: [4, 3], pointRadius: 2 },
  ];
  c.update();
}

async function refreshDeadLetters() {  // raw values of bad records: needs a key with read
  const body = $("dead").querySelector("tbody");
  try {
    const dead = await api("/stats/dead-letters?limit=8");
    body.innerHTML = dead.map((d) =>
      `<tr><td>${d.partition}@${d.offset}</td><td>${esc(d.reason)}</td><td class="value">${esc(d.raw_value)}</td></tr>`).join("")
      || `<tr><td colspan="3" class="muted">none: every record so far was a valid rating</td></tr>`;
  } catch (err) {
    body.innerHTML = `<tr><td colspan="3" class="muted">${esc(needsKey(err))}</td></tr>`;
  }
}

async function refreshModels() {
  const models = await api("/models");
  const cur = models.find((m) => m.current);
  $("current-model").textContent = cur ? `model ${cur.version}` : "no model yet";
  $("models").querySelector("tbody").innerHTML = models.map((m) => m.problem
    ? `<tr><td>${esc(m.version)}</td><td colspan="6" class="muted">unusable: ${esc(m.problem)}</td></tr>`
    : `<tr class="${m.current ? "current" : ""}"><td>${esc(m.version)}${m.current ? " ★ CURRENT" : m.candidate ? " (candidate, shadowed)" : ""}</td><td class="num">${fmt(m.ndcg_at_10, 4)}</td>`
      + `<td class="num">${fmt(m.popularity_ndcg_at_10, 4)}</td><td class="num">${m.live_events ? fmt(m.live_hit_rate, 4) : "—"}</td>`
      + `<td class="num">${m.live_events ? fmt(m.live_popularity_hit_rate, 4) : "—"}</td><td class="num">${fmt(m.rmse, 4)}</td><td class="num">${fmt(m.ratings)}</td></tr>`).join("");
}

async function refreshReady() {
  const res = await fetch("/readyz");
  const body = await res.json();
  const el = $("ready");
  el.textContent = body.ready ? "ready" : "not ready: " + Object.entries(body.checks).filter(([, c]) => !c.ok).map(([k]) => k).join(", ");
  el.className = "pill " + (body.ready ? "ok" : "bad");
}

// -- try it ------------------------------------------------------------------------------------

let searchTimer = null;
$("search").addEventListener("input", (e) => {
  clearTimeout(searchTimer);
  const q = e.target.value.trim();
  searchTimer = setTimeout(() => search(q), 150);
});

async function search(q) {
  const list = $("search-results");
  if (!q) { list.innerHTML = ""; return; }
  const hits = await api(`/movies?q=${encodeURIComponent(q)}&limit=8`);
  list.innerHTML = hits.map((m) => `<li data-id="${m.movie_id}"><span class="title">${esc(m.title)}<br><span class="genres">${esc(m.genres.join(" · "))}</span></span>`
    + [1, 2, 3, 4, 5].map((r) => `<button data-rate="${r}" title="rate ${r}">${r}★</button>`).join("") + "</li>").join("")
    || `<li class="muted">no title contains “${esc(q)}”</li>`;
  list.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
    const li = b.closest("li");
    state.ratings.set(Number(li.dataset.id), { title: li.querySelector(".title").firstChild.textContent, rating: Number(b.dataset.rate) });
    renderRatings(); recommendMe();
  }));
}

function renderRatings() {
  const ul = $("my-ratings");
  if (!state.ratings.size) { ul.innerHTML = `<li class="muted">none yet: you get the cold-start list</li>`; return; }
  ul.innerHTML = [...state.ratings].map(([id, r]) => `<li data-id="${id}"><span class="title">${esc(r.title)}</span><b>${r.rating}★</b><button title="remove">×</button></li>`).join("");
  ul.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
    state.ratings.delete(Number(b.closest("li").dataset.id)); renderRatings(); recommendMe();
  }));
}

async function recommendMe() {
  const ratings = [...state.ratings].map(([movie_id, r]) => ({ movie_id, rating: r.rating }));
  try {
    const res = await api("/recommendations", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ratings, k: 10, explain: true }) });
    $("my-source").textContent = `(${res.source}, model ${res.model_version})`;
    const why = (e) => e && e.because.length
      ? `<br><span class="because">because you rated ${e.because.filter((b) => b.contribution > 0).map((b) => esc(b.title || `movie ${b.movie_id}`)).join(", ") || "them"}</span>`
      : `<br><span class="because">popular right now</span>`;
    $("my-list").innerHTML = res.items.map((m) => `<li data-id="${m.movie_id}">${esc(m.title)} <span class="pred">predicted ${m.predicted_rating.toFixed(1)}★</span><br><span class="genres">${esc(m.genres.join(" · "))}</span>${why(m.explanation)}</li>`).join("");
  } catch (err) {
    $("my-source").textContent = `(${needsKey(err)})`;
    $("my-list").innerHTML = "";
  }
}

// -- polling -----------------------------------------------------------------------------------

async function tick() {
  const jobs = [refreshStream(), refreshAggregates(), refreshReady(), refreshDeadLetters(), refreshLiveEval()];
  const results = await Promise.allSettled(jobs);
  const failed = results.filter((r) => r.status === "rejected");
  $("updated").textContent = failed.length ? `update failed: ${failed[0].reason.message}` : `updated ${new Date().toLocaleTimeString()}`;
  document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
}

renderKeyState();
refreshModels().catch(() => {});
setInterval(() => refreshModels().catch(() => {}), 10000);
recommendMe();
tick();
setInterval(tick, POLL_MS);
