"""gunicorn settings (`gunicorn -c config/gunicorn.py`): its log lines in the project's one format."""

from taskcenter.log_format import LOG_FORMAT

# Merged by gunicorn into its defaults; its loggers keep their own handlers and do not also
# pass their records to the root logger (which would print each line twice).
logconfig_dict = {
    "formatters": {"generic": {"()": "taskcenter.log_format.OffsetFormatter", "format": LOG_FORMAT}},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
# The line's own time (with its offset) replaces the access log's %(t)s.
access_log_format = '%(h)s %(u)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'
