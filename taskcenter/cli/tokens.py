"""``tc token``: create, list and revoke personal API tokens (the API tokens page, docs/api.md)."""

from datetime import timedelta

from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from taskcenter.cli.base import Cli, add_common, add_parser, iso, service_errors, short_time, usage_error
from taskcenter.models import ApiToken
from taskcenter.selectors.api_tokens import token_of, tokens_of
from taskcenter.services.api_tokens import token_create, token_revoke

WHOSE = "Tokens belong to the user given with --user (required): a token acts with that user's permissions."


def register(groups) -> None:
    group = add_parser(
        groups,
        "token",
        help="Create, list and revoke personal API tokens. " + WHOSE,
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
        raise usage_error("Give --user USERNAME: " + WHOSE)
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
        raise usage_error("--expires-days must be between 1 and 3650.")
    expires_at = timezone.now() + timedelta(days=days) if days else None
    with service_errors():
        token, plain = token_create(user=owner, name=cli.options["name"], expires_at=expires_at, actor=owner)
    if cli.as_json:
        cli.json({**_document(token), "token": plain})
    else:
        cli.line(plain)
        cli.stderr.write(f"API token {token.name!r} created; it is shown only this once.")


def token_list_command(cli: Cli) -> None:
    tokens = list(tokens_of(_owner(cli))[:500])
    if cli.as_json:
        cli.json({"tokens": [_document(token) for token in tokens]})
        return
    cli.table(
        ("ID", "NAME", "TOKEN", "CREATED", "EXPIRES", "LAST USED", "STATUS"),
        [
            (
                token.pk, token.name, f"{token.prefix}…", short_time(token.created_at), short_time(token.expires_at),
                short_time(token.last_used_at),
                "revoked" if token.revoked_at else ("active" if token.is_active else "expired"),
            )
            for token in tokens
        ],
    )  # fmt: skip


def token_revoke_command(cli: Cli) -> None:
    owner = _owner(cli)
    wanted = cli.options["token"]
    token = token_of(owner, wanted) or tokens_of(owner).filter(name=wanted, revoked_at=None).first()
    if token is None:
        raise usage_error(f"User {owner.get_username()!r} has no token {wanted!r} (see tc token list).")
    with service_errors():
        token_revoke(token=token, actor=owner)
    cli.json({"status": "revoked", **_document(token)}) if cli.as_json else cli.line(f"Revoked API token {token}.")
