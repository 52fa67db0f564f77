import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")
application = get_wsgi_application()

# The API refuses to start on data built with other settings (pipeline/datasettings.py):
# gunicorn's worker fails to boot, and gunicorn stops with the message.
from pipeline.datasettings import verify_at_start  # noqa: E402

verify_at_start("the API")
