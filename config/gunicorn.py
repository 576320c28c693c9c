"""gunicorn settings (`gunicorn -c config/gunicorn.py`): its log lines in the project's one format."""

from taskcenter.log_format import LOG_FORMAT

logconfig_dict = {
    "formatters": {"generic": {"()": "taskcenter.log_format.OffsetFormatter", "format": LOG_FORMAT}},
}
# The line's own time (with its offset) replaces the access log's %(t)s.
access_log_format = '%(h)s %(u)s "%(r)s" %(s)s %(b)s %(M)sms "%(f)s" "%(a)s"'
