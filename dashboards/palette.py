"""One colour per peer (and per other actor) on every page: Okabe-Ito, safe for colour blindness."""

from __future__ import annotations

PEER_COLOURS = {"A": "#E69F00", "B": "#0072B2", "C": "#009E73"}
_MORE_PEER_COLOURS = ("#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#8C564B", "#17BECF")

GRID_COLOUR = "#7F7F7F"
NETWORK_COLOUR = "#B0B0B0"
PENALTY_COLOUR = "#7B3294"
DEMAND_COLOUR = "#D55E00"  # bids, the buyers' curve
SUPPLY_COLOUR = "#56B4E9"  # asks, the sellers' curve
CLEARING_COLOUR = "#000000"
COMMUNITY = "community"  # the line of all peers summed (dashboards/peer_focus.py)
COMMUNITY_COLOUR = "#000000"
OTHERS = "others"  # the peers an aggregated chart does not name (dashboards/aggregate.py)
OTHERS_COLOUR = "#9E9E9E"

DEVICE_DASH = {
    "meter": "solid",
    "inverter": "dot",
    "pv_inverter": "longdash",
    "ev_charger": "dash",
    "load": "dashdot",
}


def peer_colour(peer: str) -> str:
    """The colour of `peer`: fixed for A, B, C; stable for any other name."""
    if peer in PEER_COLOURS:
        return PEER_COLOURS[peer]
    if peer == COMMUNITY:
        return COMMUNITY_COLOUR
    if peer.startswith(f"{OTHERS} ("):
        return OTHERS_COLOUR
    index = sum(ord(ch) for ch in peer) % len(_MORE_PEER_COLOURS)
    return _MORE_PEER_COLOURS[index]


def peer_colour_map(peers: list[str] | tuple[str, ...] | set[str]) -> dict[str, str]:
    """`{peer: colour}` for plotly express's `color_discrete_map`."""
    return {peer: peer_colour(peer) for peer in peers}


def lighter(colour: str, amount: float = 0.55) -> str:
    """`colour` mixed with white (for a baseline drawn next to the real value)."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    mix = [round(c + (255 - c) * amount) for c in (red, green, blue)]
    return "#" + "".join(f"{c:02X}" for c in mix)


def with_alpha(colour: str, alpha: float) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"
