"""The low-voltage feeder as data, for the market: linearised constraints, an AC check, charges.

`load_feeder(source)` is the one place the feeder comes from (see feeder.py); everything else
takes a `Feeder`. See docs/market.md, "Network".
"""
