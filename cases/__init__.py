"""The case workflow (诉求案件): workflow, ledger, statistics, clocks, sealing, replay, callbacks, follow-ups."""
