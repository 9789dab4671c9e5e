/* The experiment page: loads the analytics endpoints, draws every chart, and polls the summary
 * while the experiment is active (charts are redrawn when observations or runs change). */
"use strict";

(() => {
  const main = document.querySelector("main[data-experiment]");
  const id = main.dataset.experiment;
  const base = `/v1/experiments/${id}/analytics`;
  const POLL_MS = 4000;
  let last = null;

  function levelNames(p) {
    return (p.categorical_values || []).map((v) => (typeof v === "string" ? v : v.name));
  }

  function kindOf(p) {
    if (p.type === "categorical") return "band";
    return p.transformation === "log" ? "log" : "linear";
  }

  function jitter(key) {
    let h = 0;
    for (const c of String(key)) h = (h * 31 + c.charCodeAt(0)) % 1000;
    return h / 1000;
  }

  function taskNames(history) { return history.tasks.map((t) => t.name); }

  function describe(entry) {
    const parts = Object.entries(entry.assignments).map(([k, v]) => `${k}=${MT.fmt(v)}`);
    return `observation ${entry.observation}${entry.task ? ` · ${entry.task}` : ""}: ` +
      `${MT.fmt(entry.value)}\n${parts.join(", ")}`;
  }

  function drawHistory(history) {
    const groups = taskNames(history);
    const observed = history.data.filter((e) => e.value !== null);
    const best = [];
    let prev = null;
    for (const e of history.data) {
      if (e.best_full_cost === null) continue;
      if (prev !== null && prev !== e.best_full_cost) best.push([e.cumulative_cost, prev]);
      if (prev !== e.best_full_cost) best.push([e.cumulative_cost, e.best_full_cost]);
      prev = e.best_full_cost;
    }
    if (prev !== null && history.data.length) {
      best.push([history.data[history.data.length - 1].cumulative_cost, prev]);
    }
    MT.scatter(document.getElementById("history"), {
      points: observed.map((e) => ({ x: e.cumulative_cost, y: e.value, group: e.task,
                                     cls: e.full_cost ? "obs full" : "obs", title: describe(e) })),
      lines: best.length ? [{ points: best, cls: "best",
                              title: `best full-cost ${history.metric} so far` }] : [],
      groups, xLabel: "cumulative cost (budget consumed)", yLabel: history.metric,
      emptyMessage: "No observations yet.",
    });
  }

  function drawParallel(history) {
    const params = history.parameters;
    const groups = taskNames(history);
    const dims = params.map((p) => ({ name: p.name, kind: kindOf(p), levels: levelNames(p) }));
    if (groups.length) dims.push({ name: "task", kind: "band", levels: groups });
    dims.push({ name: history.metric, kind: "linear" });
    const rows = history.data.filter((e) => e.value !== null).map((e) => ({
      values: params.map((p) => (p.name in e.assignments ? e.assignments[p.name] : null))
        .concat(groups.length ? [e.task] : [], [e.value]),
      group: e.task, title: describe(e),
    }));
    const label = document.getElementById("parallel-selected");
    MT.parallel(document.getElementById("parallel"), {
      dims, rows, groups,
      onSelect: (n, total) => { label.textContent = `${n} of ${total} observations selected.`; },
    });
  }

  function drawImportance(full, all, multitask) {
    const box = document.getElementById("importance");
    const order = (full.data.length ? full.data : all.data).map((d) => d.parameter);
    const value = (result, name) => {
      const found = result.data.find((d) => d.parameter === name);
      return found ? found.importance : null;
    };
    const series = multitask ? ["full-cost observations", "all tasks"] : ["observations"];
    MT.bars(box, {
      rows: order.map((name) => ({ label: name, values: multitask
        ? [value(full, name), value(all, name)] : [value(full, name)] })),
      series, emptyMessage: full.message || all.message || "Not enough observations yet.",
    });
    let text = `Method: ${full.method}. Full cost: ${full.observation_count} observations`;
    if (multitask) {
      text += `; across tasks: ${all.observation_count} observations, the task cost as one more ` +
        "input";
      if (all.task_importance !== null) {
        text += ` (it explains ${(all.task_importance * 100).toFixed(1)}% of the impurity ` +
          "decrease; the parameters' shares are rescaled to sum to 100%)";
      }
    }
    document.getElementById("importance-method").textContent = `${text}.`;
  }

  function drawCorrelation(result) {
    const tbody = document.querySelector("#correlation-table tbody");
    tbody.replaceChildren();
    for (const row of result.data) {
      const tr = document.createElement("tr");
      MT.cell(tr, row.task);
      MT.cell(tr, MT.fmt(row.cost), "num");
      MT.cell(tr, String(row.configurations), "num");
      MT.cell(tr, row.spearman === null ? "–" : row.spearman.toFixed(3), "num");
      tbody.appendChild(tr);
    }
    document.getElementById("correlation-message").textContent = result.message || "";
    const full = result.full_cost_task;
    const cheap = result.data.map((d) => d.task);
    const points = [];
    for (const config of result.configurations) {
      for (const task of cheap) {
        if (task in config.values && full in config.values) {
          points.push({ x: config.values[task], y: config.values[full], group: task,
                        title: `${task}: ${MT.fmt(config.values[task])} · ${full}: ` +
                          MT.fmt(config.values[full]) });
        }
      }
    }
    MT.scatter(document.getElementById("correlation"), {
      points, groups: cheap, height: 260, xLabel: `${result.metric} at the cheap task`,
      yLabel: `${result.metric} at ${full || "full cost"}`,
      emptyMessage: result.message || "No configuration seen at a cheap and the full task yet.",
    });
  }

  function drawSlices(history) {
    const box = document.getElementById("slices");
    box.replaceChildren();
    const groups = taskNames(history);
    const observed = history.data.filter((e) => e.value !== null);
    let count = 0;
    for (const p of history.parameters) {
      const cell = document.createElement("div");
      cell.className = "chart-box slice";
      cell.dataset.parameter = p.name;
      const h = document.createElement("h3");
      h.textContent = p.name;
      const chart = document.createElement("div");
      cell.append(h, chart);
      box.appendChild(cell);
      const points = observed.filter((e) => p.name in e.assignments).map((e) => ({
        x: e.assignments[p.name], y: e.value, group: e.task, title: describe(e),
        jitter: jitter(e.observation),
      }));
      count += points.length;
      MT.scatter(chart, { points, groups, width: 300, height: 200, radius: 3, legend: false,
                          xKind: kindOf(p), xLevels: levelNames(p), yLabel: history.metric,
                          margin: { left: 52, bottom: 30 } });
    }
    if (groups.length) MT.legend(box, groups);
    box.dataset.count = String(count);
    box.dataset.state = "ready";
  }

  function drawSuggestions(page) {
    const tbody = document.querySelector("#suggestions tbody");
    tbody.replaceChildren();
    const runs = [];
    for (const s of page.data) {
      const tr = document.createElement("tr");
      tr.dataset.state = s.state;
      MT.cell(tr, s.suggestion);
      MT.cell(tr, MT.badge(s.state));
      MT.cell(tr, s.task || "–");
      MT.cell(tr, String(s.attempts), "num");
      MT.cell(tr, s.training_run ? MT.link(`/runs/${s.training_run}`, `run ${s.training_run}`) : "–");
      MT.cell(tr, s.failed ? "failed" : MT.fmt(s.value), "num");
      MT.cell(tr, s.source);
      MT.cell(tr, Object.entries(s.assignments).map(([k, v]) => `${k}=${MT.fmt(v)}`).join(" "),
              "assign");
      tbody.appendChild(tr);
      if (s.training_run) runs.push(s.training_run);
    }
    document.getElementById("suggestions-count").textContent =
      page.count > page.data.length ? `Newest ${page.data.length} of ${page.count}.` :
        `${page.count} suggestion${page.count === 1 ? "" : "s"}.`;
    const compare = document.getElementById("compare-runs");
    if (runs.length) {
      compare.href = `/compare?runs=${runs.slice(0, 50).reverse().join(",")}`;
      compare.hidden = false;
    }
  }

  function drawSummary(s) {
    document.getElementById("observation-count").textContent = String(s.observation_count);
    document.getElementById("budget-consumed").textContent = MT.fmt(s.budget_consumed);
    const bar = document.getElementById("budget");
    if (bar && s.budget_fraction !== null) bar.value = s.budget_fraction;
    document.getElementById("best-value").textContent = MT.fmt(s.best ? s.best.value : null);
    const runs = Object.entries(s.runs).map(([k, v]) => `${k} ${v}`).join(", ");
    document.getElementById("run-states").textContent = runs || "none";
    const state = document.getElementById("state");
    state.textContent = s.state;
    state.className = `badge state-${s.state}`;
    main.dataset.state = s.state;
    const tbody = document.querySelector("#tasks tbody");
    tbody.replaceChildren();
    for (const t of s.tasks) {
      const tr = document.createElement("tr");
      MT.cell(tr, t.task || "–");
      MT.cell(tr, MT.fmt(t.cost), "num");
      MT.cell(tr, String(t.observations), "num");
      MT.cell(tr, String(t.failed), "num");
      MT.cell(tr, MT.fmt(t.cost_consumed), "num");
      MT.cell(tr, MT.fmt(t.best_value), "num");
      tbody.appendChild(tr);
    }
  }

  async function loadCharts() {
    const [history, full, all, correlation, suggestions] = await Promise.all([
      MT.getJSON(`${base}/history`), MT.getJSON(`${base}/importance?task=full`),
      MT.getJSON(`${base}/importance?task=all`), MT.getJSON(`${base}/task_correlation`),
      MT.getJSON(`${base}/suggestions?limit=200`),
    ]);
    drawHistory(history);
    drawParallel(history);
    drawImportance(full, all, history.tasks.length > 0);
    drawCorrelation(correlation);
    drawSlices(history);
    drawSuggestions(suggestions);
    main.dataset.loaded = String(history.count);
  }

  const keyOf = (s) => `${s.observation_count}|${JSON.stringify(s.runs)}|${s.state}`;

  async function poll() {
    try {
      const s = await MT.getJSON(`${base}/summary`);
      drawSummary(s);
      if (keyOf(s) !== last) {
        last = keyOf(s);
        await loadCharts();
      }
      document.getElementById("refresh").textContent =
        `live · updated ${new Date().toLocaleTimeString()}`;
    } catch (error) {
      console.warn("refresh failed:", error);
    }
    if (main.dataset.state === "active") setTimeout(poll, POLL_MS);
    else document.getElementById("refresh").textContent = "";
  }

  async function init() {
    const s = await MT.getJSON(`${base}/summary`);
    last = keyOf(s);
    drawSummary(s);
    await loadCharts();
  }

  init().then(() => {
    if (main.dataset.state === "active") setTimeout(poll, POLL_MS);
  }).catch((error) => console.error("loading the charts failed:", error));
})();
