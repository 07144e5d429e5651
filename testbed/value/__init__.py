"""The yardstick: the value a run captured against the perfect-foresight optimum of its day.

`value_report(run_dir)` reads a finished run (`metered_day`), computes the community's bill under
the baseline rules (`baseline`), the perfect-foresight optimum (`optimum`, one cvxpy LP) and the
run's own settlement, and the share of the value captured (`report`). `testbed value RUN` prints it.
"""

from testbed.value.metered_day import IncompleteRun, MeteredDay, metered_day
from testbed.value.optimum import InfeasibleOptimum, optimum, storage_value
from testbed.value.report import ValueReport, value_report

__all__ = [
    "IncompleteRun",
    "InfeasibleOptimum",
    "MeteredDay",
    "ValueReport",
    "metered_day",
    "optimum",
    "storage_value",
    "value_report",
]
