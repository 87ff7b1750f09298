//! Carries the order chain: each command becomes a domain event, and the move it makes is saved
//! in one transaction with what it says ([`crate::procedure::moves`]); the delivery worker sends the
//! messages afterwards (the Telegram adapter's delivery worker). Here: the commands, and starting,
//! stopping and finishing runs after their moves are committed.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;

use crate::domain::{
    parse_log_period, parse_month, place_order, Effect, Event, LogPeriod, Month, Order, OrderId,
    OrderStatus, Refusal, Role, UserId,
};
use crate::outbox::Outgoing;
use crate::procedure::app::{App, ButtonAnswer};
use crate::procedure::backup_run::{self, RunEnding, RunOutcome};
use crate::procedure::moves;
use crate::storage::StoreError;

/// A refusal changes nothing, so it is said at once rather than through the outbox.
async fn refuse(app: &App, refusal: &Refusal) -> Result<()> {
    app.chat
        .say(&app.catalog.refusal(refusal, &app.name_of()))
        .await?;
    Ok(())
}

/// One move of order `id` ([`moves::commit`]), then what it asks of this process: start or stop
/// the run. `Ok(Err(_))`: refused, nothing changed.
pub async fn commit(
    app: &Arc<App>,
    id: OrderId,
    events: Vec<Event>,
    report: Option<RunOutcome>,
    extra: impl FnOnce(&Order) -> Vec<Outgoing>,
) -> Result<Result<Order, Refusal>> {
    let (next, local) = match moves::commit(app, id, events, report, extra).await? {
        Ok(done) => done,
        Err(refusal) => return Ok(Err(refusal)),
    };
    for effect in local {
        match effect {
            Effect::RunEngine => spawn_run(app.clone(), id, false),
            Effect::StopEngine => {
                // The run kills its exports on the server and removes partial files; its handle
                // stays until it has, so no new run starts on top of its clean-up.
                if let Some(handle) = app.runs.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
                    handle.stop.stop(crate::engine::StopReason::Cancel);
                }
            }
            _ => {}
        }
    }
    Ok(Ok(next))
}

/// Applies a person's `event` to `order`; a refusal is said in the group (`Ok(false)`).
pub async fn advance(app: &Arc<App>, order: &Order, event: Event) -> Result<bool> {
    advance_all(app, order, vec![event]).await
}

async fn advance_all(app: &Arc<App>, order: &Order, events: Vec<Event>) -> Result<bool> {
    match commit(app, order.id, events, None, |_| Vec::new()).await? {
        Ok(_) => Ok(true),
        Err(refusal) => {
            refuse(app, &refusal).await?;
            Ok(false)
        }
    }
}

/// Step 1.
pub async fn order_backup(app: &Arc<App>, by: UserId, note: Option<String>) -> Result<()> {
    let active = app.store.active_order().await?;
    let new = match place_order(&app.settings.roster, by, note, active.as_ref(), Utc::now()) {
        Ok((new, _)) => new,
        Err(refusal) => return refuse(app, &refusal).await,
    };
    let relay = |order: &Order| moves::render(app, order, &Effect::RelayOrderToKasi, None);
    match app.store.insert_order(new, app.chat.chat_id(), relay).await {
        Ok(_) => {
            app.outbox_ready.notify_one();
            Ok(())
        }
        Err(StoreError::AlreadyActive) => {
            // Two orders at once: the database let only one through.
            let active = app
                .store
                .active_order()
                .await?
                .context("an active order vanished")?;
            return refuse(
                app,
                &Refusal::AlreadyActive {
                    active: active.id,
                    status: active.status,
                },
            )
            .await;
        }
        Err(e) => Err(e.into()),
    }
}

/// The active order; when there is none, the chat is told so (and `None` returned).
async fn active_order_or_say_none(app: &App) -> Result<Option<Order>> {
    let order = app.store.active_order().await?;
    if order.is_none() {
        app.chat.say(&app.catalog.no_active_order()).await?;
    }
    Ok(order)
}

/// Step 2, from a command or a button.
pub async fn direct(app: &Arc<App>, by: UserId, jfu: UserId) -> Result<bool> {
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(false);
    };
    advance(app, &order, Event::Direct { by, jfu }).await
}

/// `/direct`, `/direct @username` or `/direct <id>`: the JFU named (or the only one), then the
/// move. A name that cannot be resolved is answered with the JFUs to choose from.
pub async fn direct_named(app: &Arc<App>, by: UserId, arg: &str) -> Result<()> {
    let roster = &app.settings.roster;
    let jfu_names = || {
        roster
            .jfu
            .iter()
            .map(|j| {
                app.people
                    .get(*j)
                    .and_then(|p| p.username.map(|u| format!("@{u}")))
                    .unwrap_or_else(|| j.to_string())
            })
            .collect::<Vec<_>>()
    };
    if !roster.has(by, Role::Kasi) {
        // The domain refuses with the reason; an argument that can't be resolved doesn't matter.
        let any_jfu = roster.jfu.iter().next().copied().unwrap_or(by);
        direct(app, by, any_jfu).await?;
        return Ok(());
    }
    let jfu = if arg.is_empty() {
        match roster.sole_jfu() {
            Some(j) => j,
            None => {
                app.chat.say(&app.catalog.name_a_jfu(&jfu_names())).await?;
                return Ok(());
            }
        }
    } else if let Ok(id) = arg.parse::<i64>() {
        UserId(id)
    } else if arg.starts_with('@') && !arg.contains(char::is_whitespace) {
        match app.people.by_username(arg) {
            Some(id) => id,
            None => {
                app.chat
                    .say(&app.catalog.unknown_jfu(arg, &jfu_names()))
                    .await?;
                return Ok(());
            }
        }
    } else {
        app.chat
            .say(&app.catalog.unknown_jfu(arg, &jfu_names()))
            .await?;
        return Ok(());
    };
    direct(app, by, jfu).await?;
    Ok(())
}

/// A "direct to" button press for `jfu` on the message of order `order_id` (`message`): only a
/// Kasi may use it, only while that order waits, and it is removed once used.
pub async fn direct_button(
    app: &Arc<App>,
    by: UserId,
    order_id: OrderId,
    jfu: UserId,
    message: Option<i64>,
) -> ButtonAnswer {
    let c = &app.catalog;
    if !app.settings.roster.has(by, Role::Kasi) {
        return ButtonAnswer::alert(c.button_not_for_you());
    }
    let active = match app.store.active_order().await {
        Ok(active) => active,
        Err(e) => return ButtonAnswer::alert(app.failure_reply(&e.into())),
    };
    if active.as_ref().map(|o| o.id) != Some(order_id) {
        if let Some(m) = message {
            let _ = app.chat.remove_buttons(m).await;
        }
        return ButtonAnswer::toast(c.button_stale());
    }
    match direct(app, by, jfu).await {
        Ok(true) => ButtonAnswer::toast(c.button_used(&app.people.name(jfu))),
        Ok(false) => ButtonAnswer::toast(c.button_stale()),
        Err(e) => ButtonAnswer::alert(app.failure_reply(&e)),
    }
}

/// The JFU confirms: steps 3–6 start, unless no engine is configured.
pub async fn start(app: &Arc<App>, by: UserId) -> Result<()> {
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(());
    };
    if order.status == OrderStatus::Started
        && app.is_running(order.id)
        && app.settings.roster.has(by, Role::Jfu)
    {
        app.chat.say(&app.catalog.already_running(&order)).await?;
        return Ok(());
    }
    if let Err(refusal) = order.apply(&app.settings.roster, Event::Start { by }, Utc::now()) {
        return refuse(app, &refusal).await;
    }
    let Some(engine) = &app.engine.backups else {
        app.chat.say(&app.catalog.engine_not_configured()).await?;
        return Ok(());
    };
    if app.another_run_busy(order.id) {
        app.chat.say(&app.catalog.previous_run_stopping()).await?;
        return Ok(());
    }
    if let Err(why) = engine.ready() {
        app.chat
            .say(&app.catalog.disk_not_ready(&why.to_string()))
            .await?;
        return Ok(());
    }
    advance(app, &order, Event::Start { by }).await.map(|_| ())
}

/// Step 7 and step 8, as one move: an order received is logged in the same transaction.
pub async fn receive(app: &Arc<App>, by: UserId) -> Result<()> {
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(());
    };
    advance_all(app, &order, vec![Event::Receive { by }, Event::Log])
        .await
        .map(|_| ())
}

pub async fn cancel(app: &Arc<App>, by: UserId, reason: Option<String>) -> Result<()> {
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(());
    };
    advance(app, &order, Event::Cancel { by, reason })
        .await
        .map(|_| ())
}

/// `/status` and `/log` are for the people of the chain only.
async fn refuse_outsider(app: &App) -> Result<()> {
    let needed = vec![Role::Kasubdit, Role::Kasi, Role::Jfu];
    refuse(app, &Refusal::WrongRole { needed }).await
}

pub async fn status(app: &Arc<App>, by: UserId) -> Result<()> {
    if !app.settings.roster.has_any_role(by) {
        return refuse_outsider(app).await;
    }
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(());
    };
    let holder = match order.status {
        OrderStatus::Ordered | OrderStatus::Reported => Some(app.mention_role_names(Role::Kasi)),
        OrderStatus::Directed | OrderStatus::Started => order.jfu.map(|j| app.people.name(j)),
        _ => None,
    };
    let mut text = app
        .catalog
        .status(&order, Utc::now(), holder, &app.name_of());
    if order.status == OrderStatus::Started {
        if let Some(live) = app.progress_of(order.id) {
            text.push('\n');
            text.push_str(&live);
        }
    }
    app.chat.say(&text).await?;
    Ok(())
}

/// The daily log of `date`, or the log of a month, as the chat shows it and the terminal prints it.
pub async fn render_log(
    store: &crate::storage::Store,
    catalog: &crate::messages::Catalog,
    period: LogPeriod,
    name_of: &(dyn Fn(UserId) -> String + Sync),
) -> Result<String> {
    let (from, until) = period.days();
    let entries = store.daily_log_between(from, until).await?;
    let restores = store.restores_logged_between(from, until).await?;
    let drills = store.drills_logged_between(from, until).await?;
    let nothing = entries.is_empty() && restores.is_empty() && drills.is_empty();
    let mut out = match (period, nothing) {
        (LogPeriod::Day(d), true) => return Ok(catalog.log_empty(d)),
        (LogPeriod::Month(m), true) => return Ok(catalog.log_month_empty(m)),
        (LogPeriod::Day(d), false) => catalog.log_header(d),
        (LogPeriod::Month(m), false) => catalog.log_month_header(m),
    };
    for e in entries {
        out.push_str("\n\n");
        // Rendered now, in the reader's language, from how the run ended; an entry without a
        // run (cancelled before it) keeps the summary of its day.
        let outcome: Option<RunOutcome> = e.report.and_then(|v| serde_json::from_value(v).ok());
        let summary = match &outcome {
            Some(o) => catalog.summary(&e.order, Some(o), name_of),
            None => e.summary,
        };
        match period {
            LogPeriod::Day(_) => out.push_str(&catalog.log_entry(
                &e.order,
                outcome.as_ref(),
                e.recorded_at,
                &crate::messages::esc(&summary),
                name_of,
            )),
            LogPeriod::Month(_) => {
                out.push_str(&catalog.log_month_entry(e.date, &e.order, &summary))
            }
        }
    }
    for r in restores {
        out.push_str("\n\n");
        out.push_str(&catalog.restore_log_entry(&r, name_of));
    }
    for d in drills {
        out.push_str("\n\n");
        out.push_str(&catalog.drill_log_entry(&d, name_of));
    }
    Ok(out)
}

pub async fn log(app: &Arc<App>, by: UserId, arg: &str) -> Result<()> {
    if !app.settings.roster.has_any_role(by) {
        return refuse_outsider(app).await;
    }
    let period = match parse_log_period(arg, app.today()) {
        Ok(p) => p,
        Err(_) => {
            app.chat.say(&app.catalog.bad_date(arg)).await?;
            return Ok(());
        }
    };
    let text = render_log(&app.store, &app.catalog, period, &app.name_of()).await?;
    app.chat.say(&text).await?;
    Ok(())
}

/// The orders of month `m` as the activity CSV (for `/export` and `mailbox-backup-bot export`).
pub async fn activity_csv(
    store: &crate::storage::Store,
    catalog: &crate::messages::Catalog,
    m: Month,
    name_of: &(dyn Fn(UserId) -> String + Sync),
) -> Result<(String, usize)> {
    let at_midnight = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|t| t.and_local_timezone(catalog.tz).earliest())
            .map(|t| t.with_timezone(&Utc))
            .context("a month outside the calendar")
    };
    let orders = store
        .orders_placed_between(
            at_midnight(m.first_day())?,
            at_midnight(m.next_first_day())?,
        )
        .await?;
    let orders: Vec<(Order, Option<RunOutcome>)> = orders
        .into_iter()
        .map(|(o, report)| (o, report.and_then(|v| serde_json::from_value(v).ok())))
        .collect();
    Ok((
        catalog.activity_csv(&orders, Utc::now(), name_of),
        orders.len(),
    ))
}

/// `/export [MM-YYYY]`: the month's activity as a CSV document in the group.
pub async fn export(app: &Arc<App>, by: UserId, arg: &str) -> Result<()> {
    if !app.settings.roster.has_any_role(by) {
        return refuse_outsider(app).await;
    }
    let m = match parse_month(arg, app.today()) {
        Ok(m) => m,
        Err(_) => {
            app.chat.say(&app.catalog.bad_month(arg)).await?;
            return Ok(());
        }
    };
    let (csv, orders) =
        activity_csv(&app.store, &app.catalog, m, &|id| app.people.plain_name(id)).await?;
    app.chat
        .attach(
            &app.catalog.export_file_name(m),
            csv.into_bytes(),
            &app.catalog.export_caption(m, orders),
        )
        .await?;
    Ok(())
}

/// `/check` (Kasubdit or Kasi): the pre-flight of `mailbox-backup-bot check` on the settings the
/// bot runs with, plus the token, the group and the people of the roles; one line per check.
pub async fn check(app: &Arc<App>, by: UserId) -> Result<()> {
    let roster = &app.settings.roster;
    if !(roster.has(by, Role::Kasubdit) || roster.has(by, Role::Kasi)) {
        let needed = vec![Role::Kasubdit, Role::Kasi];
        return refuse(app, &Refusal::WrongRole { needed }).await;
    }
    app.chat.say(&app.catalog.check_running()).await?;
    let mut lines = crate::preflight::run(&app.settings_read).await;
    lines.extend(app.chat.checks(&app.settings.roster).await);
    app.chat.say(&app.catalog.check_report(&lines)).await?;
    Ok(())
}

/// Starts (or, with `resume`, continues) the run of order `id` in the background and applies
/// how it ends (the report, or the failure) as the chain's next move, waiting out a database
/// outage: the run's result is never dropped because PostgreSQL blinked.
pub fn spawn_run(app: Arc<App>, id: OrderId, resume: bool) {
    let task_app = app.clone();
    let (stop_handle, stop) = crate::engine::Stop::pair();
    let handle = tokio::spawn(async move {
        let app = task_app;
        let ended = backup_run::execute(app.clone(), id, resume, stop).await;
        let applied = match ended {
            Ok(Some(ending)) => finish_run(&app, id, ending).await,
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = applied {
            tracing::error!(order = %id, error = ?e, "the backup run could not be finished");
        }
        app.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    });
    app.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(
        id,
        crate::procedure::app::RunHandle {
            stop: stop_handle,
            task: handle.abort_handle(),
        },
    );
}

/// The run's last move: its result, its step's end, the progress message's last words and the
/// report, in one transaction.
async fn finish_run(app: &Arc<App>, id: OrderId, ending: RunEnding) -> Result<()> {
    let end_edit = moves::progress_end(app, ending.end);
    let moved = crate::storage::patiently("the run's result", || {
        commit(
            app,
            id,
            vec![ending.event.clone()],
            Some(ending.outcome.clone()),
            |_| vec![end_edit.clone()],
        )
    })
    .await?;
    if let Err(refusal) = moved {
        // Cancelled while the result was being saved: the cancel has said so.
        tracing::info!(order = %id, %refusal, "the run's result came after the order moved on");
    }
    Ok(())
}

/// On start-up: an order left in steps 3–6 is resumed, or failed with the reason when it cannot be.
pub async fn resume_unfinished(app: &Arc<App>) -> Result<()> {
    let Some(order) = app.store.active_order().await? else {
        return Ok(());
    };
    if order.status != OrderStatus::Started {
        return Ok(());
    }
    if app.engine.backups.is_none() {
        let outcome = RunOutcome::Abandoned(crate::run_outcome::Abandon::RestartedWithoutEngine);
        let failed = Event::Failed {
            step: None,
            reason: outcome.evidence().unwrap_or_default(),
        };
        if let Err(refusal) =
            commit(app, order.id, vec![failed], Some(outcome), |_| Vec::new()).await?
        {
            tracing::warn!(order = %order.id, %refusal, "could not fail the unfinished order");
        }
        return Ok(());
    }
    app.store
        .enqueue(
            Some(order.id),
            &[Outgoing::say(app.catalog.restarted_during_run(&order))],
        )
        .await?;
    app.outbox_ready.notify_one();
    spawn_run(app.clone(), order.id, true);
    Ok(())
}
