"""Renders the Grafana dashboard's panels (deploy/grafana/dashboards/session-service.json) from a Prometheus, with the
panels' own queries, into one PNG: what the dashboard showed over a run, for the README.

    dashboard_plot.py PROMETHEUS_URL DASHBOARD_JSON START END OUT.png [TITLE]

START and END are Unix seconds. `$__rate_interval` becomes 10s (the test Prometheus scrapes every second). Each panel
keeps its 6 busiest series.
"""

import json
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

PROMETHEUS, DASHBOARD, START, END, OUT = sys.argv[1:6]
TITLE = sys.argv[6] if len(sys.argv) > 6 else "session-service"
START, END = float(START), float(END)
STEP = max(1, int((END - START) / 400))
SCALE = {"s": (1000, "ms"), "percentunit": (100, "%"), "reqps": (1, "req/s"), "ops": (1, "/s"), "short": (1, "")}


def legend(template, labels):
    text = template
    for key, value in labels.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def query_range(expr):
    query = urllib.parse.urlencode({"query": expr.replace("$__rate_interval", "10s"), "start": START, "end": END, "step": STEP})
    with urllib.request.urlopen(f"{PROMETHEUS}/api/v1/query_range?{query}", timeout=30) as response:
        answer = json.load(response)
    if answer.get("status") != "success":
        raise SystemExit(f"dashboard_plot: {expr}: {answer.get('error')}")
    return answer["data"]["result"]


dashboard = json.load(open(DASHBOARD, encoding="utf-8"))
panels = dashboard["panels"]
rows = (len(panels) + 1) // 2
figure, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), squeeze=False)
for axis, panel in zip([a for row in axes for a in row], panels):
    factor, unit = SCALE.get(panel["fieldConfig"]["defaults"].get("unit", "short"), (1, ""))
    lines = []
    for target in panel["targets"]:
        for series in query_range(target["expr"]):
            points = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
            if points:
                lines.append((legend(target.get("legendFormat", ""), series["metric"]), points))
    lines.sort(key=lambda line: -sum(v for _, v in line[1]) / len(line[1]))
    for name, points in lines[:6]:
        axis.plot([datetime.fromtimestamp(t, timezone.utc) for t, _ in points], [v * factor for _, v in points], label=name, linewidth=1)
    axis.set_title(panel["title"], fontsize=10)
    axis.set_ylabel(unit, fontsize=8)
    axis.tick_params(labelsize=7)
    axis.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
    axis.grid(alpha=0.3)
    if lines:
        axis.legend(fontsize=6, loc="upper left")
    else:
        axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
for axis in [a for row in axes for a in row][len(panels):]:
    axis.set_visible(False)
figure.suptitle(f"{TITLE} — {datetime.fromtimestamp(START, timezone.utc):%Y-%m-%d %H:%M}–{datetime.fromtimestamp(END, timezone.utc):%H:%M} UTC",
                fontsize=11)
figure.tight_layout()
figure.savefig(OUT, dpi=90)
print(f"dashboard_plot: {len(panels)} panels over {int(END - START)} s → {OUT}")
