"""Route handlers, one module per area; each exposes ``add_routes(routes)``."""
