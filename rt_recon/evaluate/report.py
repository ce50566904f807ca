"""A self-contained HTML report of a session evaluation (pictures and plots inlined).

The accuracy is stated with the trials it rests on (``n scored of n shown``),
beside identification over all trials shown (a trial without a frame a
failure); a warning heads the page when few trials were scored
(:func:`~rt_recon.evaluate.trials.coverage_warnings`). A table puts every
figure (feature-space identification with its interval, same-background
identification, attributes, pixel figures) beside the same figure for each
baseline (:mod:`rt_recon.evaluate.semantic`).

The numbers are also embedded as JSON (``<script id="metrics" type="application/json">``)
and written beside the page as ``metrics.json``, so tools read the same
figures a person sees.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from rt_recon.evaluate.semantic import FEATURE_SPACE
from rt_recon.evaluate.session_eval import SessionEvaluation
from rt_recon.evaluate.trials import coverage, save_grid


def _png_data_uri(path_or_bytes: Path | bytes) -> str:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _latency_plot(samples: dict[str, list[float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for stage, values in samples.items():
        if values:
            ordered = np.sort(values)
            ax.plot(ordered, np.linspace(0, 1, len(ordered)), label=stage)
    ax.set_xscale("log")
    ax.set_xlabel("latency per TR, ms (log)")
    ax.set_ylabel("fraction of TRs")
    ax.set_title("latency per stage (cumulative)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def _feature_row(evaluation: SessionEvaluation) -> str:
    """The headline figure's row: identification in the metric network's features."""
    if evaluation.semantic is None:
        return ""
    model = evaluation.semantic.model
    low, high = model.identification_ci
    return (
        f"<tr><th>two-way identification ({FEATURE_SPACE}; chance 50%) on "
        f"{coverage(model.n, model.n_shown)}, 95% interval {100 * low:.1f}-{100 * high:.1f}%</th>"
        f'<td class="big" id="feature_identification">{100 * model.identification:.1f}%</td></tr>\n'
    )


def _baselines_table(evaluation: SessionEvaluation) -> str:
    """The semantic figures beside their baselines, as an HTML table (empty without them)."""
    if evaluation.semantic is None:
        return ""
    columns, rows = evaluation.semantic.table()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + f"<th>{html.escape(row[0])}</th>"
        + "".join(f"<td>{html.escape(cell)}</td>" for cell in row[1:])
        + "</tr>"
        for row in rows
    )
    missing = "".join(
        f"<li>{html.escape(name)}: not available ({html.escape(why)})</li>"
        for name, why in evaluation.semantic.not_available.items()
    )
    net = evaluation.semantic.net_accuracy
    reads = ", ".join(f"{head} {100 * value:.1f}%" for head, value in net.items())
    return f"""<h3>Every figure beside its baselines</h3>
<table id="baselines"><tr>{head}</tr>{body}</table>
{f"<ul>{missing}</ul>" if missing else ""}
<p>Features and attribute readings are the metric network's (docs/metrics.md); it reads the
world's true held-out pictures at: {html.escape(reads) or "unknown"}.</p>
"""


def _feedback_paragraph(evaluation: SessionEvaluation) -> str:
    """The session's feedback condition (a blinded one revealed), or nothing if unrecorded."""
    line = evaluation.feedback_line()
    return "" if line is None else f'<p id="feedback">{html.escape(line)}</p>'


def write_report(evaluation: SessionEvaluation, out_dir: str | Path) -> Path:
    """Write ``report.html``, ``metrics.json`` and ``reconstructions.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluation.metrics()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    grid = save_grid(evaluation.recons, evaluation.truths, out / "reconstructions.png")
    plot = _latency_plot(evaluation.latency_samples)
    rows = "".join(
        f"<tr><td>{r.stage}</td><td>{r.n}</td><td>{r.p50_ms:.2f}</td><td>{r.p95_ms:.2f}</td>"
        f"<td>{r.max_ms:.2f}</td><td>{'' if r.budget_ms is None else f'{r.budget_ms:g}'}</td></tr>"
        for r in evaluation.latency
    )
    trials = "".join(
        f"<tr><td>{t.trial}</td><td>{t.stimulus_id}</td><td>{t.onset_tr}</td>"
        f"<td>{'missing' if t.frame_tr is None else t.frame_tr}</td>"
        f"<td>{'' if t.corr_own is None else f'{t.corr_own:.3f}'}</td></tr>"
        for t in evaluation.trials
    )
    headline = "<br>".join(html.escape(line) for line in evaluation.headline().splitlines())
    warnings = "".join(
        f'<p class="warning">warning: {html.escape(w)}</p>' for w in evaluation.warnings
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rt_recon session report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }} .big {{ font-size: 1.4em; }}
.warning {{ background: #fff3cd; border-left: 4px solid #d29922; padding: 0.5em 0.8em; }}
</style></head><body>
<h1>Session report</h1>
<p>Recording: <code>{html.escape(str(evaluation.recording))}</code></p>
{_feedback_paragraph(evaluation)}
<h2>Reconstruction</h2>
<p id="headline">{headline}</p>
{warnings}
{_baselines_table(evaluation)}
<table>
<tr><th>trials shown (stimulus markers)</th><td id="n_shown">{evaluation.n_shown}</td></tr>
<tr><th>trials scored (with a frame)</th><td id="n_trials">{evaluation.n_trials}</td></tr>
<tr><th>trials without a frame</th><td id="n_missing">{evaluation.n_missing}</td></tr>
{_feature_row(evaluation)}
<tr><th>two-way identification ({html.escape(evaluation.feature_space)}; chance 50%)
on {coverage(evaluation.n_trials, evaluation.n_shown)}</th>
<td id="identification">{100 * evaluation.identification:.1f}%</td></tr>
<tr><th>two-way identification over all {evaluation.n_shown} shown
(a trial without a frame counted as a failure)</th>
<td id="identification_shown">{100 * evaluation.identification_shown:.1f}%</td></tr>
<tr><th>PixCorr (on the scored trials)</th><td id="pixcorr">{evaluation.pixcorr:.4f}</td></tr>
<tr><th>SSIM (grayscale, on the scored trials)</th><td id="ssim">{evaluation.ssim:.4f}</td></tr>
</table>
<p>True pictures (upper rows) and reconstructions (lower rows), one column per scored trial:</p>
<img alt="true vs reconstructed" src="{_png_data_uri(grid)}">
<h2>Latency</h2>
<table><tr><th>stage</th><th>n</th><th>p50 ms</th><th>p95 ms</th><th>max ms</th>
<th>budget ms</th></tr>{rows}</table>
<img alt="latency per stage" src="{_png_data_uri(plot)}">
<h2>Trials</h2>
<table><tr><th>trial</th><th>stimulus</th><th>onset TR</th><th>frame TR</th>
<th>correlation with own picture</th></tr>{trials}</table>
<script id="metrics" type="application/json">{json.dumps(metrics)}</script>
</body></html>
"""
    path = out / "report.html"
    path.write_text(page)
    return path
