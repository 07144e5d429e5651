"""The orchestrator: config, clock, trading cycle, market, dispatch, safety, settlement, CLI."""
