/* The run page: training curves (one line per attempt) of the picked metric, refreshed while
 * the run trains. */
"use strict";

(() => {
  const main = document.querySelector("main[data-run]");
  const id = main.dataset.run;
  const picker = document.getElementById("metric");
  const POLL_MS = 3000;
  let curves = null;

  function draw() {
    const metric = picker.value;
    const attempts = [...new Set(curves.data.map((c) => c.attempt))];
    const series = attempts.map((attempt, i) => ({
      label: `attempt ${attempt}`, cls: "curve", color: MT.color(i),
      points: curves.data.filter((c) => c.attempt === attempt && metric in c.values)
        .map((c) => [c.epoch, c.values[metric]]),
    }));
    MT.lines(document.getElementById("curves"), {
      series, markers: true, xLabel: "epoch", yLabel: metric, height: 300,
      emptyMessage: "No checkpoints yet.",
    });
  }

  function fill(metrics) {
    const chosen = picker.value;
    picker.replaceChildren(...metrics.map((m) => new Option(m, m)));
    if (metrics.includes(chosen)) picker.value = chosen;
  }

  function update(run) {
    const state = document.getElementById("state");
    state.textContent = run.state;
    state.className = `badge state-${run.state}`;
    document.getElementById("attempt").textContent = String(run.attempt);
    document.getElementById("checkpoint-count").textContent = String(run.checkpoint_count);
    document.getElementById("worker").textContent = run.worker || "–";
    if (run.heartbeat) {
      const age = Math.max(0, Date.now() / 1000 - run.heartbeat);
      document.getElementById("heartbeat").textContent = `${age.toFixed(0)} s ago`;
    }
    main.dataset.state = run.state;
  }

  async function load() {
    curves = await MT.getJSON(`/v1/training_runs/${id}/analytics/curves`);
    fill(curves.metrics);
    update(curves.run);
    draw();
  }

  async function poll() {
    try {
      await load();
    } catch (error) {
      console.warn("refresh failed:", error);
    }
    if (!curves || !curves.run.finished) setTimeout(poll, POLL_MS);
  }

  picker.addEventListener("change", draw);
  load().then(() => {
    if (!curves.run.finished) setTimeout(poll, POLL_MS);
  }).catch((error) => console.error("loading the curves failed:", error));
})();
