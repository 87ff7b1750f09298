//! A move of the order chain as one transaction: the domain's events applied to the order read
//! under a row lock, and what the move writes (state, steps, run result, daily-log entry) and says
//! in the group (outbox rows, rendered here from the catalogue) committed together. Used by the
//! chain for commands and by the run for its step records.

use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;

use crate::domain::{Effect, Event, Order, OrderId, OrderStatus, Refusal, Role, SopStep};
use crate::messages::RunView;
use crate::outbox::{Button, Outgoing, Slot};
use crate::procedure::app::App;
use crate::run_outcome::RunOutcome;
use crate::storage::{DailyLogRow, Move};

/// Applies `events` to order `id` as one move: the order is read under a row lock, the events
/// applied in turn, and everything the move writes and says is committed together. `extra`
/// renders messages said before the move's own (from the order after the move); `report` is the
/// run's result the move carries. Returns the order after the move and what is left to do in
/// this process (start or stop the run); `Ok(Err(_))`: refused, nothing changed.
pub async fn commit(
    app: &Arc<App>,
    id: OrderId,
    events: Vec<Event>,
    report: Option<RunOutcome>,
    extra: impl FnOnce(&Order) -> Vec<Outgoing>,
) -> Result<Result<(Order, Vec<Effect>), Refusal>> {
    let report_json = report.as_ref().map(serde_json::to_value).transpose()?;
    let mut local = Vec::new();
    let decided = app
        .store
        .apply_move(id, |order, stored| {
            let now = Utc::now();
            let mut next = order.clone();
            let mut effects = Vec::new();
            for event in events {
                let (moved, more) = next.apply(&app.settings.roster, event, now)?;
                next = moved;
                effects.extend(more);
            }
            let outcome = report.or_else(|| {
                stored.and_then(|v| serde_json::from_value::<RunOutcome>(v.clone()).ok())
            });
            let mut outgoing = extra(&next);
            let mut daily_log = None;
            for effect in effects {
                match effect {
                    Effect::RunEngine | Effect::StopEngine => local.push(effect),
                    Effect::WriteDailyLog => {
                        let date = app.today();
                        daily_log = Some(DailyLogRow {
                            date,
                            at: now,
                            summary: summary_line(app, &next, outcome.as_ref()),
                        });
                        if next.status == OrderStatus::Logged {
                            outgoing.push(Outgoing::say(app.catalog.logged(&next, date)));
                        }
                    }
                    other => outgoing.extend(render(app, &next, &other, outcome.as_ref())),
                }
            }
            if local.contains(&Effect::RunEngine) {
                let jfu = next.jfu.map(|j| app.people.mention(j)).unwrap_or_default();
                outgoing.push(Outgoing::say(app.catalog.started(&next, &jfu)));
                outgoing.push(Outgoing::Say {
                    html: app.catalog.progress(&RunView::default()),
                    quiet: true,
                    buttons: Vec::new(),
                    remember: Some(Slot::ProgressMessage),
                    reply_to: None,
                });
            }
            Ok(Move {
                next,
                outgoing,
                report: report_json,
                daily_log,
            })
        })
        .await?;
    let next = match decided {
        Ok(next) => next,
        Err(refusal) => return Ok(Err(refusal)),
    };
    app.outbox_ready.notify_one();
    Ok(Ok((next, local)))
}

/// The progress message's last words: the run's real end.
pub fn progress_end(app: &App, end: crate::messages::RunEnd) -> Outgoing {
    Outgoing::Edit {
        slot: Slot::ProgressMessage,
        html: app.catalog.progress(&RunView {
            end: Some(end),
            ..RunView::default()
        }),
    }
}

/// What an effect says in the group, rendered from the order after the move.
pub fn render(
    app: &App,
    order: &Order,
    effect: &Effect,
    outcome: Option<&RunOutcome>,
) -> Vec<Outgoing> {
    let c = &app.catalog;
    match effect {
        Effect::RelayOrderToKasi => vec![order_relayed(app, order)],
        Effect::RelayDirectionToJfu(jfu) => {
            let kasi = actor_of(app, order, SopStep::Direct);
            vec![
                Outgoing::RemoveButtons {
                    slot: Slot::OrderMessage,
                },
                Outgoing::say(c.directed(order, &kasi, &app.people.mention(*jfu))),
            ]
        }
        Effect::ReportToKasi | Effect::AnnounceFailure => report(app, order, outcome),
        Effect::RelayReportToKasubdit => {
            let kasi = actor_of(app, order, SopStep::Receive);
            let kasubdit = app.people.mention(order.ordered_by);
            // A reply to the report, not a second copy of it.
            vec![Outgoing::Say {
                html: c.received(order, &kasi, &kasubdit),
                quiet: false,
                buttons: Vec::new(),
                remember: None,
                reply_to: Some(Slot::ReportMessage),
            }]
        }
        Effect::AnnounceCancel => {
            let by = order
                .closed_by
                .map(|u| app.people.mention(u))
                .unwrap_or_default();
            vec![
                Outgoing::RemoveButtons {
                    slot: Slot::OrderMessage,
                },
                Outgoing::say(c.cancelled(order, &by)),
            ]
        }
        // Not messages: handled by `commit`.
        Effect::RunEngine | Effect::StopEngine | Effect::WriteDailyLog => Vec::new(),
    }
}

/// The order relayed to the Kasi, with a button per JFU to direct.
fn order_relayed(app: &App, order: &Order) -> Outgoing {
    let c = &app.catalog;
    let text = c.order_relayed(
        order,
        &app.people.mention(order.ordered_by),
        &app.mention_role(Role::Kasi),
    );
    let buttons = app
        .settings
        .roster
        .jfu
        .iter()
        .map(|jfu| Button {
            text: c.direct_button(
                &app.people
                    .get(*jfu)
                    .map(|p| p.first_name)
                    .unwrap_or_else(|| jfu.to_string()),
            ),
            data: crate::domain::direct_button_data(order.id, *jfu),
        })
        .collect();
    Outgoing::Say {
        html: text,
        quiet: false,
        buttons,
        remember: Some(Slot::OrderMessage),
        reply_to: None,
    }
}

/// Who did `step` of `order`, as a mention (empty when nobody has).
fn actor_of(app: &App, order: &Order, step: SopStep) -> String {
    order
        .step(step)
        .and_then(|s| s.actor)
        .map(|k| app.people.mention(k))
        .unwrap_or_default()
}

/// The report (or the failure report), and with a finished run everything per mailbox,
/// SHA-256 included, in one document.
fn report(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> Vec<Outgoing> {
    let c = &app.catalog;
    let mut out = vec![Outgoing::Say {
        html: report_text(app, order, outcome),
        quiet: false,
        buttons: Vec::new(),
        remember: Some(Slot::ReportMessage),
        reply_to: None,
    }];
    if let Some(RunOutcome::Completed(report)) = outcome {
        out.push(Outgoing::Document {
            file_name: c.mailboxes_csv_name(report),
            content: c.mailboxes_csv(report),
            caption: c.mailboxes_csv_caption(),
        });
    }
    out
}

/// The report to the Kasi (end of step 6), or the failure report.
pub fn report_text(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> String {
    let kept_verified = match outcome {
        Some(RunOutcome::Stopped(e)) => e
            .folders
            .as_ref()
            .is_some_and(|f| holds_verified_files(&f.local)),
        _ => false,
    };
    app.catalog.report(
        order,
        outcome,
        &app.mention_role(Role::Kasi),
        kept_verified,
        Utc::now(),
        &app.name_of(),
    )
}

/// Whether a local folder holds files verified by a run (its index lists at least one).
fn holds_verified_files(folder: &std::path::Path) -> bool {
    std::fs::metadata(folder.join(crate::engine::local::VERIFIED_INDEX)).is_ok_and(|m| m.len() > 0)
}

/// The one-line summary kept in the daily log.
pub fn summary_line(app: &App, order: &Order, outcome: Option<&RunOutcome>) -> String {
    app.catalog.summary(order, outcome, &app.name_of())
}
