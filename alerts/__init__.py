"""Official warnings (CAP 1.2): intake, validation, area matching, policy, airing and cancellation."""
