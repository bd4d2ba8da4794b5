"""Reports: results.json files in, merged tables, selection, peer ratios and plots out."""

from edgeresnet.report.render import write_report
from edgeresnet.report.rows import Row, all_rows, rows_of
from edgeresnet.report.schema import load_many, load_results
from edgeresnet.report.select import Constraints, select

__all__ = [
    "Constraints",
    "Row",
    "all_rows",
    "load_many",
    "load_results",
    "rows_of",
    "select",
    "write_report",
]
