"""Schedule logic that does not depend on Django: crontab fire times across DST."""
