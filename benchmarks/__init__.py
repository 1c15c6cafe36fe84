"""biogw benchmarks: each module measures one thing and prints its figures.

Run them all with ``python -m benchmarks`` (see ``benchmarks/__main__.py``).
"""
