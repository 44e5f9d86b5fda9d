// geoemb explore: click the map to add exemplars; every change re-runs /search over the viewport.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const state = { pos: [], neg: [], combine: "mean", invert: false, view: "topk", k: 50, threshold: null };
  const ui = { seq: 0, done: 0, last: null, lastBody: null, info: null, errors: 0 };
  window.explorer = { state, ui };

  const map = L.map("map", {
    preferCanvas: true, worldCopyJump: false, minZoom: 1, maxZoom: 16,
    maxBounds: [[-90, -180], [90, 180]], maxBoundsViscosity: 1.0,
  });
  window.explorer.map = map;
  const corpusLayer = L.tileLayer("/tiles/{z}/{x}/{y}.png", {
    noWrap: true, maxZoom: 16, attribution: "corpus PCA-RGB (geoemb)",
  });
  const heatLayer = L.layerGroup().addTo(map);
  const resultLayer = L.layerGroup().addTo(map);
  const exemplarLayer = L.layerGroup().addTo(map);
  let heatOverlay = null;
  let controller = null;
  let timer = null;

  function showError(msg) { $("error").textContent = msg || ""; if (msg) ui.errors += 1; }

  async function api(path, body) {
    const r = await fetch(path, {
      method: body === undefined ? "GET" : "POST",
      headers: body === undefined ? {} : { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!r.ok) {
      let msg = `${r.status}`;
      try { const j = await r.json(); msg = (j.error && j.error.message) || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  }

  // ---------------------------------------------------------------- state <-> URL hash
  const encRef = (e) => `${e.id}@${e.lon},${e.lat}`;
  function decRefs(s) {
    if (!s) return [];
    return s.split(";").filter(Boolean).map((t) => {
      const [id, ll] = t.split("@");
      const out = { id: Number(id) };
      if (ll) { const [lon, lat] = ll.split(",").map(Number); out.lon = lon; out.lat = lat; }
      return out;
    }).filter((e) => Number.isInteger(e.id));
  }
  function writeHash() {
    const c = map.getCenter();
    const p = new URLSearchParams();
    p.set("p", state.pos.map(encRef).join(";"));
    p.set("n", state.neg.map(encRef).join(";"));
    p.set("c", state.combine); p.set("i", state.invert ? "1" : "0");
    p.set("v", state.view); p.set("k", String(state.k));
    if (state.threshold !== null) p.set("t", String(state.threshold));
    p.set("m", `${map.getZoom()}/${c.lat.toFixed(5)}/${c.lng.toFixed(5)}`);
    history.replaceState(null, "", "#" + p.toString());
  }
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    state.pos = decRefs(p.get("p")); state.neg = decRefs(p.get("n"));
    if (p.get("c")) state.combine = p.get("c");
    state.invert = p.get("i") === "1";
    if (p.get("v")) state.view = p.get("v");
    if (p.get("k")) state.k = Number(p.get("k"));
    state.threshold = p.get("t") !== null ? Number(p.get("t")) : null;
    const m = (p.get("m") || "").split("/").map(Number);
    return m.length === 3 && m.every(Number.isFinite) ? m : null;
  }
  function syncControls() {
    $("combine").value = state.combine; $("invert").checked = state.invert;
    $("view-topk").checked = state.view === "topk"; $("view-threshold").checked = state.view === "threshold";
    $("k").value = state.k; $("threshold").value = state.threshold === null ? "" : state.threshold;
  }

  // ---------------------------------------------------------------- exemplars
  function renderExemplars() {
    exemplarLayer.clearLayers();
    const ul = $("exemplars"); ul.textContent = "";
    for (const [kind, list] of [["pos", state.pos], ["neg", state.neg]]) {
      list.forEach((e, i) => {
        const li = document.createElement("li");
        li.dataset.kind = kind; li.dataset.id = e.id;
        li.innerHTML = `<span class="badge ${kind}">${kind === "pos" ? "+" : "−"}</span>`;
        li.append(`id ${e.id}` + (e.lon !== undefined ? ` (${e.lon.toFixed(3)}, ${e.lat.toFixed(3)})` : ""));
        const rm = document.createElement("button"); rm.textContent = "×"; rm.title = "remove";
        rm.onclick = () => { list.splice(i, 1); changed(); };
        li.append(rm); ul.append(li);
        if (e.lon !== undefined) {
          L.circleMarker([e.lat, e.lon], {
            radius: 8, weight: 3, color: "#fff", fillOpacity: 1,
            fillColor: kind === "pos" ? "#18a558" : "#d62728",
          }).bindTooltip(`${kind === "pos" ? "positive" : "negative"} ${e.id}`).addTo(exemplarLayer);
        }
      });
    }
  }
  function addExemplar(kind, row) {
    if ([...state.pos, ...state.neg].some((e) => e.id === row.id)) {
      showError(`row ${row.id} is already an exemplar`); return;
    }
    (kind === "pos" ? state.pos : state.neg).push({ id: row.id, lon: row.lon, lat: row.lat });
    changed();
  }
  async function addByPoint(kind, latlng) {
    const p = map.latLngToContainerPoint(latlng);
    const q = map.containerPointToLatLng([p.x + 6, p.y]);
    const tol = Math.min(5, Math.abs(q.lng - latlng.lng));
    try {
      const r = await api("/exemplar", { lon: latlng.lng, lat: latlng.lat, tolerance_deg: tol });
      addExemplar(kind, await r.json());
    } catch (e) { showError(e.message); }
  }
  async function addByText(kind) {
    const t = $("ref-input").value.trim();
    let body;
    if (/^-?\d+$/.test(t)) body = { id: Number(t) };
    else {
      const m = t.split(",").map(Number);
      if (m.length !== 2 || !m.every(Number.isFinite)) { showError("type an id or lon,lat"); return; }
      body = { lon: m[0], lat: m[1] };
    }
    try { addExemplar(kind, await (await api("/exemplar", body)).json()); } catch (e) { showError(e.message); }
  }

  // ---------------------------------------------------------------- search
  function viewBbox() {
    const b = map.getBounds();
    let w = b.getWest(), e = b.getEast();
    if (e - w >= 360) { w = -180; e = 180; }
    w = Math.max(-180, w); e = Math.min(180, e);
    const s = Math.max(-85.05, b.getSouth()), n = Math.min(85.05, b.getNorth());
    return [w, s, e, n];
  }
  function queryBody() {
    const size = map.getSize();
    const ref = (e) => ({ id: e.id, ...(e.lon !== undefined ? { lon: e.lon, lat: e.lat } : {}) });
    const body = {
      bbox: viewBbox(), positives: state.pos.map(ref), negatives: state.neg.map(ref),
      combine: state.combine, invert: state.invert, k: state.k,
      width: Math.max(16, Math.min(2048, Math.ceil(size.x / 2))),
      height: Math.max(16, Math.min(2048, Math.ceil(size.y / 2))),
    };
    if (state.view === "threshold" && state.threshold !== null) body.threshold = state.threshold;
    return body;
  }
  function changed() { renderExemplars(); writeHash(); schedule(); }
  function schedule() { clearTimeout(timer); timer = setTimeout(runSearch, 120); }

  async function runSearch() {
    if (controller) controller.abort();
    const seq = ++ui.seq;
    if (!state.pos.length) {
      heatLayer.clearLayers(); resultLayer.clearLayers(); $("results").textContent = "";
      $("map").classList.remove("searching");
      drawHistogram(null); $("timing").textContent = "click the map to add a positive exemplar";
      ui.done = seq; return;
    }
    controller = new AbortController();
    const body = queryBody();
    const t0 = performance.now();
    try {
      const r = await fetch("/search", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), signal: controller.signal,
      });
      const j = await r.json();
      if (!r.ok) throw new Error((j.error && j.error.message) || String(r.status));
      if (seq !== ui.seq) return;  // a newer query is running
      render(j, performance.now() - t0);
      ui.last = j; ui.lastBody = body; showError("");
    } catch (e) {
      if (e.name === "AbortError") return;
      if (seq === ui.seq) showError(e.message);
    }
    if (seq === ui.seq) ui.done = seq;
  }

  function render(j, rtt) {
    $("map").classList.toggle("searching", $("dim").checked);
    heatLayer.clearLayers();
    if (j.heat.png) {
      const [w, s, e, n] = j.heat.bounds;
      heatOverlay = L.imageOverlay(j.heat.png, [[s, w], [n, e]], {
        opacity: Number($("opacity").value), className: "heat", interactive: false,
      }).addTo(heatLayer);
    }
    resultLayer.clearLayers();
    j.results.slice(0, 2000).forEach((r) => {
      L.circleMarker([r.lat, r.lon], { radius: 5, weight: 2, color: "#00e5ff", fillColor: "#fff", fillOpacity: 0.9 })
        .bindTooltip(`#${r.rank + 1} id ${r.id} score ${r.score.toFixed(2)}`).addTo(resultLayer);
    });
    const ol = $("results"); ol.textContent = "";
    j.results.slice(0, 200).forEach((r) => {
      const li = document.createElement("li"); li.dataset.id = r.id;
      li.textContent = `id ${r.id}  ${r.score.toFixed(2)}`;
      li.onclick = () => map.panTo([r.lat, r.lon]);
      ol.append(li);
    });
    const t = j.timing_ms;
    $("timing").textContent = `${j.n_results} results of ${j.n_candidates} rows in view (${j.n_shards} shards)` +
      ` · server ${t.total_ms.toFixed(0)} ms (score ${t.score_ms.toFixed(0)}, heat ${t.heat_ms.toFixed(0)})` +
      ` · click→map ${rtt.toFixed(0)} ms`;
    const kth = j.results.length ? j.results[j.results.length - 1].score : null;
    drawHistogram(j.histogram, kth);
  }

  function drawHistogram(h, kth) {
    const cv = $("histogram"), ctx = cv.getContext("2d");
    ctx.clearRect(0, 0, cv.width, cv.height);
    if (!h || !h.counts.length) return;
    const max = Math.max(...h.counts), bw = cv.width / h.counts.length, H = cv.height - 12;
    h.counts.forEach((c, i) => {
      const hi = max ? (c / max) * H : 0;
      ctx.fillStyle = kth !== null && h.edges[i] <= kth ? "#f4a300" : "#8a8fa3";
      ctx.fillRect(i * bw, H - hi, Math.max(1, bw - 1), hi);
    });
    ctx.fillStyle = "#333"; ctx.font = "10px sans-serif";
    ctx.fillText(h.edges[0].toFixed(1), 2, cv.height - 1);
    const last = h.edges[h.edges.length - 1].toFixed(1);
    ctx.fillText(last, cv.width - ctx.measureText(last).width - 2, cv.height - 1);
  }

  // ---------------------------------------------------------------- export / share
  async function doExport(format) {
    if (!state.pos.length) { showError("add a positive exemplar first"); return; }
    const body = { ...queryBody(), format };
    try {
      const r = await api("/export", body);
      const cd = r.headers.get("Content-Disposition") || "";
      const name = (cd.match(/filename="([^"]+)"/) || [])[1] || "geoemb-export";
      const url = URL.createObjectURL(await r.blob());
      const a = document.createElement("a"); a.href = url; a.download = name;
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) { showError(e.message); }
  }

  // ---------------------------------------------------------------- wiring
  map.on("click", (ev) => {
    const neg = ev.originalEvent.shiftKey || $("mode-neg").checked;
    addByPoint(neg ? "neg" : "pos", ev.latlng);
  });
  map.on("moveend", () => { writeHash(); schedule(); });
  $("add-pos").onclick = () => addByText("pos");
  $("add-neg").onclick = () => addByText("neg");
  $("clear").onclick = () => { state.pos = []; state.neg = []; changed(); };
  $("combine").onchange = (e) => { state.combine = e.target.value; changed(); };
  $("invert").onchange = (e) => { state.invert = e.target.checked; changed(); };
  $("view-topk").onchange = () => { state.view = "topk"; changed(); };
  $("view-threshold").onchange = () => { state.view = "threshold"; changed(); };
  $("k").onchange = (e) => { state.k = Math.max(1, Math.min(10000, Number(e.target.value) || 50)); changed(); };
  $("threshold").onchange = (e) => {
    const v = e.target.value === "" ? null : Number(e.target.value);
    state.threshold = Number.isFinite(v) ? v : null; changed();
  };
  $("dim").onchange = (e) => { $("map").classList.toggle("searching", e.target.checked && state.pos.length > 0); };
  $("opacity").oninput = (e) => { if (heatOverlay) heatOverlay.setOpacity(Number(e.target.value)); };
  $("export-parquet").onclick = () => doExport("geoparquet");
  $("export-tiff").onclick = () => doExport("geotiff");
  $("share").onclick = async () => {
    writeHash();
    try { await navigator.clipboard.writeText(location.href); $("timing").textContent = "link copied"; }
    catch (e) { window.prompt("share this link", location.href); }
  };

  (async function start() {
    const view = readHash();
    syncControls();
    try {
      ui.info = await (await api("/info")).json();
    } catch (e) { showError(`cannot load corpus info: ${e.message}`); return; }
    const info = ui.info;
    $("corpus-info").textContent = `${info.corpus}: ${info.n_rows.toLocaleString()} rows, ${info.n_shards} shards, ${info.dim}-bit codes`;
    const layers = { "corpus PCA-RGB": corpusLayer };
    if (info.basemap_url) {
      const user = L.tileLayer(info.basemap_url, { maxZoom: 19, attribution: "user basemap" }).addTo(map);
      layers["user basemap"] = user;
      corpusLayer.setOpacity(0.7);
    }
    corpusLayer.addTo(map);
    L.control.layers(info.basemap_url ? { "user basemap": layers["user basemap"] } : {},
      { "corpus PCA-RGB": corpusLayer, "score heat map": heatLayer, "top-k": resultLayer }).addTo(map);
    if (view) map.setView([view[1], view[2]], view[0]);
    else {
      const [w, s, e, n] = info.extent;
      map.fitBounds([[s, w], [n, e]]);
    }
    renderExemplars();
    ui.ready = true;
    schedule();
  })();
})();
