"""An evaluation's results: per-clip records, per-model summary, pairwise preference; as a table, JSON and a chart.

The table reads like the paper's: one row per model (``base``, ``base+DPO LoRA``), one column per metric,
plus the oracle's win rate of the LoRA over the base on the same (prompt, seed). The chart is drawn on a
bare ``matplotlib.figure.Figure`` with the Agg canvas, so it touches no pyplot state and needs no display.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BASE_LABEL = "base"
LORA_LABEL = "base+DPO LoRA"
REPORT_JSON = "eval.json"
REPORT_PNG = "eval.png"

# (summary key, table header, digits); flicker is the only lower-is-better column.
TABLE_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("shape_match_rate", "shape", 3),
    ("color_match_rate", "colour", 3),
    ("background_match_rate", "background", 3),
    ("direction_match_rate", "direction", 3),
    ("all_match_rate", "all match", 3),
    ("smoothness", "smoothness", 3),
    ("flicker", "flicker (lower better)", 4),
    ("oracle_total", "oracle total", 3),
    ("clip_text_alignment", "CLIP text align.", 4),
    ("clip_consistency", "CLIP consistency", 4),
    ("clip_diversity", "CLIP diversity", 4),
)
# Metrics in [0, 1] where higher is better, for the bar chart (steadiness stands in for flicker).
CHART_METRICS: tuple[tuple[str, str], ...] = (
    ("shape_match_rate", "shape"),
    ("color_match_rate", "colour"),
    ("background_match_rate", "background"),
    ("direction_match_rate", "direction"),
    ("all_match_rate", "all match"),
    ("smoothness", "smoothness"),
    ("steadiness", "steadiness"),
    ("oracle_total", "oracle total"),
    ("clip_text_alignment", "CLIP text"),
    ("clip_consistency", "CLIP consist."),
    ("clip_diversity", "CLIP diversity"),
)


@dataclass
class EvalReport:
    """Everything an evaluation produced.

    ``records``: one dict per generated clip (variant, prompt, seed, settings, oracle, clip, video, seconds).
    ``summary``: per variant label, metric name -> mean (None where not measured).
    ``pairwise``: the oracle's win rate of ``b`` over ``a`` (``WinRate.to_dict()`` plus labels), or None.
    ``config``: what was evaluated (model, LoRA, CLIP model, prompts, seeds, generation settings).
    """

    config: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, dict[str, float | None]] = field(default_factory=dict)
    pairwise: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, path: str | Path) -> "EvalReport":
        """Read an ``eval.json`` written by :meth:`save_json`."""
        return cls(**json.loads(Path(path).read_text()))

    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)
        return path

    def columns(self) -> list[tuple[str, str, int]]:
        """Table columns that at least one variant measured (no CLIP columns without a CLIP model)."""
        return [c for c in TABLE_COLUMNS if any(s.get(c[0]) is not None for s in self.summary.values())]

    def table(self) -> str:
        """A Markdown table: rows are the variants, columns the metrics, plus the oracle win rate vs the base."""
        columns = self.columns()
        header = ["model", *(title for _, title, _ in columns)]
        if self.pairwise is not None:
            header.append(f"oracle win rate vs {self.pairwise['a']} [95% CI]")
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for variant, summary in self.summary.items():
            cells = [variant, *(_format(summary.get(key), digits) for key, _, digits in columns)]
            if self.pairwise is not None:
                cells.append(_format_win(self.pairwise) if variant == self.pairwise["b"] else "-")
            lines.append("| " + " | ".join(cells) + " |")
        note = (
            f"\n{len(self.records)} clips: {len(self.config.get('prompts', []))} prompts x "
            f"{len(self.config.get('seeds', []))} seeds x {len(self.summary)} model(s); match columns are rates"
        )
        measured_clip = any(key.startswith("clip_") for key, _, _ in columns)
        lines.append(note + ("; CLIP columns are cosine similarities." if measured_clip else "."))
        for variant, summary in self.summary.items():  # prompts that leave an attribute out: which mode each clip shows
            for attribute, shares in (summary.get("mode_shares") or {}).items():
                modes = ", ".join(f"{mode} {share:.0%}" for mode, share in shares.items() if mode != "n")
                lines.append(f"{variant}: {attribute} unstated in {shares['n']} clips: {modes}")
        return "\n".join(lines)

    def save_chart(self, path: str | Path) -> Path:
        """A grouped bar chart (one group per metric, one bar per variant) as PNG."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        metrics = [(k, t) for k, t in CHART_METRICS if any(s.get(k) is not None for s in self.summary.values())]
        figure = Figure(figsize=(max(6.0, 0.9 * len(metrics) + 2), 4.2), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot(1, 1, 1)
        x = np.arange(len(metrics))
        width = 0.8 / max(1, len(self.summary))
        for i, (variant, summary) in enumerate(self.summary.items()):
            values = [summary.get(k) for k, _ in metrics]
            heights = [v if v is not None else 0.0 for v in values]
            bars = axes.bar(x + (i - (len(self.summary) - 1) / 2) * width, heights, width, label=variant)
            axes.bar_label(bars, labels=[f"{v:.2f}" if v is not None else "" for v in values], fontsize=7)
        axes.set_xticks(x, [t for _, t in metrics], rotation=30, ha="right")
        axes.set_ylabel("mean over clips (higher is better)")
        axes.axhline(0.0, color="black", linewidth=0.6)
        title = f"HuViDPO evaluation ({len(self.records)} clips)"
        if self.pairwise is not None and self.pairwise.get("win_rate") is not None:
            title += f"; oracle win rate of {self.pairwise['b']} over {self.pairwise['a']}: {_format_win(self.pairwise)}"
        axes.set_title(title, fontsize=9)
        axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        figure.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        return path

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """``out_dir/eval.json`` and ``out_dir/eval.png``."""
        out_dir = Path(out_dir)
        return self.save_json(out_dir / REPORT_JSON), self.save_chart(out_dir / REPORT_PNG)


def _format(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format_win(pairwise: dict[str, Any]) -> str:
    if pairwise.get("win_rate") is None:
        return "-"
    low, high = pairwise["ci95"]
    return f"{pairwise['win_rate']:.3f} [{low:.2f}, {high:.2f}] (n={pairwise['n']}, ties={pairwise['ties']})"
