"""The orchestrator: configuration, clock, trading cycle, market, dispatch, safety, settlement, sinks, CLI."""
