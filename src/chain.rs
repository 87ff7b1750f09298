//! Carries the order chain: each command becomes a domain event, the new state is saved, and the
//! effects are carried out in the group (relays, mentions, the report, the daily log).

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use teloxide::types::{InlineKeyboardButton, InlineKeyboardMarkup};

use crate::app::App;
use crate::backup_run::{self, RunOutcome};
use crate::domain::{
    parse_log_date, place_order, Effect, Event, Order, OrderId, OrderStatus, Refusal, Role, UserId,
};
use crate::storage::StoreError;

/// Callback data of a "direct to" button: `direct:<order>:<jfu>`.
pub fn direct_button_data(order: OrderId, jfu: UserId) -> String {
    format!("direct:{}:{}", order.0, jfu.0)
}

pub fn parse_direct_button(data: &str) -> Option<(OrderId, UserId)> {
    let mut parts = data.strip_prefix("direct:")?.split(':');
    let order = parts.next()?.parse().ok()?;
    let jfu = parts.next()?.parse().ok()?;
    parts
        .next()
        .is_none()
        .then_some((OrderId(order), UserId(jfu)))
}

async fn refuse(app: &App, refusal: &Refusal) -> Result<()> {
    app.group
        .say(&app.catalog.refusal(refusal, &app.name_of()))
        .await?;
    Ok(())
}

/// Applies `event` to the active order, saves it, and carries out the effects. `Ok(false)` when it
/// was refused (the refusal has been said in the group).
pub async fn advance(app: &Arc<App>, order: &Order, event: Event) -> Result<bool> {
    let (next, effects) = match order.apply(&app.settings.roster, event.clone(), Utc::now()) {
        Ok(done) => done,
        Err(refusal) => {
            refuse(app, &refusal).await?;
            return Ok(false);
        }
    };
    match app.store.save(order, &next).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => {
            // Someone else moved the order first (a report landing under a /cancel): refuse as
            // the order stands now, with the reason that applies to it.
            let now = app.store.order(order.id).await?;
            let refusal = now
                .as_ref()
                .and_then(|o| o.apply(&app.settings.roster, event, Utc::now()).err())
                .unwrap_or(Refusal::OutOfOrder {
                    status: now.map(|o| o.status).unwrap_or(order.status),
                    action: crate::domain::Move::Progress,
                });
            refuse(app, &refusal).await?;
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    }
    carry_out(app, &next, effects).await?;
    Ok(true)
}

/// Step 1.
pub async fn order_backup(app: &Arc<App>, by: UserId, note: Option<String>) -> Result<()> {
    let active = app.store.active_order().await?;
    let new = match place_order(&app.settings.roster, by, note, active.as_ref(), Utc::now()) {
        Ok((new, _)) => new,
        Err(refusal) => return refuse(app, &refusal).await,
    };
    let order = match app.store.insert_order(new, app.group.chat_id().0).await {
        Ok(order) => order,
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
        Err(e) => return Err(e.into()),
    };
    carry_out(app, &order, vec![Effect::RelayOrderToKasi]).await
}

/// The active order; when there is none, the chat is told so (and `None` returned).
async fn active_order_or_say_none(app: &App) -> Result<Option<Order>> {
    let order = app.store.active_order().await?;
    if order.is_none() {
        app.group.say(&app.catalog.no_active_order()).await?;
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

/// The JFU confirms: steps 3–6 start, unless no engine is configured.
pub async fn start(app: &Arc<App>, by: UserId) -> Result<()> {
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(());
    };
    if order.status == OrderStatus::Started
        && app.is_running(order.id)
        && app.settings.roster.has(by, Role::Jfu)
    {
        app.group.say(&app.catalog.already_running(&order)).await?;
        return Ok(());
    }
    if let Err(refusal) = order.apply(&app.settings.roster, Event::Start { by }, Utc::now()) {
        return refuse(app, &refusal).await;
    }
    let Some(engine) = &app.engine else {
        app.group.say(&app.catalog.engine_not_configured()).await?;
        return Ok(());
    };
    if app.another_run_busy(order.id) {
        app.group.say(&app.catalog.previous_run_stopping()).await?;
        return Ok(());
    }
    if let Err(why) = engine.ready() {
        app.group.say(&app.catalog.disk_not_ready(&why)).await?;
        return Ok(());
    }
    advance(app, &order, Event::Start { by }).await.map(|_| ())
}

/// Step 7 (and so step 8).
pub async fn receive(app: &Arc<App>, by: UserId) -> Result<()> {
    let Some(order) = active_order_or_say_none(app).await? else {
        return Ok(());
    };
    if !advance(app, &order, Event::Receive { by }).await? {
        return Ok(());
    }
    let received = app.store.order(order.id).await?.context("order vanished")?;
    advance(app, &received, Event::Log).await.map(|_| ())
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
    app.group.say(&text).await?;
    Ok(())
}

/// The daily log of the date in `arg`, as the chat shows it and the terminal prints it.
pub async fn render_log(
    app_store: &crate::storage::Store,
    catalog: &crate::messages::Catalog,
    date: chrono::NaiveDate,
    name_of: &(dyn Fn(UserId) -> String + Sync),
) -> Result<String> {
    let entries = app_store.daily_log(date).await?;
    if entries.is_empty() {
        return Ok(catalog.log_empty(date));
    }
    let mut out = catalog.log_header(date);
    for e in entries {
        out.push_str("\n\n");
        out.push_str(&catalog.log_entry(
            &e.order,
            e.recorded_at,
            &crate::messages::esc(&e.summary),
            name_of,
        ));
    }
    Ok(out)
}

pub async fn log(app: &Arc<App>, by: UserId, arg: &str) -> Result<()> {
    if !app.settings.roster.has_any_role(by) {
        return refuse_outsider(app).await;
    }
    let date = match parse_log_date(arg, app.today()) {
        Ok(d) => d,
        Err(_) => {
            app.group.say(&app.catalog.bad_date(arg)).await?;
            return Ok(());
        }
    };
    let text = render_log(&app.store, &app.catalog, date, &app.name_of()).await?;
    app.group.say(&text).await?;
    Ok(())
}

/// Carries out what a move requires outside the domain.
pub async fn carry_out(app: &Arc<App>, order: &Order, effects: Vec<Effect>) -> Result<()> {
    let c = &app.catalog;
    for effect in effects {
        match effect {
            Effect::RelayOrderToKasi => {
                let text = c.order_relayed(
                    order,
                    &app.people.mention(order.ordered_by),
                    &app.mention_role(Role::Kasi),
                );
                let buttons: Vec<Vec<InlineKeyboardButton>> = app
                    .settings
                    .roster
                    .jfu
                    .iter()
                    .map(|jfu| {
                        vec![InlineKeyboardButton::callback(
                            c.direct_button(
                                &app.people
                                    .get(*jfu)
                                    .map(|p| p.first_name)
                                    .unwrap_or_else(|| jfu.to_string()),
                            ),
                            direct_button_data(order.id, *jfu),
                        )]
                    })
                    .collect();
                let id = app
                    .group
                    .say_with_buttons(&text, InlineKeyboardMarkup::new(buttons))
                    .await?;
                app.store.set_order_message(order.id, id).await?;
            }
            Effect::RelayDirectionToJfu(jfu) => {
                if let Some(id) = app.store.order_message(order.id).await? {
                    if let Err(e) = app.group.remove_buttons(id).await {
                        tracing::warn!(order = %order.id, error = %e, "could not remove the direct buttons");
                    }
                }
                let kasi = order
                    .step(crate::domain::SopStep::Direct)
                    .and_then(|s| s.actor)
                    .map(|k| app.people.mention(k))
                    .unwrap_or_default();
                app.group
                    .say(&c.directed(order, &kasi, &app.people.mention(jfu)))
                    .await?;
            }
            Effect::RunEngine => {
                let jfu = order.jfu.map(|j| app.people.mention(j)).unwrap_or_default();
                app.group.say(&c.started(order, &jfu)).await?;
                spawn_run(app.clone(), order.id, false);
            }
            Effect::StopEngine => {
                // The run kills its exports on the server and removes partial files; its handle
                // stays until it has, so no new run starts on top of its clean-up.
                if let Some(handle) = app
                    .runs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&order.id)
                {
                    handle.stop.stop(crate::engine::StopReason::Cancel);
                }
            }
            Effect::ReportToKasi | Effect::AnnounceFailure => {
                let outcome = backup_run::stored_outcome(app, order.id).await?;
                let text = backup_run::report_text(app, order, outcome.as_ref());
                app.group.say(&text).await?;
                if let Some(RunOutcome::Completed(report)) = &outcome {
                    backup_run::attach_manifest(app, report).await;
                }
            }
            Effect::RelayReportToKasubdit => {
                let kasi = order
                    .step(crate::domain::SopStep::Receive)
                    .and_then(|s| s.actor)
                    .map(|k| app.people.mention(k))
                    .unwrap_or_default();
                let kasubdit = app.people.mention(order.ordered_by);
                let outcome = backup_run::stored_outcome(app, order.id).await?;
                let text = format!(
                    "{}\n\n{}",
                    c.received(order, &kasi, &kasubdit),
                    backup_run::report_text(app, order, outcome.as_ref())
                );
                app.group.say(&text).await?;
            }
            Effect::WriteDailyLog => {
                let outcome = backup_run::stored_outcome(app, order.id).await?;
                let summary = backup_run::summary_line(app, order, outcome.as_ref());
                let date = app.today();
                app.store
                    .write_daily_log(order, date, Utc::now(), &summary)
                    .await?;
                if order.status == OrderStatus::Logged {
                    app.group.say(&c.logged(order, date)).await?;
                }
            }
            Effect::AnnounceCancel => {
                let by = order
                    .closed_by
                    .map(|u| app.people.mention(u))
                    .unwrap_or_default();
                if let Some(id) = app.store.order_message(order.id).await? {
                    let _ = app.group.remove_buttons(id).await;
                }
                app.group.say(&c.cancelled(order, &by)).await?;
            }
        }
    }
    Ok(())
}

/// Starts (or, with `resume`, continues) the run of order `id` in the background and applies
/// how it ends (the report, or the failure) as the chain's next move.
pub fn spawn_run(app: Arc<App>, id: OrderId, resume: bool) {
    let task_app = app.clone();
    let (stop_handle, stop) = crate::engine::Stop::pair();
    let handle = tokio::spawn(async move {
        let ended = backup_run::execute(task_app.clone(), id, resume, stop).await;
        let applied = match ended {
            Ok(Some((order, event))) => advance(&task_app, &order, event).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = applied {
            tracing::error!(order = %id, error = ?e, "the backup run could not be finished");
        }
        task_app
            .runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    });
    app.runs.lock().unwrap_or_else(|p| p.into_inner()).insert(
        id,
        crate::app::RunHandle {
            stop: stop_handle,
            task: handle.abort_handle(),
        },
    );
}

/// On start-up: an order left in steps 3–6 is resumed, or failed with the reason when it cannot be.
pub async fn resume_unfinished(app: &Arc<App>) -> Result<()> {
    let Some(order) = app.store.active_order().await? else {
        return Ok(());
    };
    if order.status != OrderStatus::Started {
        return Ok(());
    }
    if app.engine.is_none() {
        let reason = app.catalog.restarted_without_engine();
        app.store
            .set_report(
                order.id,
                &serde_json::to_value(RunOutcome::Abandoned(reason.clone()))?,
            )
            .await?;
        advance(app, &order, Event::Failed { step: None, reason }).await?;
        return Ok(());
    }
    app.group
        .say(&app.catalog.restarted_during_run(&order))
        .await?;
    spawn_run(app.clone(), order.id, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_data_round_trips_and_rejects_garbage() {
        let data = direct_button_data(OrderId(7), UserId(8_000_000_000));
        assert_eq!(
            parse_direct_button(&data),
            Some((OrderId(7), UserId(8_000_000_000)))
        );
        for bad in ["direct:7", "direct:x:1", "other:1:2", "direct:1:2:3", ""] {
            assert_eq!(parse_direct_button(bad), None, "{bad}");
        }
    }
}
