"""Schedule logic without database or broker: crontab fire times (``timing``), send/skip/wait (``due``)."""
