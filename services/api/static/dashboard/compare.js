/* Compare: training curves of several runs (one line per run, metric picker), or the best
 * full-cost value against cumulative cost of several experiments (one line per experiment). */
"use strict";

(() => {
  const main = document.querySelector("main[data-compare]");
  const ids = main.dataset.ids.split(",").filter(Boolean);
  const box = document.getElementById("compare");

  async function runs() {
    const picker = document.getElementById("metric");
    const result = await MT.getJSON(`/v1/analytics/curves?runs=${ids.join(",")}`);
    const metrics = [...new Set([].concat(...result.data.map((c) => c.metrics)))];
    picker.replaceChildren(...metrics.map((m) => new Option(m, m)));
    const draw = () => {
      const metric = picker.value;
      MT.lines(box, {
        xLabel: "epoch", yLabel: metric, emptyMessage: "No checkpoints of these runs yet.",
        series: result.data.map((c) => ({
          label: c.run.name || `run ${c.training_run}`,
          points: c.data.filter((p) => metric in p.values).map((p) => [p.epoch, p.values[metric]]),
        })),
      });
    };
    picker.addEventListener("change", draw);
    draw();
  }

  function bestSteps(history) {
    const out = [];
    let prev = null;
    for (const e of history.data) {
      if (e.best_full_cost === null) continue;
      if (prev !== null && prev !== e.best_full_cost) out.push([e.cumulative_cost, prev]);
      if (prev !== e.best_full_cost) out.push([e.cumulative_cost, e.best_full_cost]);
      prev = e.best_full_cost;
    }
    if (prev !== null) out.push([history.data[history.data.length - 1].cumulative_cost, prev]);
    return out;
  }

  async function experiments() {
    const histories = await Promise.all(
      ids.map((id) => MT.getJSON(`/v1/experiments/${id}/analytics/history`)));
    const metrics = [...new Set(histories.map((h) => h.metric))];
    MT.lines(box, {
      xLabel: "cumulative cost (budget consumed)",
      yLabel: `best full-cost ${metrics.join(" / ")}`,
      emptyMessage: "No full-cost observations in these experiments yet.",
      series: histories.map((h) => ({ label: `${h.name} (#${h.experiment})`,
                                      points: bestSteps(h) })),
    });
  }

  (main.dataset.compare === "runs" ? runs() : experiments())
    .catch((error) => console.error("loading the comparison failed:", error));
})();
