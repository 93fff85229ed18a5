"""Schedules: when notices play, in Asia/Shanghai wall-clock time, and the scheduler that wakes the dispatcher."""
