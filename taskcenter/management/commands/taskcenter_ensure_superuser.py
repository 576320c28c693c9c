"""Create the first superuser from the environment, or generate one, exactly once."""

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils.translation import gettext as _


class Command(BaseCommand):
    help = _(
        "Create a superuser from DJANGO_SUPERUSER_USERNAME / DJANGO_SUPERUSER_PASSWORD; "
        "when they are unset, create 'admin' with a generated password shown once. "
        "An existing user is left as it is."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip()
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        if username and not password:
            raise CommandError(_("DJANGO_SUPERUSER_USERNAME is set but DJANGO_SUPERUSER_PASSWORD is not."))
        generated = not username
        if generated:
            username = "admin"
            password = secrets.token_urlsafe(12)

        if User.objects.filter(**{User.USERNAME_FIELD: username}).exists():
            self.stdout.write(_("Superuser '%(name)s' already exists; left unchanged.") % {"name": username})
            return
        if generated and User.objects.filter(is_superuser=True).exists():
            self.stdout.write(_("A superuser already exists; none created."))
            return
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    _(
                        "Created superuser '%(name)s' with password '%(password)s'\n"
                        "This password is shown only now; change it in the admin or with "
                        "`manage.py changepassword admin`."
                    )
                    % {"name": username, "password": password}
                )
            )
        else:
            self.stdout.write(self.style.SUCCESS(_("Created superuser '%(name)s'.") % {"name": username}))
