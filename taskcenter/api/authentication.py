"""Bearer token authentication for the API."""

from rest_framework import authentication, exceptions

from taskcenter.services.api_tokens import token_authenticate


class BearerTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>``; ``request.auth`` is the ``ApiToken``.

    An unknown, expired or revoked token is refused (401); so is a token whose user is inactive.
    """

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Give the token as 'Authorization: Bearer <token>'.")
        try:
            plain = header[1].decode()
        except UnicodeError:
            raise exceptions.AuthenticationFailed("The token is not valid.") from None
        token = token_authenticate(plain)
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed("The token is unknown, expired or revoked.")
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


from taskcenter.api import schema as _schema  # noqa: E402,F401  (registers the schema extension)
