"""Example launchable tasks, installed unless TASKCENTER_EXAMPLES=false."""
