"""Small shared building blocks with no domain knowledge: errors, clocks, owned tasks."""
