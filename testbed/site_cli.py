"""`testbed site generate|check`: site files for scale tests, and checking one before a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tomli_w
import typer
from rich.console import Console

from testbed.cli import app

console = Console()
site_app = typer.Typer(help="Site files: generate one for scale tests, or check one.")
app.add_typer(site_app, name="site")


@site_app.command("generate")
def generate(
    peers: Annotated[int, typer.Option("--peers", min=1, max=2000, help="Number of homes.")],
    out: Annotated[Path, typer.Option("--out", help="The site file to write (TOML).")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the homes' mix and sizes.")] = 1,
    agent: Annotated[str, typer.Option("--agent", help="Every home's agent.")] = "optimising",
) -> None:
    """Write a community of N homes on a radial feeder (PV-only, PV + battery, battery-only, EV
    and consumer homes), validated like any site file."""
    from labspec.site_generate import generate_site
    from peers.agents import agent_kinds

    if agent not in agent_kinds():
        console.print(
            f"[red]error:[/red] --agent = {agent!r}: no such agent; agents: "
            f"{', '.join(agent_kinds())}",
            soft_wrap=True,
        )
        raise typer.Exit(2)
    site = generate_site(peers, seed, agent=agent)
    header = (
        f"# {site.site.name}: written by `testbed site generate --peers {peers} --seed {seed}`.\n"
        "# docs/site.md explains every key.\n\n"
    )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(header + tomli_w.dumps(site.to_toml_dict()), encoding="utf-8")
    except OSError as error:
        console.print(
            f"[red]error:[/red] --out {out}: cannot write the site file "
            f"({error.strerror or error})",
            soft_wrap=True,
        )
        raise typer.Exit(2) from None
    kinds = sorted({d.kind for d in site.devices.values()})
    console.print(
        f"{out}: {len(site.peers)} peers, {len(site.devices)} devices ({', '.join(kinds)}), "
        f"{len(site.feeder.buses)} buses"
    )


@site_app.command("check")
def check(site_file: Annotated[Path, typer.Argument(help="A site file (TOML).")]) -> None:
    """Validate a site file; a problem is printed with the key, the value and what is allowed."""
    from labspec.site import SiteError, load_site
    from testbed.driver_registry import check_site
    from testbed.site_peers import check_peers

    try:
        site = load_site(site_file)
        check_site(site, str(site_file))  # every device's driver kind exists and serves it
        check_peers(site, str(site_file))  # peer ids the platform can use; agents and params
    except SiteError as error:
        console.print(f"[red]error:[/red] {error}", soft_wrap=True)
        raise typer.Exit(2) from None
    console.print(f"{site_file}: {len(site.peers)} peers, {len(site.devices)} devices: ok")
