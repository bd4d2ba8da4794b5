"""Reports: results.json files in, one merged table with plots out (Markdown, HTML, PNG)."""

from edgeresnet.report.render import write_report
from edgeresnet.report.schema import Row, load_results

__all__ = ["Row", "load_results", "write_report"]
