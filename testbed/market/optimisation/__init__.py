"""The paper's optimisation and game-theoretic market methods (seed, sections 4.1 and 4.3).

`welfare` (centralised social-welfare clearing, cvxpy), `admm` (the same problem, distributed),
`nash` (generalised Nash bargaining over the gains) and `stackelberg` (an operator sets internal
prices, peers respond). Each clears the same order book as the auctions; see docs/market.md.
"""
