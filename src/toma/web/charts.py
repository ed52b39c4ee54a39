"""The ageing chart: open amounts per bucket of days overdue, as SVG made on the server."""

from __future__ import annotations

from decimal import Decimal
from html import escape

from toma.core.ageing import BUCKETS, Ageing

WIDTH = 560
BAR_HEIGHT = 22
GAP = 10
LABEL = 110
COLOURS = ("#4c8c4a", "#c9a227", "#d9822b", "#c0392b", "#7b241c", "#555555")


def ageing_svg(ageing: Ageing) -> str:
    """One group of bars per currency, one bar per bucket; widths relative per currency."""
    rows: list[str] = []
    y = 0
    for currency in sorted(ageing.totals):
        totals = ageing.totals[currency]
        biggest = max(totals.values(), default=Decimal(0)) or Decimal(1)
        rows.append(f'<text x="0" y="{y + 16}" font-weight="bold">{escape(currency)}</text>')
        y += BAR_HEIGHT + GAP // 2
        for index, bucket in enumerate(BUCKETS):
            amount = totals.get(bucket, Decimal(0))
            width = int((WIDTH - LABEL - 120) * amount / biggest)
            colour = COLOURS[index % len(COLOURS)]
            rows.append(
                f'<text x="0" y="{y + 16}">{escape(bucket)}</text>'
                f'<rect x="{LABEL}" y="{y}" width="{width}" height="{BAR_HEIGHT}" '
                f'fill="{colour}"><title>{escape(bucket)}: {amount} {escape(currency)}'
                "</title></rect>"
                f'<text x="{LABEL + width + 6}" y="{y + 16}">{amount:,.2f}</text>'
            )
            y += BAR_HEIGHT + GAP // 2
        y += GAP
    height = max(y, BAR_HEIGHT)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" class="chart" '
        f'width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        'font-family="sans-serif" font-size="13">'
        "<title>Open invoices by days overdue</title>" + "".join(rows) + "</svg>"
    )
