"""The run, launch, catalogue, token and audit pages in Simplified Chinese (issue 13, part 1): every piece
of their templates' visible text is marked for translation, and a Chinese browser gets them in Chinese."""

from pathlib import Path

import pytest
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run
from tests.i18n_audit import unmarked_text

# The pages are read in Chinese: their catalogue must be compiled.
pytestmark = pytest.mark.usefixtures("compiled_catalogue")

TEMPLATES = [
    "base.html",
    "registration/login.html",
    *(
        f"taskcenter/{name}.html"
        for name in (
            "run_list",
            "run_detail",
            "run_cancel",
            "run_retry",
            "bulk_retry_confirm",
            "_run_recovery",
            "recovery",
            "catalogue",
            "launch",
            "batch_launch",
            "batch_detail",
            "workflow_launch",
            "_arguments",
            "_progress",
            "_live_progress",
            "_field",
            "_form_fields",
            "_state",
            "_beat",
            "_dashboard_live",
            "broker",
            "scheduled_list",
            "api_tokens",
            "audit_list",
            "_audit_table",
        )
    ),
]

CHINESE = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_visible_text_of_the_template_is_marked_for_translation(template):
    source = (Path(settings.BASE_DIR) / "templates" / template).read_text(encoding="utf-8")
    assert unmarked_text(source) == []


def chinese_page(client, url: str) -> str:
    page = client.get(url, **CHINESE)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<html lang="zh-hans">' in html
    return html


@pytest.fixture
def failed_run():
    TaskResult.objects.create(task_id="zh-run-1", task_name="examples.add", status="FAILURE", result="boom")
    return Run.objects.create(task_result_id="zh-run-1", task_name="examples.add", queue="default", args=[1, 2])


@pytest.mark.django_db
def test_the_login_page_is_in_chinese(client):
    html = chinese_page(client, reverse("login"))
    assert "用户名" in html and "密码" in html and ">登录</button>" in html


@pytest.mark.django_db
def test_the_history_page_is_in_chinese_and_keeps_task_names_and_state_codes(staff_client, failed_run):
    html = chinese_page(staff_client, reverse("taskcenter:run_list"))
    assert "<h1>历史记录</h1>" in html and ">筛选</button>" in html and "重新运行所选…" in html
    assert ">仪表盘</a>" in html and ">退出登录</button>" in html  # the menu of base.html
    assert "examples.add" in html and ">FAILURE</span>" in html  # task names and Celery states stay as they are
    assert "History" not in html and "Filter<" not in html


@pytest.mark.django_db
def test_the_run_page_is_in_chinese(staff_client, failed_run):
    html = chinese_page(staff_client, reverse("taskcenter:run_detail", args=[failed_run.task_id]))
    assert "<dt>任务 ID</dt>" in html and "<dt>关键字参数</dt>" in html and "时间线" in html
    assert "重新运行…" in html and "<h2>审计日志</h2>" in html and "<h3>检查点</h3>" in html


@pytest.mark.django_db
def test_the_catalogue_and_launch_pages_are_in_chinese(staff_client):
    html = chinese_page(staff_client, reverse("taskcenter:catalogue"))
    assert "<h1>任务目录</h1>" in html and "启动…" in html and "重试策略" in html
    launch = chinese_page(staff_client, reverse("taskcenter:launch", args=["examples.add"]))
    assert '启动 <span class="mono">examples.add</span>' in launch
    assert "<h2>参数</h2>" in launch and "<h2>选项</h2>" in launch and ">启动</button>" in launch


@pytest.mark.django_db
def test_the_api_tokens_page_is_in_chinese(staff_client):
    staff_client.post(reverse("taskcenter:api_tokens"), {"name": "deploy"}, **CHINESE)
    html = chinese_page(staff_client, reverse("taskcenter:api_tokens"))
    assert "<h1>API 令牌</h1>" in html and "创建令牌" in html and "你的令牌" in html and ">撤销</button>" in html


@pytest.mark.django_db
def test_the_audit_page_is_in_chinese(staff_client):
    AuditEntry.objects.create(actor=None, action="launch", target="examples.add", message="sent")
    html = chinese_page(staff_client, reverse("taskcenter:audit_list"))
    assert "<h1>审计日志</h1>" in html and "<th>操作人</th>" in html and "<td>系统</td>" in html


@pytest.mark.django_db
def test_english_stays_the_default(staff_client, failed_run):
    html = staff_client.get(reverse("taskcenter:run_list")).content.decode()
    assert "<h1>History</h1>" in html and "Re-run selected…" in html


def test_the_beat_line_reads_as_one_sentence_in_each_language():
    beat = {
        "healthy": True,
        "leader": {"hostname": "h1", "id": "beat-1", "pid": 42},
        "last_tick_age": 3.2,
        "standbys": [{}],
    }
    with translation.override("en"):
        english = " ".join(render_to_string("taskcenter/_beat.html", {"beat": beat}).split())
    assert 'Beat <span class="mono">h1</span> (pid 42) is active; last tick 3 s ago, 1 standby.' in english
    with translation.override("zh-hans"):
        chinese = render_to_string("taskcenter/_beat.html", {"beat": {**beat, "standbys": []}})
        without_pid = render_to_string(
            "taskcenter/_beat.html", {"beat": {**beat, "leader": {"hostname": "", "id": "b1"}}}
        )
    assert '调度器 (Beat) <span class="mono">h1</span>（pid 42） 正在运行；上次 tick 在 3 s 前。' in chinese
    assert '<span class="mono">b1</span> 正在运行；上次 tick 在 3 s 前，另有 1 个备用实例。' in without_pid


@pytest.mark.django_db
def test_the_attempt_count_joins_both_counts_in_each_language(staff_client, failed_run):
    url = reverse("taskcenter:run_detail", args=[failed_run.task_id])
    assert 'class="attempt-count">0 attempts, 0 retries</dd>' in staff_client.get(url).content.decode()
    assert 'class="attempt-count">0 次尝试，0 次重试</dd>' in chinese_page(staff_client, url)
