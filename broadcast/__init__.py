"""Broadcasting: notices, approval, audio production, the dispatcher, transports, the as-run log."""
