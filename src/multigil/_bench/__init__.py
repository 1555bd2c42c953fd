"""``multigil bench``: a benchmark suite that runs on the user's machine.

Modules, one concept each:

- :mod:`.workloads` — the functions workers run (imported in every worker);
- :mod:`.suite` — the catalogue of named workloads and their sizes;
- :mod:`.contenders` — the executors compared;
- :mod:`.runner` — the interleaved timing of workloads on contenders;
- :mod:`.stats` — medians, spreads and ratios;
- :mod:`.progress` — the progress line;
- :mod:`.report` — tables, verdict and JSON;
- :mod:`.plot` — the optional scaling chart;
- :mod:`.cli` — the ``bench`` subcommand's arguments.

Nothing is imported here: workers import :mod:`.workloads` through this
package and must not pay for the rest.
"""
