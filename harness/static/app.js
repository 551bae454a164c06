// ragkata playground: ask the pipeline, read the documents behind its hits, and follow runs over time.
// Vanilla JS over the JSON API in harness/service.py; charts are hand-drawn SVG. No network beyond this server.
"use strict";

const KEY_METRICS = ["evidence_recall@5", "citation_precision", "fact_recall", "abstention_f1"];
const METRIC_COLOURS = ["#0969da", "#bc4c00", "#8250df", "#1b7c83"];
const STAGE_COLOURS = ["#0969da", "#8250df", "#bc4c00", "#1b7c83", "#cf222e", "#57606a"];
const state = { token: sessionStorage.getItem("ragkata-token") || "", golden: [], ask: null, runs: [], run: null, flips: {} };

const $ = (selector) => document.querySelector(selector);
const esc = (value) => String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmt = (value, digits = 2) => (typeof value === "number" ? value.toFixed(digits) : "–");
const escapeRegex = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// --- talking to the server ------------------------------------------------------------------------

function send(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  return fetch(path, body === undefined ? { headers } : { method: "POST", headers, body: JSON.stringify(body) });
}

async function readJson(response) {
  let data = null;
  try { data = await response.json(); } catch (_) { /* not JSON */ }
  if (response.status === 401) $("#token-bar").hidden = false;
  if (!response.ok) throw new Error((data && data.detail) || `${response.status} ${response.statusText}`);
  return data;
}

async function api(path, body) {
  return readJson(await send(path, body));
}

/** POST /api/ask with stream: each NDJSON event goes to onEvent as it arrives; resolves to the final response. */
async function askStreaming(body, onEvent) {
  const response = await send("/api/ask", { ...body, stream: true });
  if (!response.ok) return readJson(response);  // throws with the server's detail
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (!line) continue;
      const event = JSON.parse(line);
      if (event.event === "error") throw new Error(event.detail);
      if (event.event === "answer") return event.answer;
      onEvent(event);
    }
    if (done) throw new Error("the answer stream ended before the answer");
  }
}

const docUrl = (docId) => "/api/docs/" + docId.split("/").map(encodeURIComponent).join("/");

// --- Markdown, safely ------------------------------------------------------------------------------

/** A source's [n] marker: a link that opens the source, or plain text when no source has that number. */
function marker(n, sources) {
  const source = sources[n - 1];
  return source ? `<a href="#" class="marker" data-testid="marker" data-n="${n}" title="${esc(source.chunk_id)}">[${n}]</a>`
    : `<span class="marker invalid" title="no source ${n}">[${n}]</span>`;
}

/** One line's inline Markdown. Escaped first, so nothing in the text can become a tag or an attribute; then
 * `code` (left alone inside), **bold**, *italics* or _italics_, and [n] or [1, 3] markers become markup. */
function inlineMarkdown(line, sources) {
  return line.split(/(`[^`]+`)/).map((part, i) => {
    if (i % 2 === 1) return `<code>${esc(part.slice(1, -1))}</code>`;
    return esc(part)  // after esc, a "<" can only open a tag made here: excluding it keeps the tags nested
      .replace(/\*\*\*(?=\S)([^<]+?)(?<=\S)\*\*\*/g, "<strong><em>$1</em></strong>")
      .replace(/\*\*(?=\S)([^<]+?)(?<=\S)\*\*/g, "<strong>$1</strong>")
      .replace(/(^|[^_\w])__(?=\S)([^<]+?)(?<=\S)__(?![_\w])/g, "$1<strong>$2</strong>")
      .replace(/(^|[^*\w])\*(?=\S)([^*<]+?)(?<=\S)\*(?![*\w])/g, "$1<em>$2</em>")
      .replace(/(^|[^_\w])_(?=\S)([^_<]+?)(?<=\S)_(?![_\w])/g, "$1<em>$2</em>")
      .replace(/\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]/g, (_, list) => list.split(",").map((n) => marker(Number(n), sources)).join(""));
  }).join("");
}

/** A model's (or a document's) Markdown as HTML, with no HTML of its own ever kept: paragraphs, "- " and "1. "
 * lists and inlineMarkdown. "Port **9100** [1]\n\n<img src=x>" -> "<p>Port <strong>9100</strong> <a…>[1]</a></p>
 * <p>&lt;img src=x&gt;</p>". sources: the answer's numbered context, for the [n] links. */
function renderMarkdown(text, sources = []) {
  const out = [];
  let paragraph = [];
  let list = null;
  const endParagraph = () => {
    if (paragraph.length) out.push(`<p>${paragraph.map((l) => inlineMarkdown(l, sources)).join("<br>")}</p>`);
    paragraph = [];
  };
  const endList = () => {
    if (list) out.push(`<${list.tag}>${list.items.map((item) => `<li>${inlineMarkdown(item, sources)}</li>`).join("")}</${list.tag}>`);
    list = null;
  };
  for (const line of String(text ?? "").replace(/\r\n?/g, "\n").split("\n")) {
    const bullet = /^\s*[-*+]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d{1,3}[.)]\s+(.*)$/.exec(line);
    if (!line.trim()) {
      endParagraph();
      endList();
    } else if (bullet || numbered) {
      const tag = bullet ? "ul" : "ol";
      endParagraph();
      if (list && list.tag !== tag) endList();
      list = list || { tag, items: [] };
      list.items.push((bullet || numbered)[1]);
    } else if (list && /^\s{2,}\S/.test(line)) {
      list.items[list.items.length - 1] += ` ${line.trim()}`;  // an item's continuation line
    } else {
      endList();
      paragraph.push(line);
    }
  }
  endParagraph();
  endList();
  return out.join("");
}

/** Make the [n] markers inside `box` open their source's document. */
function linkMarkers(box, sources, quotes = []) {
  box.querySelectorAll("a.marker").forEach((a) => a.addEventListener("click", (event) => {
    event.preventDefault();
    const source = sources[Number(a.dataset.n) - 1];
    if (source) openDoc(source.doc_id, source, quotes);
  }));
}

// --- highlighting ---------------------------------------------------------------------------------

/** Where `quote` occurs in `text`, any run of whitespace matching any other (as harness/metrics.covers). */
function findAll(text, quote) {
  const words = quote.trim().split(/\s+/).filter(Boolean);
  if (!words.length) return [];
  const pattern = new RegExp(words.map(escapeRegex).join("\\s+"), "g");
  return [...text.matchAll(pattern)].map((m) => ({ start: m.index, end: m.index + m[0].length }));
}

/** Text as HTML with <mark> around ranges; overlapping ranges combine their classes. */
function markRanges(text, ranges) {
  const cuts = new Set([0, text.length]);
  ranges.forEach((r) => { cuts.add(Math.max(0, Math.min(text.length, r.start))); cuts.add(Math.max(0, Math.min(text.length, r.end))); });
  const points = [...cuts].sort((a, b) => a - b);
  let html = "";
  for (let i = 0; i < points.length - 1; i++) {
    const [from, to] = [points[i], points[i + 1]];
    const active = ranges.filter((r) => r.start <= from && r.end >= to);
    const piece = esc(text.slice(from, to));
    if (!active.length) { html += piece; continue; }
    const classes = [...new Set(active.map((r) => r.cls))].join(" ");
    const testid = active.map((r) => r.testid).find(Boolean);
    html += `<mark class="${classes}"${testid ? ` data-testid="${testid}"` : ""}>${piece}</mark>`;
  }
  return html;
}

function quoteRanges(text, quotes) {
  return quotes.flatMap((q) => findAll(text, q).map((r) => ({ ...r, cls: "evidence-quote", testid: "evidence-quote" })));
}

/** The chunk's span in the document: its offsets when known, else where its text occurs. */
function chunkSpan(docText, chunk) {
  if (Number.isInteger(chunk.start) && chunk.end > chunk.start && chunk.end <= docText.length) return { start: chunk.start, end: chunk.end };
  const exact = docText.indexOf(chunk.text);
  if (chunk.text && exact >= 0) return { start: exact, end: exact + chunk.text.length };
  const lines = (chunk.text || "").split("\n");
  for (const candidate of [chunk.text || "", lines.slice(1).join("\n")]) {  // a chunk may start with a heading path
    const found = candidate.trim() ? findAll(docText, candidate)[0] : null;
    if (found) return found;
  }
  return null;
}

// --- document viewer ------------------------------------------------------------------------------

async function openDoc(docId, chunk = null, quotes = []) {
  const dialog = $("#doc-viewer");
  $("#doc-title").textContent = docId;
  $("#doc-meta").textContent = "loading…";
  $("#doc-text").textContent = "";
  if (!dialog.open) dialog.showModal();
  let doc;
  try { doc = await api(docUrl(docId)); } catch (err) { $("#doc-meta").innerHTML = `<span class="error-text">${esc(err.message)}</span>`; return; }
  $("#doc-title").textContent = doc.title;
  const badges = [`<span class="mono">${esc(doc.doc_id)}</span>`, esc(doc.type), esc(doc.product), `updated ${esc(doc.updated)}`];
  if (doc.status === "superseded") {
    badges.push(`<span class="badge superseded">superseded</span> by <a data-doc="${esc(doc.superseded_by)}">${esc(doc.superseded_by)}</a>`);
  }
  if (doc.injection) badges.push(`<span class="badge injection">injection${doc.canary ? " · " + esc(doc.canary) : ""}</span>`);
  const ranges = quoteRanges(doc.text, quotes);
  const span = chunk ? chunkSpan(doc.text, chunk) : null;
  if (span) ranges.push({ ...span, cls: "chunk", testid: "chunk-highlight" });
  if (span) badges.push(`<span class="badge chunk-badge">highlighted: ${esc(chunk.chunk_id)}</span>`);
  $("#doc-meta").innerHTML = badges.join(" · ");
  $("#doc-meta").querySelectorAll("a[data-doc]").forEach((a) => a.addEventListener("click", () => openDoc(a.dataset.doc)));
  $("#doc-text").innerHTML = markRanges(doc.text, ranges);
  const target = $("#doc-text mark.chunk.evidence-quote") || $("#doc-text mark.chunk") || $("#doc-text mark");
  if (target) $("#doc-text").scrollTop = Math.max(0, target.offsetTop - 60);
}

// --- ask ------------------------------------------------------------------------------------------

function badgesFor(hit) {
  const out = [];
  if (hit.in_context) out.push('<span class="badge context">context</span>');
  if (hit.cited) out.push('<span class="badge cited">cited</span>');
  if (hit.evidence && hit.evidence.length) out.push('<span class="badge evidence" data-testid="evidence-badge">evidence</span>');
  if (hit.doc_status === "superseded") out.push(`<span class="badge superseded" title="superseded by ${esc(hit.superseded_by)}">superseded</span>`);
  if (hit.injection) out.push('<span class="badge injection" data-testid="injection-badge">injection</span>');
  return out.join(" ");
}

function evidenceQuotes(golden, hit) {
  if (!golden) return [];
  return (hit ? hit.evidence.map((i) => golden.evidence[i]) : golden.evidence).filter(Boolean).map((e) => e.quote);
}

function renderHits(hits, golden) {
  $("#hits-count").textContent = `(${hits.length})`;
  const list = $("#hits");
  if (!hits.length) { list.innerHTML = '<li class="empty">No hits.</li>'; return; }
  list.innerHTML = hits.map((hit, i) => {
    const classes = ["hit", hit.in_context && "in-context", hit.evidence.length && "is-evidence",
      hit.doc_status === "superseded" && "is-superseded", hit.injection && "is-injection"].filter(Boolean).join(" ");
    return `<li class="${classes}" data-testid="hit" data-index="${i}" data-chunk-id="${esc(hit.chunk_id)}">
      <div class="hit-head"><span class="rank">${esc(hit.label || `#${hit.rank}`)}</span><span class="score">${fmt(hit.score, 3)}</span>${badgesFor(hit)}</div>
      <div class="hit-title">${esc(hit.doc_title || hit.doc_id)} <span class="muted mono">${esc(hit.chunk_id)}</span></div>
      <div class="hit-text">${markRanges(hit.text, quoteRanges(hit.text, evidenceQuotes(golden, hit)))}</div></li>`;
  }).join("");
  list.querySelectorAll(".hit").forEach((el) => el.addEventListener("click", () => {
    const hit = hits[Number(el.dataset.index)];
    openDoc(hit.doc_id, hit, evidenceQuotes(golden, null));
  }));
  list.scrollTop = 0;
  list.querySelectorAll(".hit-text").forEach((box) => {  // bring the evidence quote into the clipped box
    const mark = box.querySelector("mark");
    if (mark) box.scrollTop = Math.max(0, mark.offsetTop - 24);
  });
}

function renderLatency(latency) {
  const stages = Object.entries(latency).filter(([name]) => name !== "total");
  const total = latency.total ?? stages.reduce((sum, [, ms]) => sum + ms, 0);
  const bar = stages.map(([name, ms], i) => `<span title="${esc(name)} ${fmt(ms, 1)} ms" style="width:${total > 0 ? (100 * ms) / total : 0}%;background:${STAGE_COLOURS[i % STAGE_COLOURS.length]}"></span>`).join("");
  const text = stages.map(([name, ms], i) => `<span class="swatch" style="background:${STAGE_COLOURS[i % STAGE_COLOURS.length]}"></span>${esc(name)} ${fmt(ms, 1)} ms`).join(" · ");
  $("#latency").innerHTML = `<div class="latency-bar">${bar}</div><div class="latency-text">${text} · <b>total ${fmt(total, 1)} ms</b></div>`;
}

/** "model: 512 prompt + 24 completion tokens · $0.000123", or why there are none; nothing for no model call. */
function renderUsage(usage) {
  if (!usage || (!usage.calls && !usage.cached)) return;
  const counted = usage.prompt_tokens || usage.completion_tokens;
  const parts = [counted ? `${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens`
    : "the server reported no token counts"];
  if (usage.cached) parts.push("from the reply cache, no cost");
  else if (counted) parts.push(usage.cost_usd > 0 ? `$${usage.cost_usd.toFixed(6)}` : "no cost at the Config's prices");
  $("#latency").insertAdjacentHTML("beforeend", `<div class="latency-text" data-testid="usage">model: ${esc(parts.join(" · "))}</div>`);
}

/** The numbered context of a streamed answer, shown in the hits panel until the ranked hits arrive. */
function renderSources(sources) {
  renderHits(sources.map((s) => ({ ...s, label: `[${s.n}]`, rank: s.n, score: null, in_context: true, cited: false, evidence: [] })), null);
  $("#hits-count").textContent = `(${sources.length} handed to the generator; the ranking follows the answer)`;
}

/** The answer so far, while it streams in. */
function renderPartial(text, sources) {
  const answer = $("#answer");
  answer.className = "answer streaming";
  answer.innerHTML = renderMarkdown(text, sources) || "&nbsp;";
  linkMarkers(answer, sources);
}

function renderExpected(golden, answerText, hits) {
  if (!golden) { $("#expected").innerHTML = ""; return; }
  const said = answerText.toLowerCase().replace(/\s+/g, " ");
  const facts = golden.facts.map((f) => `<span class="fact ${said.includes(f.toLowerCase().replace(/\s+/g, " ")) ? "found" : "missing"}">${esc(f)}</span>`).join("");
  const evidence = golden.evidence.map((e, i) => {
    const at = hits.find((h) => h.evidence.includes(i));
    const where = at ? `retrieved at #${at.rank}${at.in_context ? ", in context" : ""}` : "not in the hits shown";
    return `<div class="quote ${at ? "" : "missed"}"><span class="mono muted">${esc(e.doc_id)}</span> · <i>${where}</i><br>${esc(e.quote)}</div>`;
  }).join("");
  $("#expected").innerHTML = `<h3>Expected (golden ${esc(golden.id)})</h3>
    <div>${golden.answerable ? esc(golden.answer) : "<i>unanswerable: the pipeline should abstain</i>"}</div>
    ${facts ? `<div>facts: ${facts}</div>` : ""}${evidence}`;
}

function renderAnswer(res) {
  state.ask = res;
  const answer = $("#answer");
  answer.className = "answer";
  answer.innerHTML = (res.abstained ? '<span class="badge abstained">abstained</span> ' : "") +
    (renderMarkdown(res.answer, res.sources) || '<span class="muted">(empty answer)</span>');
  linkMarkers(answer, res.sources, evidenceQuotes(res.golden, null));
  const byId = Object.fromEntries(res.retrieved.map((h) => [h.chunk_id, h]));
  $("#citations").innerHTML = res.citations.map((id) => {
    const hit = byId[id];
    const n = res.context.indexOf(id) + 1;  // the source number its [n] markers use; 0: not in the context
    return `<button type="button" class="citation ${hit && hit.evidence.length ? "is-evidence" : ""}" data-testid="citation" data-chunk-id="${esc(id)}">${n ? `[${n}] ` : ""}${esc(id)}</button>`;
  }).join("") || '<span class="muted">no citations</span>';
  $("#citations").querySelectorAll(".citation").forEach((button) => button.addEventListener("click", () => {
    const hit = byId[button.dataset.chunkId];
    const docId = hit ? hit.doc_id : button.dataset.chunkId.split("#")[0];
    openDoc(docId, hit || null, evidenceQuotes(res.golden, null));
  }));
  renderLatency(res.latency_ms);
  renderUsage(res.usage);
  renderExpected(res.golden, res.answer, res.retrieved);
  renderHits(res.retrieved, res.golden);
}

// The body for /api/ask, or for /api/search without golden_id: both take the question text as "question".
function askBody(withGolden) {
  const text = $("#question").value;
  const body = { question: text, k: Number($("#k").value) || 20 };
  const chosen = state.golden.find((q) => q.id === $("#golden-select").value);
  if (withGolden && chosen && chosen.question === text) body.golden_id = chosen.id;
  return body;
}

async function runAsk(event, searchOnly = false) {
  if (event) event.preventDefault();
  const status = $("#ask-status");
  const buttons = [$("#ask-button"), $("#search-button")];
  buttons.forEach((b) => { b.disabled = true; });
  status.className = "status";
  status.textContent = searchOnly ? "searching…" : "asking…";
  try {
    if (searchOnly) {
      const res = await api("/api/search", askBody(false));
      $("#answer").className = "answer placeholder";
      $("#answer").textContent = "Search only: no answer generated.";
      ["#citations", "#expected"].forEach((s) => { $(s).innerHTML = ""; });
      renderLatency(res.latency_ms);
      renderHits(res.hits, null);
    } else {
      let text = "";
      let sources = [];
      const final = await askStreaming(askBody(true), (event) => {
        if (event.event === "context") {
          sources = event.sources;
          status.textContent = "generating…";
          ["#citations", "#latency", "#expected"].forEach((s) => { $(s).innerHTML = ""; });
          renderSources(sources);
          renderPartial(text, sources);
        } else if (event.event === "delta") {
          text += event.text;
          renderPartial(text, sources);
        }
      });
      renderAnswer(final);
    }
    status.textContent = "";
  } catch (err) {
    status.className = "status error";
    status.textContent = "failed";
    $("#answer").className = "answer error";
    $("#answer").textContent = err.message;
    ["#citations", "#latency", "#expected"].forEach((s) => { $(s).innerHTML = ""; });
    $("#hits-count").textContent = "";
    $("#hits").innerHTML = '<li class="empty">No hits: the request failed.</li>';
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

async function loadGolden() {
  state.golden = await api("/api/golden");
  $("#golden-select").innerHTML = '<option value="">— or type your own question below —</option>' +
    state.golden.map((q) => `<option value="${esc(q.id)}">${esc(q.id)} · ${esc(q.question)} [${esc(q.tags.join(", "))}]</option>`).join("");
}

// --- runs: chart ----------------------------------------------------------------------------------

/** A run id's time: "11-22 16:34" with `withDate`, else "16:34:53" (ids look like 20261122T163453-74409c0). */
function runLabel(runId, withDate = false) {
  const m = /^\d{4}(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})/.exec(runId);
  if (!m) return runId.slice(0, 12);
  return withDate ? `${m[1]}-${m[2]} ${m[3]}:${m[4]}` : `${m[3]}:${m[4]}:${m[5]}`;
}

/** "#3 · 11-22 16:34": the chart's number and the time of a run. */
function runName(runId) {
  const index = state.runs.findIndex((r) => r.run_id === runId);
  return `#${index + 1} · ${runLabel(runId, true)}`;
}

/** The config fields whose values differ between runs, as "name=value" for this run. */
function configDiff(run) {
  const keys = new Set(state.runs.flatMap((r) => Object.keys(r.config || {})));
  const differs = [...keys].filter((k) => new Set(state.runs.map((r) => JSON.stringify((r.config || {})[k]))).size > 1);
  return differs.map((k) => `${k}=${JSON.stringify((run.config || {})[k])}`).join(" ");
}

function renderChart() {
  const box = $("#runs-chart");
  const runs = state.runs;
  const shown = (state.run && state.run.summary) || runs[runs.length - 1];
  $("#chart-legend").innerHTML = KEY_METRICS.map((name, i) => `<span><span class="swatch" style="background:${METRIC_COLOURS[i]}"></span>${esc(name)} <b>${shown ? fmt(shown.metrics[name]) : ""}</b></span>`).join(" ");
  if (!runs.length) {
    box.innerHTML = '<p class="muted">No runs yet in runs/: run <code>ragkata eval</code>, then Refresh.</p>';
    return;
  }
  const [W, H, L, R, T, B] = [800, 215, 46, 46, 10, 40];
  const x = (i) => (runs.length === 1 ? (L + W - R) / 2 : L + (i * (W - L - R)) / (runs.length - 1));
  const y = (v) => T + (1 - v) * (H - T - B);
  const parts = [];
  const selected = runs.findIndex((r) => state.run && r.run_id === state.run.summary.run_id);
  if (selected >= 0) parts.push(`<rect class="selected-band" x="${x(selected) - 14}" y="${T}" width="28" height="${H - T - B}" rx="4"/>`);
  [0, 0.25, 0.5, 0.75, 1].forEach((v) => parts.push(`<line class="grid" x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}"/><text x="${L - 8}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`));
  parts.push(`<line class="axis" x1="${L}" x2="${W - R}" y1="${y(0)}" y2="${y(0)}"/>`);
  const every = Math.max(1, Math.ceil(runs.length / 10));
  const manyDays = new Set(runs.map((r) => r.run_id.slice(0, 8))).size > 1;
  runs.forEach((run, i) => {
    if (i % every === 0 || i === runs.length - 1) parts.push(`<text x="${x(i)}" y="${H - B + 17}" text-anchor="middle">#${i + 1}</text><text x="${x(i)}" y="${H - B + 32}" text-anchor="middle">${esc(runLabel(run.run_id, manyDays))}</text>`);
  });
  KEY_METRICS.forEach((name, m) => {
    const points = runs.map((run, i) => [i, run.metrics[name]]).filter(([, v]) => typeof v === "number");
    if (points.length > 1) parts.push(`<polyline fill="none" stroke="${METRIC_COLOURS[m]}" stroke-width="2.5" points="${points.map(([i, v]) => `${x(i)},${y(v)}`).join(" ")}"/>`);
    points.forEach(([i, v]) => parts.push(`<circle class="point" data-testid="chart-point" data-run-id="${esc(runs[i].run_id)}" cx="${x(i)}" cy="${y(v)}" r="5.5" fill="${METRIC_COLOURS[m]}"><title>${esc(runs[i].run_id)}\n${esc(name)} ${fmt(v, 3)}</title></circle>`));
  });
  box.innerHTML = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="xMidYMid meet" role="img" aria-label="key metrics per run">${parts.join("")}</svg>`;
  box.querySelectorAll("circle[data-run-id]").forEach((c) => c.addEventListener("click", () => selectRun(c.dataset.runId)));
}

// --- runs: table, detail, compare -----------------------------------------------------------------

function failureBadge(label) { return `<span class="failure ${esc(label)}" data-testid="failure-label">${esc(label)}</span>`; }

function renderRunMetrics() {
  const s = state.run.summary;
  const diff = configDiff(s);
  const git = s.git && s.git.commit ? ` · commit ${esc(s.git.commit.slice(0, 7))}${s.git.dirty ? "+" : ""}` : "";
  $("#run-metrics").innerHTML = `<b>${esc(runName(s.run_id))}</b>${git} · pipeline <b>${esc(s.pipeline || "?")}</b>` +
    `${s.complete ? "" : " · <i>incomplete</i>"} · ${diff ? `config <b class="mono">${esc(diff)}</b>` : "same config as the other runs"}`;
  $("#run-metrics").title = JSON.stringify(s.config || {});
}

function fillFilters() {
  const samples = state.run.samples;
  const count = (pred) => samples.filter(pred).length;
  const labels = [...new Set(samples.map((s) => s.failure))].sort();
  const tags = [...new Set(samples.flatMap((s) => s.tags || []))].sort();
  const keep = (select, values) => (values.includes(select.value) ? select.value : "");
  const failure = keep($("#failure-filter"), labels);
  const tag = keep($("#tag-filter"), tags);
  $("#failure-filter").innerHTML = `<option value="">all (${samples.length})</option>` + labels.map((l) => `<option value="${esc(l)}">${esc(l)} (${count((s) => s.failure === l)})</option>`).join("");
  $("#tag-filter").innerHTML = `<option value="">all</option>` + tags.map((t) => `<option value="${esc(t)}">${esc(t)} (${count((s) => (s.tags || []).includes(t))})</option>`).join("");
  $("#failure-filter").value = failure;
  $("#tag-filter").value = tag;
}

function renderTable() {
  if (!state.run) return;
  const failure = $("#failure-filter").value;
  const tag = $("#tag-filter").value;
  const rows = state.run.samples.filter((s) => (!failure || s.failure === failure) && (!tag || (s.tags || []).includes(tag)));
  $("#table-count").textContent = `${rows.length} of ${state.run.samples.length} questions`;
  $("#questions-table tbody").innerHTML = rows.map((s) => {
    const flip = state.flips[s.id];
    const classes = ["question-row", flip && (flip.after === "ok" ? "flipped-fixed" : "flipped-broke")].filter(Boolean).join(" ");
    const score = (name) => `<td class="num">${fmt((s.scores || {})[name])}</td>`;
    return `<tr class="${classes}" data-testid="question-row" data-id="${esc(s.id)}" data-failure="${esc(s.failure)}">
      <td class="mono id">${esc(s.id)}</td><td>${esc(s.question)}</td><td>${failureBadge(s.failure)}</td>
      ${score("evidence_recall@5")}${score("fact_recall")}${score("citation_precision")}</tr>`;
  }).join("") || '<tr><td colspan="6" class="muted">No question matches these filters.</td></tr>';
  document.querySelectorAll("#questions-table tr.question-row").forEach((tr) => tr.addEventListener("click", () => showSample(tr.dataset.id)));
}

function showSample(id) {
  const s = state.run.samples.find((x) => x.id === id);
  if (!s) return;
  document.querySelectorAll("#questions-table tr.question-row").forEach((tr) => tr.classList.toggle("selected", tr.dataset.id === id));
  const expected = s.expected;
  const quotes = expected ? expected.evidence.map((e) => e.quote) : [];
  const cited = new Set(s.citations || []);
  const context = new Set(s.context || []);
  const hits = (s.retrieved || []).map((h, i) => ({ ...h, rank: i + 1, in_context: context.has(h.chunk_id), cited: cited.has(h.chunk_id), evidence: h.evidence || [] }));
  const sources = (s.context || []).map((id) => hits.find((h) => h.chunk_id === id) || { chunk_id: id, doc_id: id.split("#")[0] });
  const flip = state.flips[s.id];
  $("#question-detail").innerHTML = `
    <p><b class="mono">${esc(s.id)}</b> ${failureBadge(s.failure)} ${flip ? `<span class="muted">was ${esc(flip.before)} in the baseline</span>` : ""}</p>
    <p>${esc(s.question)}</p>
    ${s.error ? `<div class="error-text">${esc(s.error)}</div>` : ""}
    <h3>Answer given</h3><div class="answer-given">${s.abstained ? '<span class="badge abstained">abstained</span> ' : ""}${renderMarkdown(s.answer, sources) || '<span class="muted">(empty)</span>'}</div>
    <div class="citations">${(s.citations || []).map((c) => `<button type="button" class="citation ${hits.some((h) => h.chunk_id === c && h.evidence.length) ? "is-evidence" : ""}" data-chunk-id="${esc(c)}">${esc(c)}</button>`).join("") || '<span class="muted">no citations</span>'}</div>
    <h3>Expected</h3>
    ${expected ? `<p>${expected.answerable ? esc(expected.answer) : "<i>unanswerable: should abstain</i>"}</p>` +
      expected.evidence.map((e, i) => `<div class="quote ${hits.some((h) => h.evidence.includes(i)) ? "" : "missed"}"><span class="mono muted">${esc(e.doc_id)}</span><br>${esc(e.quote)}</div>`).join("")
      : '<p class="muted">not a question of the loaded dev set</p>'}
    <h3>Retrieved (top ${hits.length})</h3>
    <ol class="mini-hits">${hits.map((h, i) => `<li class="${h.evidence.length ? "is-evidence" : ""}" data-index="${i}"><span class="rank">#${h.rank}</span><span class="score">${fmt(h.score, 3)}</span><span class="mono">${esc(h.chunk_id)}</span> ${badgesFor(h)}</li>`).join("")}</ol>`;
  const detail = $("#question-detail");
  linkMarkers(detail, sources, quotes);
  detail.querySelectorAll(".mini-hits li").forEach((li) => li.addEventListener("click", () => {
    const h = hits[Number(li.dataset.index)];
    openDoc(h.doc_id, h, quotes);
  }));
  detail.querySelectorAll(".citation").forEach((b) => b.addEventListener("click", () => {
    const h = hits.find((x) => x.chunk_id === b.dataset.chunkId);
    openDoc(h ? h.doc_id : b.dataset.chunkId.split("#")[0], h || null, quotes);
  }));
  detail.scrollTop = 0;
}

async function selectRun(runId) {
  $("#run-select").value = runId;
  state.run = await api(`/api/runs/${encodeURIComponent(runId)}`);
  state.flips = {};
  $("#compare-result").innerHTML = '<p class="muted">Pick a baseline run: the questions that flipped between ok and a failure show here.</p>';
  const others = state.runs.filter((r) => r.run_id !== runId).reverse();
  $("#compare-select").innerHTML = others.map((r) => `<option value="${esc(r.run_id)}">${esc(runName(r.run_id))}</option>`).join("") || "<option value=\"\">(no other run)</option>";
  renderRunMetrics();
  fillFilters();
  renderTable();
  renderChart();
  $("#question-detail").innerHTML = '<p class="muted">Click a question in the table to see what was retrieved, cited and expected.</p>';
}

async function loadRuns() {
  state.runs = await api("/api/runs");
  $("#run-select").innerHTML = [...state.runs].reverse().map((r) => `<option value="${esc(r.run_id)}">${esc(runName(r.run_id))}${r.latest ? " (latest)" : ""}</option>`).join("");
  renderChart();
  const current = state.run && state.runs.find((r) => r.run_id === state.run.summary.run_id);
  const pick = current || state.runs[state.runs.length - 1];
  if (pick) await selectRun(pick.run_id);
}

async function compareRuns() {
  const baseline = $("#compare-select").value;
  if (!state.run || !baseline) return;
  const result = $("#compare-result");
  try {
    const res = await api(`/api/compare?a=${encodeURIComponent(baseline)}&b=${encodeURIComponent(state.run.summary.run_id)}`);
    state.flips = Object.fromEntries(res.flips.map((f) => [f.id, f]));
    const deltas = res.deltas.filter((d) => KEY_METRICS.includes(d.metric) || d.metric.startsWith("mrr"));
    const verdict = (d) => (d.low > 0 ? '<span class="gain">real gain</span>' : d.high < 0 ? '<span class="loss">real loss</span>' : '<span class="muted">within noise</span>');
    const fixed = res.flips.filter((f) => f.after === "ok").length;
    result.innerHTML = `<p>${esc(runName(baseline))} → ${esc(runName(res.b))}: <b>${res.flips.length}</b> question(s) flipped,
      <span class="gain">${fixed} now ok</span>, <span class="loss">${res.flips.length - fixed} now failing</span>.</p>
      <div class="flips" data-testid="flips">${res.flips.map((f) => `<div class="flip ${f.after === "ok" ? "fixed" : "broke"}" data-testid="flip" data-id="${esc(f.id)}" title="${esc(f.question)}"><span class="mono">${esc(f.id)}</span>${failureBadge(f.before)}<span class="arrow">→</span>${failureBadge(f.after)}<span class="muted q">${esc(f.question)}</span></div>`).join("")}</div>
      <table><thead><tr><th>metric</th><th>baseline</th><th>this run</th><th>Δ [95% CI]</th><th></th></tr></thead><tbody>
      ${deltas.map((d) => `<tr><td>${esc(d.metric)}</td><td>${fmt(d.a)}</td><td>${fmt(d.b)}</td><td>${d.delta >= 0 ? "+" : ""}${fmt(d.delta)} [${fmt(d.low)}, ${fmt(d.high)}]</td><td>${verdict(d)}</td></tr>`).join("")}</tbody></table>`;
    result.querySelectorAll(".flip").forEach((el) => el.addEventListener("click", () => showSample(el.dataset.id)));
    renderTable();
  } catch (err) {
    result.innerHTML = `<p class="error-text">${esc(err.message)}</p>`;
  }
}

// --- wiring ---------------------------------------------------------------------------------------

function showView(name) {
  document.querySelectorAll(".tabs button").forEach((b) => b.setAttribute("aria-selected", String(b.dataset.view === name)));
  $("#view-ask").hidden = name !== "ask";
  $("#view-runs").hidden = name !== "runs";
  if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
  if (name === "runs") loadRuns().catch((err) => { $("#runs-chart").innerHTML = `<p class="error-text">${esc(err.message)}</p>`; });
}

async function start() {
  try {
    const health = await api("/healthz");
    $("#server-info").textContent = `pipeline ${health.pipeline} · ${health.docs} docs · ${health.golden} dev questions · retriever ${health.config.retriever || "?"}`;
  } catch (err) {
    $("#server-info").textContent = `server unreachable: ${err.message}`;
  }
  try {
    await loadGolden();
    $("#ask-status").textContent = "";
  } catch (err) {
    $("#ask-status").textContent = err.message;
    $("#ask-status").title = err.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#ask-form").addEventListener("submit", (e) => runAsk(e));
  $("#search-button").addEventListener("click", () => runAsk(null, true));
  $("#question").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) runAsk(e); });
  $("#golden-select").addEventListener("change", () => {
    const chosen = state.golden.find((q) => q.id === $("#golden-select").value);
    if (chosen) $("#question").value = chosen.question;
  });
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => showView(b.dataset.view)));
  $("#run-select").addEventListener("change", () => selectRun($("#run-select").value));
  $("#failure-filter").addEventListener("change", renderTable);
  $("#tag-filter").addEventListener("change", renderTable);
  $("#compare-button").addEventListener("click", compareRuns);
  $("#runs-refresh").addEventListener("click", () => loadRuns());
  $("#doc-close").addEventListener("click", () => $("#doc-viewer").close());
  $("#doc-viewer").addEventListener("click", (e) => { if (e.target === $("#doc-viewer")) $("#doc-viewer").close(); });
  $("#token-bar").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("#token-input").value.trim();
    sessionStorage.setItem("ragkata-token", state.token);
    $("#token-bar").hidden = true;
    start();
  });
  showView(location.hash === "#runs" ? "runs" : "ask");
  start();
});
