"""The Python side of the SQL API: each function returns a `Call` (one statement and
the reading of its rows) that a sync or an async connection runs. The modules mirror
sql/functions/; this file only gathers their public names, so `store.enqueue(...)`
reads the same wherever it is called. Outside migrations, the store is the only place
that writes SQL, and it imports nothing from the runtime layers."""

from skiplock.store.auth import (
    API_TOKEN_COLUMNS as API_TOKEN_COLUMNS,
)
from skiplock.store.auth import (
    AUDIT_COLUMNS as AUDIT_COLUMNS,
)
from skiplock.store.auth import (
    USER_COLUMNS as USER_COLUMNS,
)
from skiplock.store.auth import (
    create_api_token as create_api_token,
)
from skiplock.store.auth import (
    create_user as create_user,
)
from skiplock.store.auth import (
    delete_user as delete_user,
)
from skiplock.store.auth import (
    disable_user as disable_user,
)
from skiplock.store.auth import (
    enable_user as enable_user,
)
from skiplock.store.auth import (
    find_api_token as find_api_token,
)
from skiplock.store.auth import (
    find_user as find_user,
)
from skiplock.store.auth import (
    list_api_tokens as list_api_tokens,
)
from skiplock.store.auth import (
    list_audit as list_audit,
)
from skiplock.store.auth import (
    list_users as list_users,
)
from skiplock.store.auth import (
    prune_audit_log as prune_audit_log,
)
from skiplock.store.auth import (
    record_audit as record_audit,
)
from skiplock.store.auth import (
    record_user_login as record_user_login,
)
from skiplock.store.auth import (
    revoke_api_token as revoke_api_token,
)
from skiplock.store.auth import (
    set_user_password as set_user_password,
)
from skiplock.store.call import (
    Call as Call,
)
from skiplock.store.call import (
    Row as Row,
)
from skiplock.store.call import (
    ashow_readable_json as ashow_readable_json,
)
from skiplock.store.call import (
    int_array as int_array,
)
from skiplock.store.call import (
    load_json as load_json,
)
from skiplock.store.call import (
    load_readable_json as load_readable_json,
)
from skiplock.store.call import (
    named_tuple_row as named_tuple_row,
)
from skiplock.store.call import (
    show_readable_json as show_readable_json,
)
from skiplock.store.call import (
    text_array as text_array,
)
from skiplock.store.claim import (
    CLAIM_SESSION_SETTINGS as CLAIM_SESSION_SETTINGS,
)
from skiplock.store.claim import (
    ClaimBounds as ClaimBounds,
)
from skiplock.store.claim import (
    claim_jobs as claim_jobs,
)
from skiplock.store.claim import (
    heartbeat_jobs as heartbeat_jobs,
)
from skiplock.store.claim import (
    set_claim_session as set_claim_session,
)
from skiplock.store.claim import (
    set_job_progress as set_job_progress,
)
from skiplock.store.dead_letters import (
    DEAD_LETTER_COLUMNS as DEAD_LETTER_COLUMNS,
)
from skiplock.store.dead_letters import (
    DEAD_LETTER_PREVIEWS as DEAD_LETTER_PREVIEWS,
)
from skiplock.store.dead_letters import (
    get_dead_letter as get_dead_letter,
)
from skiplock.store.dead_letters import (
    list_dead_letters as list_dead_letters,
)
from skiplock.store.dependents import (
    LinkedJob as LinkedJob,
)
from skiplock.store.dependents import (
    dependency_links as dependency_links,
)
from skiplock.store.dependents import (
    sweep_waiting_jobs as sweep_waiting_jobs,
)
from skiplock.store.enqueue import (
    INSERT_MAX_JOBS as INSERT_MAX_JOBS,
)
from skiplock.store.enqueue import (
    SHARED_OPTIONS as SHARED_OPTIONS,
)
from skiplock.store.enqueue import (
    CopyCall as CopyCall,
)
from skiplock.store.enqueue import (
    EnqueueRequest as EnqueueRequest,
)
from skiplock.store.enqueue import (
    copy_jobs as copy_jobs,
)
from skiplock.store.enqueue import (
    enqueue as enqueue,
)
from skiplock.store.enqueue import (
    enqueue_many as enqueue_many,
)
from skiplock.store.enqueue import (
    insert_jobs as insert_jobs,
)
from skiplock.store.enqueue import (
    shared_options as shared_options,
)
from skiplock.store.finish import (
    complete_jobs as complete_jobs,
)
from skiplock.store.finish import (
    fail_jobs as fail_jobs,
)
from skiplock.store.finish import (
    release_jobs as release_jobs,
)
from skiplock.store.job_logs import (
    JOB_LOG_MAX_BYTES as JOB_LOG_MAX_BYTES,
)
from skiplock.store.job_logs import (
    JOB_LOG_MAX_LINES as JOB_LOG_MAX_LINES,
)
from skiplock.store.job_logs import (
    DroppedLines as DroppedLines,
)
from skiplock.store.job_logs import (
    JobLogLine as JobLogLine,
)
from skiplock.store.job_logs import (
    LogLine as LogLine,
)
from skiplock.store.job_logs import (
    append_job_logs as append_job_logs,
)
from skiplock.store.job_logs import (
    job_logs as job_logs,
)
from skiplock.store.jobs import (
    JOB_COLUMNS as JOB_COLUMNS,
)
from skiplock.store.jobs import (
    JOB_FIELDS as JOB_FIELDS,
)
from skiplock.store.jobs import (
    JOB_PREVIEWS as JOB_PREVIEWS,
)
from skiplock.store.jobs import (
    JOB_SORT_KEYS as JOB_SORT_KEYS,
)
from skiplock.store.jobs import (
    JobFilter as JobFilter,
)
from skiplock.store.jobs import (
    count_jobs as count_jobs,
)
from skiplock.store.jobs import (
    get_job as get_job,
)
from skiplock.store.jobs import (
    job_id_span as job_id_span,
)
from skiplock.store.jobs import (
    job_queues as job_queues,
)
from skiplock.store.jobs import (
    list_job_previews as list_job_previews,
)
from skiplock.store.jobs import (
    list_jobs as list_jobs,
)
from skiplock.store.jobs import (
    list_jobs_page as list_jobs_page,
)
from skiplock.store.jobs import (
    list_jobs_page_matching as list_jobs_page_matching,
)
from skiplock.store.maintenance import (
    expire_jobs as expire_jobs,
)
from skiplock.store.maintenance import (
    prune_job_history as prune_job_history,
)
from skiplock.store.maintenance import (
    prune_unique_keys as prune_unique_keys,
)
from skiplock.store.maintenance import (
    rescue_expired_jobs as rescue_expired_jobs,
)
from skiplock.store.metrics_history import (
    DepthSample as DepthSample,
)
from skiplock.store.metrics_history import (
    MetricsPoint as MetricsPoint,
)
from skiplock.store.metrics_history import (
    fold_metrics as fold_metrics,
)
from skiplock.store.metrics_history import (
    latest_queue_depth as latest_queue_depth,
)
from skiplock.store.metrics_history import (
    metrics_bounds as metrics_bounds,
)
from skiplock.store.metrics_history import (
    metrics_series as metrics_series,
)
from skiplock.store.metrics_history import (
    prune_metrics as prune_metrics,
)
from skiplock.store.metrics_history import (
    sample_queue_depth as sample_queue_depth,
)
from skiplock.store.migrations import (
    applied_functions as applied_functions,
)
from skiplock.store.migrations import (
    applied_migrations as applied_migrations,
)
from skiplock.store.operator import (
    cancel_job as cancel_job,
)
from skiplock.store.operator import (
    configure_queue as configure_queue,
)
from skiplock.store.operator import (
    create_queue as create_queue,
)
from skiplock.store.operator import (
    delete_job as delete_job,
)
from skiplock.store.operator import (
    delete_queue as delete_queue,
)
from skiplock.store.operator import (
    pause_queue as pause_queue,
)
from skiplock.store.operator import (
    purge_dead_letters as purge_dead_letters,
)
from skiplock.store.operator import (
    redrive_dead_letters as redrive_dead_letters,
)
from skiplock.store.operator import (
    resume_queue as resume_queue,
)
from skiplock.store.operator import (
    retry_job as retry_job,
)
from skiplock.store.operator import (
    set_queue_defaults as set_queue_defaults,
)
from skiplock.store.operator import (
    set_queue_limits as set_queue_limits,
)
from skiplock.store.operator import (
    set_queue_order as set_queue_order,
)
from skiplock.store.previews import (
    PREVIEW_CHARS as PREVIEW_CHARS,
)
from skiplock.store.previews import (
    with_previews as with_previews,
)
from skiplock.store.queues import (
    QUEUE_STAT_COLUMNS as QUEUE_STAT_COLUMNS,
)
from skiplock.store.queues import (
    get_queue as get_queue,
)
from skiplock.store.queues import (
    health_figures as health_figures,
)
from skiplock.store.queues import (
    lock_queue as lock_queue,
)
from skiplock.store.queues import (
    queue_stats as queue_stats,
)
from skiplock.store.queues import (
    queue_totals as queue_totals,
)
from skiplock.store.queues import (
    queue_workers as queue_workers,
)
from skiplock.store.schedules import (
    SCHEDULE_COLUMNS as SCHEDULE_COLUMNS,
)
from skiplock.store.schedules import (
    DueSchedule as DueSchedule,
)
from skiplock.store.schedules import (
    create_schedule as create_schedule,
)
from skiplock.store.schedules import (
    delete_schedule as delete_schedule,
)
from skiplock.store.schedules import (
    fire_schedule as fire_schedule,
)
from skiplock.store.schedules import (
    list_schedules as list_schedules,
)
from skiplock.store.schedules import (
    lock_due_schedules as lock_due_schedules,
)
from skiplock.store.schedules import (
    run_schedule as run_schedule,
)
from skiplock.store.schedules import (
    schedule_name as schedule_name,
)
from skiplock.store.schedules import (
    set_schedule_enabled as set_schedule_enabled,
)
from skiplock.store.schedules import (
    set_schedule_next_run as set_schedule_next_run,
)
from skiplock.store.session import (
    notify as notify,
)
from skiplock.store.session import (
    set_statement_timeout as set_statement_timeout,
)
from skiplock.store.tasks import (
    TASK_COLUMNS as TASK_COLUMNS,
)
from skiplock.store.tasks import (
    THROUGHPUT_COLUMNS as THROUGHPUT_COLUMNS,
)
from skiplock.store.tasks import (
    forget_task as forget_task,
)
from skiplock.store.tasks import (
    job_duration_bounds as job_duration_bounds,
)
from skiplock.store.tasks import (
    list_tasks as list_tasks,
)
from skiplock.store.tasks import (
    publish_tasks as publish_tasks,
)
from skiplock.store.tasks import (
    queue_throughput as queue_throughput,
)
from skiplock.store.tasks import (
    read_job_counts as read_job_counts,
)
from skiplock.store.webhooks import (
    WebhookDelivery as WebhookDelivery,
)
from skiplock.store.webhooks import (
    unsigned_callbacks as unsigned_callbacks,
)
from skiplock.store.webhooks import (
    webhook_deliveries as webhook_deliveries,
)
from skiplock.store.workers import (
    WORKER_COLUMNS as WORKER_COLUMNS,
)
from skiplock.store.workers import (
    list_workers as list_workers,
)
from skiplock.store.workers import (
    prune_workers as prune_workers,
)
from skiplock.store.workers import (
    recorded_attempts as recorded_attempts,
)
from skiplock.store.workers import (
    register_worker as register_worker,
)
from skiplock.store.workers import (
    stop_worker as stop_worker,
)
from skiplock.store.workers import (
    unregister_worker as unregister_worker,
)
from skiplock.store.workflows import (
    WORKFLOW_COLUMNS as WORKFLOW_COLUMNS,
)
from skiplock.store.workflows import (
    WORKFLOW_PREVIEWS as WORKFLOW_PREVIEWS,
)
from skiplock.store.workflows import (
    WORKFLOW_STEP_COLUMNS as WORKFLOW_STEP_COLUMNS,
)
from skiplock.store.workflows import (
    WORKFLOW_STEP_PREVIEWS as WORKFLOW_STEP_PREVIEWS,
)
from skiplock.store.workflows import (
    cancel_workflow as cancel_workflow,
)
from skiplock.store.workflows import (
    enqueue_workflow as enqueue_workflow,
)
from skiplock.store.workflows import (
    get_workflow_summary as get_workflow_summary,
)
from skiplock.store.workflows import (
    list_workflow_step_previews as list_workflow_step_previews,
)
from skiplock.store.workflows import (
    list_workflow_steps as list_workflow_steps,
)
from skiplock.store.workflows import (
    list_workflow_summaries as list_workflow_summaries,
)
from skiplock.store.workflows import (
    prune_workflows as prune_workflows,
)
from skiplock.store.workflows import (
    retry_workflow as retry_workflow,
)
from skiplock.store.workflows import (
    workflow_job_ids as workflow_job_ids,
)
