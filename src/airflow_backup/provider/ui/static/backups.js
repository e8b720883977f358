// The Backups page: reads /backups/api/*, triggers DAG runs through Airflow's public API
// (POST /api/v2/dags/{dag_id}/dagRuns, with the UI's session cookie), links to the runs.
"use strict";
(function () {
  const BASE = document.body.dataset.base || "";
  const STATES = { ok: "OK", drill_stale: "Drill stale", degraded: "Degraded",
                   rpo_breached: "RPO breached", failed: "Failed" };
  const TERMINAL = new Set(["success", "failed"]);
  const $ = (sel, root) => (root || document).querySelector(sel);
  let current = null;  // the job shown in the detail panel

  // --- look: follow Airflow's colour mode (the page around this frame), else the system's
  function applyTheme() {
    let dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
    try {
      const outer = window.parent !== window && window.parent.document.documentElement;
      if (outer && (outer.classList.contains("dark") || outer.classList.contains("light"))) {
        dark = outer.classList.contains("dark");
      }
    } catch (e) { /* another origin: keep the system's */ }
    document.documentElement.classList.toggle("dark", dark);
  }
  applyTheme();
  try {
    if (window.parent !== window) {
      new MutationObserver(applyTheme).observe(window.parent.document.documentElement,
                                               { attributes: true, attributeFilter: ["class"] });
    }
  } catch (e) { /* another origin */ }

  // --- formatting
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined) {
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0; let v = n;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }
  function age(s) {
    if (s === null || s === undefined) return "never";
    for (const [u, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) return (s / size).toFixed(1) + u;
    }
    return s.toFixed(0) + "s";
  }
  function when(epoch) {
    if (epoch === null || epoch === undefined) return "–";
    return new Date(epoch * 1000).toLocaleString(undefined, { dateStyle: "medium",
                                                              timeStyle: "medium" });
  }
  function badge(state) {
    return el("span", { class: "badge state-" + state, "data-state": state,
                        text: STATES[state] || state });
  }
  function runLink(run) {
    if (!run) return el("span", { class: "muted run", text: "no runs" });
    return el("a", { class: "run", target: "_top",
                     href: `${BASE}/dags/${encodeURIComponent(run.dag_id)}/runs/${encodeURIComponent(run.run_id)}` },
              el("span", { class: "badge run-" + run.state, text: run.state || "?" }), " ", run.run_id);
  }

  // --- data
  async function getJSON(path) {
    const resp = await fetch(path, { credentials: "same-origin",
                                     headers: { Accept: "application/json" } });
    if (resp.status === 401 || resp.status === 403) {
      window.top.location.href = `${BASE}/auth/login?next=${encodeURIComponent(window.top.location.href)}`;
      throw new Error("not signed in");
    }
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return resp.json();
  }

  async function trigger(dagId, conf) {
    const resp = await fetch(`${BASE}/api/v2/dags/${encodeURIComponent(dagId)}/dagRuns`, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ logical_date: null, conf: conf || {} }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
      throw new Error(`could not trigger ${dagId}: HTTP ${resp.status}: ${detail}`);
    }
    return body;
  }

  // Shows the run's link and follows its state until it ends. The slot elements outlive
  // the periodic re-rendering (slotFor), and a slot showing a run triggered here keeps
  // showing it.
  const slots = new Map();
  function slotFor(key, id) {
    if (!slots.has(key)) slots.set(key, el("div", { class: "run-slot", id }));
    return slots.get(key);
  }
  function follow(slot, dagId, run) {
    const show = (state) => {
      slot.replaceChildren(runLink({ dag_id: dagId, run_id: run.dag_run_id, state }));
    };
    slot.dataset.followed = "1";
    show(run.state || "queued");
    const poll = async () => {
      try {
        const r = await getJSON(`${BASE}/api/v2/dags/${encodeURIComponent(dagId)}/dagRuns/${encodeURIComponent(run.dag_run_id)}`);
        show(r.state);
        if (TERMINAL.has(r.state)) { load(); return; }
      } catch (e) { /* keep polling */ }
      setTimeout(poll, 2000);
    };
    setTimeout(poll, 2000);
  }

  function actionButtons(job, slot) {
    const go = (kind, conf) => async (ev) => {
      const btn = ev.currentTarget; btn.disabled = true;
      try { follow(slot, job.dags[kind], await trigger(job.dags[kind], conf)); }
      catch (e) { slot.replaceChildren(el("span", { class: "badge run-failed", text: e.message })); }
      finally { btn.disabled = false; }
    };
    return [
      el("button", { class: "btn", type: "button", onclick: go("backup"),
                     "aria-label": `Back up ${job.job} now`, text: "Back up now" }),
      el("button", { class: "btn", type: "button", onclick: go("drill"),
                     "aria-label": `Drill ${job.job} now`, text: "Drill" }),
      el("button", { class: "btn", type: "button",
                     onclick: () => openRestore(job.job, "latest", slot),
                     "aria-label": `Restore ${job.job}`, text: "Restore…" }),
    ];
  }

  function render(data) {
    // When the first data was shown, in ms since this page started loading (measured).
    if (!document.body.dataset.renderedMs) {
      requestAnimationFrame(() => { document.body.dataset.renderedMs = Math.round(performance.now()); });
    }
    const counts = {};
    for (const j of data.jobs) counts[j.state] = (counts[j.state] || 0) + 1;
    $("#summary").replaceChildren(
      ...Object.keys(STATES).filter((s) => counts[s]).map((s) =>
        el("span", { class: "badge state-" + s, text: `${counts[s]} ${STATES[s]}` })),
      el("span", { class: "muted", text: `read ${new Date(data.generated_at * 1000).toLocaleTimeString()}` }));
    const problems = data.configs.flatMap((c) => c.problems.map((p) => `${c.path}: ${p}`));
    $("#problems").hidden = problems.length === 0;
    $("#problems").replaceChildren(...problems.map((p) => el("div", { text: p })));
    const rows = data.jobs.map((j) => {
      const st = j.status;
      const slot = slotFor("row:" + j.job);
      if (!slot.dataset.followed) slot.replaceChildren(runLink(j.runs.backup));
      const repo = j.repositories[0] || {};
      return el("tr", { "data-job": j.job },
        el("td", { "data-label": "Job" },
           el("a", { class: "job", href: "#" + encodeURIComponent(j.job),
                     onclick: (ev) => { ev.preventDefault(); openJob(j.job); } }, j.job),
           j.description ? el("div", { class: "muted", text: j.description }) : null),
        el("td", { "data-label": "State" }, badge(j.state),
           j.reasons.length ? el("ul", { class: "reasons" }, j.reasons.map((r) => el("li", { text: r }))) : null),
        el("td", { "data-label": "Last backup" },
           st.last_snapshot_time ? when(st.last_snapshot_time) : "never",
           el("div", { class: "muted", text: `age ${age(st.age)}` + (st.rpo ? ` · RPO ${age(st.rpo)}` : "") })),
        el("td", { "data-label": "Last drill" },
           st.drill_time ? [el("span", { class: "badge " + (st.drill_ok ? "run-success" : "run-failed"),
                                         text: st.drill_ok ? "passed" : "failed" }), " ", when(st.drill_time)]
                         : el("span", { class: "muted", text: "none" }),
           st.drill_rto !== null ? el("div", { class: "muted",
             text: `RTO ${st.drill_rto.toFixed(1)}s` + (st.drill_max_rto ? ` · max ${age(st.drill_max_rto)}` : "") }) : null),
        el("td", { "data-label": "Repository" },
           el("span", { class: "mono", text: repo.location || st.repository }),
           el("div", { class: "muted", text: (repo.healthy === false ? "unreadable" : "healthy")
                                              + ` · ${bytes(repo.size)} · ${repo.snapshots ?? 0} snapshots` })),
        el("td", { "data-label": "Actions" }, actionButtons(j, slot),
           j.paused.length ? el("div", { class: "muted paused", text: `paused: ${j.paused.join(", ")} (a run waits until its DAG is unpaused)` }) : null,
           slot));
    });
    $("#jobs tbody").replaceChildren(...(rows.length ? rows
      : [el("tr", {}, el("td", { colspan: 6, class: "muted",
            text: "No jobs: set [airflow_backup] jobs_config to your jobs config." }))]));
  }

  async function load() {
    try { render(await getJSON("api/jobs")); }
    catch (e) {
      $("#jobs tbody").replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "problems", text: e.message })));
    }
    if (current) openJob(current, true);
  }

  // --- one job: cards, chart, timeline, drills
  function chart(snaps) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "chart"); svg.setAttribute("viewBox", "0 0 800 200");
    svg.setAttribute("preserveAspectRatio", "none"); svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "data added per backup and stored size over time");
    const pts = snaps.filter((s) => s.added !== null);
    if (pts.length === 0) return svg;
    let total = 0;
    const stored = pts.map((s) => (total += s.added));
    const maxAdded = Math.max(1, ...pts.map((s) => s.added));
    const t0 = pts[0].time; const span = Math.max(1, pts[pts.length - 1].time - t0);
    const x = (t) => 40 + ((t - t0) / span) * 740;
    const w = Math.max(1, Math.min(12, 740 / pts.length - 1));
    const add = (tag, attrs) => { const n = document.createElementNS(ns, tag);
      for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); svg.append(n); return n; };
    pts.forEach((s) => { const h = (s.added / maxAdded) * 150;
      add("rect", { x: x(s.time) - w / 2, y: 175 - h, width: w, height: h, fill: "var(--bar)" }); });
    add("polyline", { points: pts.map((s, i) => `${x(s.time)},${175 - (stored[i] / total) * 150}`).join(" "),
                      fill: "none", stroke: "var(--line)", "stroke-width": 2 });
    add("text", { x: 4, y: 20 }).textContent = bytes(total);
    add("text", { x: 4, y: 195 }).textContent = when(t0);
    add("text", { x: 640, y: 195 }).textContent = when(pts[pts.length - 1].time);
    return svg;
  }

  function snapshotRows(job, snaps) {
    return snaps.map((s) => el("tr", { "data-snapshot": s.id },
      el("td", {}, when(s.time)),
      el("td", { class: "mono", text: s.id.slice(0, 8) }),
      el("td", { class: "num", text: bytes(s.size) }),
      el("td", { class: "num", text: bytes(s.added) }),
      el("td", {}, s.tags.map((t) => el("span", { class: "tag", text: t })),
         s.degraded ? el("span", { class: "badge state-degraded", text: "degraded" }) : null,
         s.partial ? el("span", { class: "badge state-degraded", text: "partial" }) : null),
      el("td", { class: "mono", text: s.repository }),
      el("td", {}, el("button", { class: "btn", type: "button", text: "Restore…",
                                  "aria-label": `Restore snapshot ${s.id.slice(0, 8)}`,
                                  onclick: () => openRestore(job.job, s.id, slotFor("detail:" + job.job, "detail-run")) }))));
  }

  let detailJob = null;
  async function openJob(name, quiet) {
    current = name;
    const panel = $("#detail");
    if (!quiet) { panel.hidden = false; panel.replaceChildren(el("p", { class: "muted", text: `Loading ${name}…` })); }
    const job = await getJSON("api/jobs/" + encodeURIComponent(name));
    detailJob = job;
    const snaps = job.snapshots.slice().reverse();  // newest first
    const shown = 100;
    const tbody = el("tbody", {}, snapshotRows(job, snaps.slice(0, shown)));
    const more = snaps.length > shown ? el("button", { class: "btn", type: "button",
      text: `Show all ${snaps.length} snapshots`, onclick: (ev) => {
        tbody.replaceChildren(...snapshotRows(job, snaps)); ev.currentTarget.remove(); } }) : null;
    const st = job.status;
    const repo = job.repositories[0] || {};
    panel.hidden = false;
    panel.replaceChildren(
      el("h2", { id: "detail-title" }, `${job.job} `, badge(job.state)),
      el("div", { class: "cards" },
        el("div", { class: "card" }, el("div", { class: "k", text: "Snapshots" }), el("div", { class: "v", text: job.snapshot_count })),
        el("div", { class: "card" }, el("div", { class: "k", text: "Newest" }), el("div", { class: "v", text: age(st.age) }),
           el("div", { class: "k", text: st.rpo ? `RPO ${age(st.rpo)}` : "no RPO" })),
        el("div", { class: "card" }, el("div", { class: "k", text: "Repository size" }), el("div", { class: "v", text: bytes(repo.size) }),
           el("div", { class: "k mono", text: repo.location || "" })),
        el("div", { class: "card" }, el("div", { class: "k", text: "Drills" }), el("div", { class: "v", text: job.drill_count }),
           el("div", { class: "k", text: st.drill_rto !== null ? `last RTO ${st.drill_rto.toFixed(1)}s` : "" }))),
      slotFor("detail:" + job.job, "detail-run"),
      el("h3", { text: "Data added and stored size" }),
      el("div", { class: "legend" }, el("i", { style: "background: var(--bar)" }), "data added per backup",
         el("i", { style: "background: var(--line)" }), "stored by this job (sum of data added)"),
      chart(job.snapshots),
      el("h3", { id: "timeline-title", text: "Snapshot timeline" }),
      el("div", { class: "table-wrap" }, el("table", { class: "grid", "aria-labelledby": "timeline-title", id: "timeline" },
        el("thead", {}, el("tr", {}, ["Time", "ID", "Size", "Added", "Tags", "Repository", ""].map((h) => el("th", { scope: "col", text: h })))),
        tbody)),
      more,
      el("h3", { id: "drills-title", text: "Restore drills" }),
      job.drills.length === 0 ? el("p", { class: "muted", text: "No drills recorded yet." }) :
      el("div", { class: "table-wrap" }, el("table", { class: "grid", "aria-labelledby": "drills-title", id: "drills" },
        el("thead", {}, el("tr", {}, ["Time", "Result", "RTO", "Error"].map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, job.drills.slice().reverse().map((d) => el("tr", {},
          el("td", {}, when(d.time)),
          el("td", {}, el("span", { class: "badge " + (d.ok ? "run-success" : "run-failed"), text: d.ok ? "passed" : "failed" })),
          el("td", { class: "num", text: d.rto !== null ? `${d.rto.toFixed(1)}s` : "–" }),
          el("td", { class: "muted", text: d.error })))))));
  }

  // --- restore form: the restore DAG's params
  let restoreSlot = null;
  async function openRestore(name, snapshot, slot) {
    const job = detailJob && detailJob.job === name ? detailJob
      : await getJSON("api/jobs/" + encodeURIComponent(name));
    detailJob = job;
    restoreSlot = slot;
    const form = $("#restore-form");
    form.source.replaceChildren(...job.restore_form.sources.map((s) => el("option", { value: s, text: s })));
    form.on_existing.replaceChildren(...job.restore_form.on_existing.map((s) => el("option", { value: s, text: s })));
    form.snapshot.value = snapshot;
    form.as_of.value = "";
    $("#restore-title").textContent = `Restore ${name}`;
    $("#restore-dialog").showModal();
  }
  $("#restore-cancel").addEventListener("click", () => $("#restore-dialog").close());
  $("#restore-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const conf = { source: form.source.value, target: form.target.value,
                   snapshot: form.snapshot.value, as_of: form.as_of.value,
                   on_existing: form.on_existing.value };
    const dagId = detailJob.dags.restore;
    const slot = restoreSlot || $("#detail-run");
    $("#restore-dialog").close();
    try { follow(slot, dagId, await trigger(dagId, conf)); }
    catch (e) { slot.replaceChildren(el("span", { class: "badge run-failed", text: e.message })); }
  });

  $("#refresh").addEventListener("click", load);
  if (location.hash.length > 1) current = decodeURIComponent(location.hash.slice(1));
  load();
  setInterval(load, 60000);
})();
