"""Watching the service itself: free disk space, the clock's synchronisation, and /metrics for Prometheus.

Nothing here belongs to a domain: the watchers measure the machine (statvfs, timedatectl/chronyc) and the
metrics read what the domains already keep (their tables, their health reports). ``ops.part`` builds them;
``server.py`` hands the disk watch to broadcasting, which asks it before taking more space.
"""
