"""``make mutate``: mutation testing of the modules that decide access (mutmut 3).

``python -m mutation run [MODULE ...]`` runs mutmut on each module in turn
(``--jobs`` children at most: the machine is shared); ``python -m mutation
report`` prints the score per module from ``mutants/``. See ``__main__.py``
for what counts, and ``equivalent.toml`` for the mutants that change nothing.
"""
