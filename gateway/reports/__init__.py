"""Daily reports from the historian (``minegw report daily``, docs/reports.md).

- :mod:`.config`: the site file's ``reports:`` section, shift windows;
- :mod:`.source`: InfluxQL against InfluxDB 1.x (``gateway.historian.influx``'s query);
- :mod:`.roof`, :mod:`.equipment`, :mod:`.alarms`, :mod:`.completeness`: the figures, one module each;
- :mod:`.terms`: every word of the report in Chinese and English;
- :mod:`.charts`, :mod:`.render`: HTML (inline SVG), PDF (matplotlib PdfPages), CSV;
- :mod:`.daily`: collects a day or a shift and writes the files.
"""
