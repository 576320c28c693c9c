"""``manage.py tc``: one command line for taskcenter, a thin layer over the services and selectors.

Each module holds one group of subcommands (``tc task ...``, ``tc schedule ...``) and
exposes ``register(groups)``, which adds its parsers to the ``tc`` command and sets each
leaf's ``handler``: a function of a ``base.Cli`` that parses, checks the actor's rights
like the pages do, calls one service or selector, and reports (text or ``--json``).
"""
