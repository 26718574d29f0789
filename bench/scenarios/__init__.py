"""The scenario groups, by name, in the order they run and report; BENCH_SCENARIOS picks some.

A group is a module of this package whose SCENARIO (a bench.report.Scenario) runs it and says
what it adds to the report: its rows of the table, its targets, its configuration lines. Adding
a group is its module and its name below.
"""

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.report import Scenario

GROUPS = ("base", "stacks", "scale", "addresses")


def scenario(name: str) -> "Scenario":
    return importlib.import_module(f"{__name__}.{name}").SCENARIO
