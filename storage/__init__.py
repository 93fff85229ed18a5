"""Storage: the ORM models every domain shares, the migrations, and the session factory.

Each domain keeps its own queries beside its rules; this package holds no rules.
"""
