"""The report's files: ``report.html`` (tables and inline SVG charts), ``report.pdf`` (the same, drawn with
matplotlib's PdfPages, fonts embedded) and one CSV per table (UTF-8 with a BOM, so spreadsheets read the
Chinese)."""
from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from gateway.reports import charts
from gateway.reports.daily import Report, faces
from gateway.reports.table import Table, clock
from gateway.reports.terms import cell, column, word

TABLE_ORDER = ("roof_faces", "roof_supports", "equipment", "alarms", "completeness", "gaps", "outages")
ROWS_PER_PAGE = 30
CSS = """body{font-family:"Noto Sans CJK SC","Noto Sans",sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 2em;font-size:0.85em}th,td{border:1px solid #bbb;padding:2px 6px}
th{background:#eef2f5}td.n{text-align:right}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.5em}"""


def heading(report: Report, lang: str) -> list[str]:
    """Title and the lines under it (site, date, shift(s), time zone, when generated)."""
    shifts = word("whole_day", lang) if report.whole_day else ", ".join(shift_label(w) for w in report.windows)
    site = report.site.site
    return [f"{word('title', lang)}: {site.name or site.id}",
            f"{word('site', lang)}: {site.id}   {word('date', lang)}: {report.day.isoformat()}   "
            f"{word('shift_of', lang)}: {shifts}",
            f"{word('timezone', lang)}: {report.zone}   {word('generated', lang)}: "
            f"{clock(report.generated, report.zone)}"]


def shift_label(window) -> str:
    return f"{window.number} {window.name}"


def figures(report: Report, lang: str) -> list[Figure]:
    out = []
    for window in report.windows:
        for face in faces(report.site):
            out.append(charts.roof_chart(report.tables["roof_supports"], window.number, face.area, face.required,
                                         shift_label(window), lang))
    if report.tables["equipment"].rows:
        out.append(charts.equipment_chart(report.tables["equipment"], lang))
    if report.tables["completeness"].rows:
        out.append(charts.completeness_chart(report.tables["completeness"], lang))
    return out


def cells(table: Table, lang: str) -> tuple[list[str], list[list[str]]]:
    return ([column(k, lang) for k in table.columns],
            [[cell(v, k, lang) for v, k in zip(row, table.columns)] for row in table.rows])


def write_csv(table: Table, lang: str, path: Path) -> None:
    header, rows = cells(table, lang)
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def svg(fig: Figure) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: without the XML prolog and doctype


def html_page(report: Report, lang: str, figs: list[Figure]) -> str:
    title, *lines = heading(report, lang)
    parts = [f"<!DOCTYPE html><html lang=\"{'zh-CN' if lang == 'zh' else 'en'}\"><head><meta charset=\"utf-8\">",
             f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", *(f"<p>{html.escape(line)}</p>" for line in lines)]
    parts += [f"<figure>{svg(fig)}</figure>" for fig in figs]
    for key in TABLE_ORDER:
        header, rows = cells(report.tables[key], lang)
        parts.append(f"<h2>{html.escape(word(key, lang))}</h2><table><thead><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td{_numeric(c)}>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _numeric(text: str) -> str:
    return ' class="n"' if text.replace(".", "", 1).replace("-", "", 1).isdigit() else ""


def write_pdf(report: Report, lang: str, figs: list[Figure], path: Path) -> None:
    title, *lines = heading(report, lang)
    with PdfPages(path, metadata={"Title": title, "Creator": "minegw report daily"}) as pdf:
        first = Figure(figsize=(11.69, 8.27))
        first.text(0.05, 0.92, title, fontsize=18)
        for i, line in enumerate(lines):
            first.text(0.05, 0.86 - 0.04 * i, line, fontsize=10)
        pdf.savefig(first)
        for fig in figs:
            pdf.savefig(fig)
        for key in TABLE_ORDER:
            for page in table_pages(report.tables[key], lang):
                pdf.savefig(page)


def table_pages(table: Table, lang: str) -> list[Figure]:
    """The table on A4 landscape pages of :data:`ROWS_PER_PAGE` rows, the header on each."""
    header, rows = cells(table, lang)
    pages = []
    for start in range(0, max(len(rows), 1), ROWS_PER_PAGE):
        fig = Figure(figsize=(11.69, 8.27))
        fig.text(0.03, 0.95, word(table.key, lang), fontsize=13)
        ax = fig.add_axes((0.03, 0.03, 0.94, 0.88))
        ax.axis("off")
        chunk = rows[start:start + ROWS_PER_PAGE] or [[word("none", lang)] + [""] * (len(header) - 1)]
        grid = ax.table(cellText=chunk, colLabels=header, loc="upper center", cellLoc="center")
        grid.auto_set_font_size(False)
        grid.set_fontsize(7)
        grid.auto_set_column_width(list(range(len(header))))
        pages.append(fig)
    return pages


def write_all(report: Report, lang: str, folder: Path) -> list[Path]:
    """Every file of the report in ``lang`` into ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for key in TABLE_ORDER:
        write_csv(report.tables[key], lang, folder / f"{key}.csv")
        written.append(folder / f"{key}.csv")
    with charts.style(lang):
        figs = figures(report, lang)
        (folder / "report.html").write_text(html_page(report, lang, figs), encoding="utf-8")
        write_pdf(report, lang, figs, folder / "report.pdf")
    return written + [folder / "report.html", folder / "report.pdf"]
