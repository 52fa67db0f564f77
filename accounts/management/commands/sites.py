"""``manage.py sites list | grant USERNAME HOST --role viewer|admin | revoke USERNAME HOST``."""

from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services
from accounts.models import Role


class Command(BaseCommand):
    help = "List sites with their members, grant a user a role on a site, or revoke it."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        actions.add_parser("list", help="Every site: host, name, time zone, members and roles.")
        grant = actions.add_parser("grant", help="Make USERNAME a viewer or admin of HOST.")
        grant.add_argument("username")
        grant.add_argument("host")
        grant.add_argument("--role", choices=Role.values, default=Role.VIEWER)
        revoke = actions.add_parser("revoke", help="Remove USERNAME's access to HOST.")
        revoke.add_argument("username")
        revoke.add_argument("host")

    def handle(self, *args, action, **options):
        if action == "list":
            return self.list()
        try:
            user = selectors.user_named(options["username"])
            site = selectors.site_of_host(options["host"])
        except LookupError as exc:
            raise CommandError(str(exc)) from None
        if action == "grant":
            services.grant(user=user, site=site, role=options["role"])
            self.stdout.write(f"{user.username} is now {options['role']} of {site.host}")
        elif not services.revoke(user=user, site=site):
            raise CommandError(f"{user.username!r} is not a member of {site.host}")
        else:
            self.stdout.write(f"{user.username} no longer has access to {site.host}")

    def list(self):
        sites = selectors.sites_with_members()
        if not sites:
            self.stdout.write("no sites yet (a site is created when its first page is ingested)")
        for site, members in sites:
            name = f" ({site.name})" if site.name else ""
            self.stdout.write(f"{site.host}{name}  id {site.pk}  time zone {site.time_zone}")
            if not members:
                self.stdout.write("  no members (staff only)")
            for membership in members:
                self.stdout.write(f"  {membership.user.username}  {membership.role}")
