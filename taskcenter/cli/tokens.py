"""``tc token``: create, list and revoke personal API tokens (the API tokens page, docs/api.md)."""

from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from taskcenter.cli.base import Cli, add_common, add_parser, iso, service_errors, short_time, usage_error
from taskcenter.models import ApiToken
from taskcenter.selectors.api_tokens import token_of, tokens_of
from taskcenter.services.api_tokens import token_create, token_revoke

WHOSE = _("Tokens belong to the user given with --user (required): a token acts with that user's permissions.")


def register(groups) -> None:
    group = add_parser(
        groups,
        "token",
        help=_("Create, list and revoke personal API tokens.") + " " + WHOSE,
        examples="  manage.py tc token create deploy-script --expires-days 90 --user alice\n"
        "  manage.py tc token list --user alice\n  manage.py tc token revoke deploy-script --user alice",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = add_parser(
        actions,
        "create",
        help=_("Create a token and print it once (it is stored hashed and cannot be shown again)."),
        examples="  manage.py tc token create ci --user alice\n"
        "  manage.py tc token create ci --expires-days 30 --user alice --json",
    )
    create.add_argument("name", metavar="NAME", help=_("A name that says where the token is used."))
    create.add_argument("--expires-days", type=int, metavar="DAYS", help=_("Refuse the token after this many days."))
    add_common(create)
    create.set_defaults(handler=token_create_command)
    listing = add_parser(
        actions,
        "list",
        help=_("The user's tokens: name, start of the token, created, expires, last used, status."),
        examples="  manage.py tc token list --user alice --json",
    )
    add_common(listing)
    listing.set_defaults(handler=token_list_command)
    revoke = add_parser(
        actions,
        "revoke",
        help=_("Revoke a token by id or name: every later request with it gets 401."),
        examples="  manage.py tc token revoke 7 --user alice\n  manage.py tc token revoke ci --user alice",
    )
    revoke.add_argument("token", metavar="ID_OR_NAME", help=_("The token's id or name."))
    add_common(revoke)
    revoke.set_defaults(handler=token_revoke_command)


def _owner(cli: Cli):
    if cli.actor is None:
        raise usage_error(_("Give --user USERNAME: %(whose)s") % {"whose": WHOSE})
    return cli.actor


def _document(token: ApiToken) -> dict:
    return {
        "id": token.pk,
        "name": token.name,
        "prefix": token.prefix,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at),
        "active": token.is_active,
    }


def token_create_command(cli: Cli) -> None:
    owner = _owner(cli)
    days = cli.options.get("expires_days")
    if days is not None and not 1 <= days <= 3650:
        raise usage_error(_("--expires-days must be between 1 and 3650."))
    expires_at = timezone.now() + timedelta(days=days) if days else None
    with service_errors():
        token, plain = token_create(user=owner, name=cli.options["name"], expires_at=expires_at, actor=owner)
    if cli.as_json:
        cli.json({**_document(token), "token": plain})
    else:
        cli.line(plain)
        cli.stderr.write(_("API token '%(name)s' created; it is shown only this once.") % {"name": token.name})


def token_list_command(cli: Cli) -> None:
    tokens = list(tokens_of(_owner(cli))[:500])
    if cli.as_json:
        cli.json({"tokens": [_document(token) for token in tokens]})
        return
    cli.table(
        (_("ID"), _("NAME"), _("TOKEN"), _("CREATED"), _("EXPIRES"), _("LAST USED"), _("STATUS")),
        [
            (
                token.pk, token.name, f"{token.prefix}…", short_time(token.created_at), short_time(token.expires_at),
                short_time(token.last_used_at),
                _("revoked") if token.revoked_at else (_("active") if token.is_active else _("expired")),
            )
            for token in tokens
        ],
    )  # fmt: skip


def token_revoke_command(cli: Cli) -> None:
    owner = _owner(cli)
    wanted = cli.options["token"]
    token = token_of(owner, wanted) or tokens_of(owner).filter(name=wanted, revoked_at=None).first()
    if token is None:
        raise usage_error(
            _("User '%(user)s' has no token '%(token)s' (see tc token list).")
            % {"user": owner.get_username(), "token": wanted}
        )
    with service_errors():
        token_revoke(token=token, actor=owner)
    if cli.as_json:
        cli.json({"status": "revoked", **_document(token)})
    else:
        cli.line(_("Revoked API token %(token)s.") % {"token": token})
