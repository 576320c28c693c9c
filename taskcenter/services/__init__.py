"""Services: the plain-Python layer that does taskcenter's work.

Views, admin actions, commands and the API parse input and call one function
here; nothing else publishes a task or changes a run.
"""
