// usage.js draws the Usage page's charts with Chart.js (vendored in
// /static/vendor) from the report the page carries in
// #usage-data[data-report]. The tables beside the charts hold the same
// figures, so the page reads without JavaScript.
(function () {
  'use strict';

  function draw() {
    var el = document.getElementById('usage-data');
    if (!el || typeof Chart === 'undefined') {
      return;
    }
    var rep = JSON.parse(el.getAttribute('data-report'));
    var hourly = rep.step === '1h0m0s';
    var label = function (t) {
      var s = new Date(t).toISOString();
      return hourly ? s.slice(5, 13).replace('T', ' ') + 'h' : s.slice(0, 10);
    };
    var common = {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { display: false } }
    };
    var series = rep.series || [];
    new Chart(document.getElementById('chart-series'), {
      type: 'line',
      data: {
        labels: series.map(function (p) { return label(p.t); }),
        datasets: [
          { label: 'tokens', data: series.map(function (p) { return p.tokens; }), yAxisID: 'tokens', borderColor: '#2563eb', backgroundColor: '#2563eb' },
          { label: 'requests', data: series.map(function (p) { return p.requests; }), yAxisID: 'requests', borderColor: '#16a34a', backgroundColor: '#16a34a' },
          { label: 'refused', data: series.map(function (p) { return p.refused; }), yAxisID: 'requests', borderColor: '#dc2626', backgroundColor: '#dc2626' }
        ]
      },
      options: Object.assign({}, common, {
        plugins: { legend: { display: true } },
        scales: {
          tokens: { type: 'linear', position: 'left', beginAtZero: true, title: { display: true, text: 'tokens' } },
          requests: { type: 'linear', position: 'right', beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: 'requests' } }
        }
      })
    });
    var bars = function (id, rows, name, value, color) {
      new Chart(document.getElementById(id), {
        type: 'bar',
        data: {
          labels: rows.map(name),
          datasets: [{ data: rows.map(value), backgroundColor: color }]
        },
        options: Object.assign({}, common, { indexAxis: 'y', scales: { x: { beginAtZero: true } } })
      });
    };
    bars('chart-repos', rep.top_repos || [], function (r) { return r.repo; }, function (r) { return r.total_tokens; }, '#2563eb');
    bars('chart-models', rep.top_models || [], function (r) { return r.model; }, function (r) { return r.total_tokens; }, '#7c3aed');
    bars('chart-blocks', rep.blocks_by_rule || [], function (r) { return r.rule; }, function (r) { return r.count; }, '#dc2626');
    document.body.setAttribute('data-charts', 'drawn');
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', draw);
  } else {
    draw();
  }
})();
