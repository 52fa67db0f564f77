# One image for every Metriflow process: API, stage workers, beat and Flower.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_SETTINGS_MODULE=metriflow.settings.production

RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# Hashed, compressed static files, served by whitenoise (no database needed).
RUN DJANGO_SETTINGS_MODULE=metriflow.settings.local python manage.py collectstatic --noinput -v0
RUN useradd --create-home --uid 1000 metriflow \
    && mkdir -p /app/data /app/var && chown -R metriflow /app/data /app/var
USER metriflow

EXPOSE 8080
CMD ["gunicorn", "metriflow.wsgi:application", "--config", "metriflow/gunicorn.conf.py"]
