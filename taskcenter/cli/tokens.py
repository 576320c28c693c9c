"""``tc token``: create, list and revoke personal API tokens -- NOT WIRED YET.

Placeholder for the coordinator: after the API branch (``taskcenter.services.api_tokens``)
is merged, give this module a ``register(groups)`` like the other groups --

    token create NAME [--expires DAYS] --user USERNAME   prints the token once
    token list [--user USERNAME]                         name, created, expires, last used
    token revoke NAME_OR_ID --user USERNAME

each handler a ``base.Cli`` function calling the token service (``--json``, ``--user``,
``service_errors()`` as in ``tasks.py``) -- and add it to ``GROUPS`` in
``taskcenter/management/commands/tc.py``.
"""
