"""Market mechanisms over one order-book type."""
