"""Issue 13, part 1: the schedule, notification, alert, queue, failure group, dead letter and retry
policy pages are fully marked for translation, and a Chinese browser gets them in Simplified Chinese."""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from tests.i18n_audit import unmarked_text
from tests.test_deadletters import letter
from tests.test_failure_groups import make_groups
from tests.test_schedules import make_schedule

TEMPLATES = [
    "schedule_list.html",
    "schedule_detail.html",
    "schedule_form.html",
    "schedule_delete_confirm.html",
    "notifications.html",
    "notification_channel_form.html",
    "notification_rule_form.html",
    "alerts.html",
    "queues.html",
    "failure_list.html",
    "failure_detail.html",
    "failure_retry_confirm.html",
    "failure_action_confirm.html",
    "_failure_runs_table.html",
    "deadletter_list.html",
    "deadletter_detail.html",
    "deadletter_confirm.html",
    "deadletter_replay.html",
    "retry_policy.html",
]


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_template_has_no_text_left_unmarked_for_translation(name):
    source = (Path(settings.BASE_DIR) / "templates" / "taskcenter" / name).read_text(encoding="utf-8")
    assert unmarked_text(source) == []


def test_taskcenters_admin_overrides_have_no_text_left_unmarked():
    folder = Path(settings.BASE_DIR) / "templates" / "admin"
    for path in sorted(folder.rglob("*.html")):  # none today: the admin's own templates are translated by Django
        assert unmarked_text(path.read_text(encoding="utf-8")) == [], path


@pytest.fixture
def chinese(compiled_catalogue, staff_client):
    """GET a page as a staff user whose browser asks for Simplified Chinese; the page must answer 200."""

    def get(url, **params):
        response = staff_client.get(url, params, HTTP_ACCEPT_LANGUAGE="zh-hans")
        assert response.status_code == 200, url
        html = response.content.decode()
        assert '<html lang="zh-hans">' in html
        return html

    yield get
    translation.deactivate()  # the next test starts in the default language


def assert_all_in(html, *texts):
    missing = [text for text in texts if text not in html]
    assert not missing, f"not on the page: {missing}"


@pytest.mark.django_db
def test_the_schedule_pages_are_in_chinese(chinese):
    task = make_schedule()
    assert_all_in(chinese(reverse("taskcenter:schedule_list")), "<h1>定时计划</h1>", "下次运行", "失败次数（7 天）")
    assert_all_in(
        chinese(reverse("taskcenter:schedule_detail", args=[task.pk])),
        "时区",
        "关键字参数",
        "接下来的运行",
        "立即运行",
        "还没有运行。",
    )
    assert_all_in(
        chinese(reverse("taskcenter:schedule_new"), task="examples.add"),
        '新建 <span class="mono">examples.add</span> 的定时计划',
        "执行时间",
        "选项与策略",
        "保存",
    )


@pytest.mark.django_db
def test_the_notifications_alerts_and_queues_pages_are_in_chinese(chinese, redis_server):
    assert_all_in(
        chinese(reverse("taskcenter:notification_list")), "<h1>通知</h1>", "添加渠道", "还没有规则", "发送记录"
    )
    assert_all_in(chinese(reverse("taskcenter:alerts")), "<h1>告警</h1>", "阈值", "当前数据", "在线工作进程")
    assert_all_in(chinese(reverse("taskcenter:queue_list")), "<h1>队列</h1>", "消费者", "暂停", "清空")


@pytest.mark.django_db
def test_the_failure_and_dead_letter_pages_are_in_chinese(chinese):
    group = make_groups(1)[0]
    assert_all_in(chinese(reverse("taskcenter:failure_list")), "<h1>失败</h1>", "首次出现", "筛选")
    assert_all_in(
        chinese(reverse("taskcenter:failure_detail", args=[group.fingerprint])),
        "指纹",
        "重新运行此分组的失败运行…",
        "将此分组转为死信…",
    )
    dead = letter()
    assert_all_in(chinese(reverse("taskcenter:deadletter_list")), "<h1>死信</h1>", "到达时间", "详情")
    assert_all_in(chinese(reverse("taskcenter:deadletter_detail", args=[dead.pk])), "原因", "堆栈", "重放…")


@pytest.mark.django_db
def test_the_retry_policy_page_is_in_chinese(chinese):
    html = chinese("/tasks/examples.flaky/retry-policy/")
    assert_all_in(html, '<span class="mono">examples.flaky</span> 的重试策略', "最大重试次数", "退避", "保存覆盖设置")
