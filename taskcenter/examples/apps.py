from django.apps import AppConfig


class ExamplesConfig(AppConfig):
    name = "taskcenter.examples"
    label = "taskcenter_examples"
    verbose_name = "Task center examples"
