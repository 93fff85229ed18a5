"""The ``cunxiang`` command line: one module per command group, the parser and ``main()`` in :mod:`cli.main`.

Commands build the same runtime the web app runs (``server.build_runtime``)
and call the same domain services; what they add is only what a console
needs: arguments, printing, exit codes.
"""
