"""The report's charts (matplotlib, Agg, no pyplot state): the support bar chart along each face, machine
hours, data completeness. Figures are drawn once per language and saved as SVG (HTML) and into the PDF."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib import font_manager, rc_context  # noqa: E402  (after the backend is chosen)
from matplotlib.figure import Figure  # noqa: E402

from gateway.core.errors import UserError  # noqa: E402
from gateway.reports.table import Table  # noqa: E402
from gateway.reports.terms import word  # noqa: E402

CJK_FONT = "Noto Sans CJK SC"
CJK_FILES = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",)  # Debian fonts-noto-cjk
UNDER, OK, END = "#c0392b", "#2e86c1", "#34495e"


def cjk_font() -> str:
    """The CJK font's family name, registering Debian's file if matplotlib's cache missed it."""
    if any(f.name == CJK_FONT for f in font_manager.fontManager.ttflist):
        return CJK_FONT
    for path in CJK_FILES:
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
            return CJK_FONT
    raise UserError(f"no {CJK_FONT} font: install Debian's fonts-noto-cjk (the Chinese report needs it)")


@contextmanager
def style(lang: str):
    """Fonts for ``lang``; PDF fonts embedded as Type 42/CID subsets (text stays text: searchable, pdftotext)."""
    families = [cjk_font(), "DejaVu Sans"] if lang == "zh" else ["DejaVu Sans", cjk_font()]  # shift names: 0点班
    with rc_context({"font.family": families, "pdf.fonttype": 42, "svg.fonttype": "none",
                     "axes.unicode_minus": False, "font.size": 9}):
        yield


def roof_chart(supports: Table, shift: int, face: str, required: float, shift_label: str, lang: str) -> Figure:
    col = {k: i for i, k in enumerate(supports.columns)}
    rows = [r for r in supports.rows if r[col["shift"]] == shift and r[col["face"]] == face]
    numbers = [r[col["support"]] for r in rows]
    setting = [r[col["setting_mean"]] or 0 for r in rows]
    ends = [r[col["end_mean"]] or 0 for r in rows]
    fig = Figure(figsize=(11, 4.2))
    ax = fig.add_subplot()
    ax.bar([n - 0.2 for n in numbers], setting, width=0.4, label=word("setting_mean", lang),
           color=[UNDER if v < required else OK for v in setting])
    ax.bar([n + 0.2 for n in numbers], ends, width=0.4, label=word("end_mean", lang), color=END)
    ax.axhline(required, color=UNDER, linestyle="--", label=word("required_line", lang, mpa=f"{required:g}"))
    ax.set(xlabel=word("support_axis", lang), ylabel=word("mpa_axis", lang),
           title=word("chart_roof", lang, face=face, shift=shift_label))
    if len(numbers) <= 40:
        ax.set_xticks(numbers)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    return fig


def equipment_chart(table: Table, lang: str) -> Figure:
    col = {k: i for i, k in enumerate(table.columns)}
    parts = ("running_h", "stopped_h", "fault_h", "offline_h", "no_data_h")
    colours = ("#27ae60", "#95a5a6", UNDER, "#f39c12", "#ecf0f1")
    labels = [f"{r[col['machine']]} · {r[col['shift']]}" for r in table.rows]
    fig = Figure(figsize=(11, 0.6 + 0.35 * max(len(labels), 2)))
    ax = fig.add_subplot()
    left = [0.0] * len(labels)
    for part, colour in zip(parts, colours):
        values = [r[col[part]] for r in table.rows]
        ax.barh(labels, values, left=left, color=colour, edgecolor="#7f8c8d", label=word(part, lang))
        left = [a + b for a, b in zip(left, values)]
    ax.set(xlabel=word("hours_axis", lang), title=word("chart_equipment", lang))
    ax.legend(loc="lower right", fontsize=7, ncols=5)
    fig.tight_layout()
    return fig


def completeness_chart(table: Table, lang: str) -> Figure:
    col = {k: i for i, k in enumerate(table.columns)}
    labels = [f"{r[col['device']]} · {r[col['shift']]}" for r in table.rows]
    values = [r[col["completeness"]] or 0 for r in table.rows]
    fig = Figure(figsize=(11, 0.6 + 0.35 * max(len(labels), 2)))
    ax = fig.add_subplot()
    ax.barh(labels, values, color=[OK if v >= 99 else UNDER for v in values])
    ax.set(xlim=(0, 100), xlabel=word("percent_axis", lang), title=word("chart_completeness", lang))
    fig.tight_layout()
    return fig
