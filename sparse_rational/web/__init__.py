"""Try a model in the browser, and serve it (see the README, "Try it in a browser, serve it").

=============  ======================================================================
``payload``    the JSON the page and the server exchange: the embedded model, an explanation
``demo``       the self-contained interactive page (jinja2 template + ``static/*.js``)
``tables``     where Table 1 comes from, for both commands (``TableSource``, ``table_for``)
``server``     the ASGI app of ``sparse-rational serve`` (starlette + uvicorn: the ``serve`` extra)
``cli``        the ``demo`` and ``serve`` subcommands (``add_parsers``, ``run_demo``, ``run_serve``)
=============  ======================================================================

Importing this package imports neither torch nor the server's libraries.
"""
