//! The order chain as a state machine: who may make which move, in which order, and the time each
//! SOP step took. Plain data in, plain data out; time is passed in.
//!
//! ```text
//! ordered ──direct──▶ directed ──start──▶ started ──reported──▶ reported ──receive──▶ received ──log──▶ logged
//!    │                   │  ▲ (re-direct)    │
//!    └──────cancel───────┴──┘                ├──failed──▶ failed
//!                                            └──cancel──▶ cancelled
//! ```
//!
//! Once the report is out (`reported`) the backup is verified and kept: `/cancel` is refused and
//! the order waits for the Kasi's `/receive`. Cancelling is for an order not yet done.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::roles::{Role, Roster, UserId};
use super::sop::SopStep;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderId(pub i64);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Ordered,
    Directed,
    Started,
    Reported,
    Received,
    Logged,
    Failed,
    Cancelled,
}

impl OrderStatus {
    pub const ACTIVE: [OrderStatus; 4] = [
        OrderStatus::Ordered,
        OrderStatus::Directed,
        OrderStatus::Started,
        OrderStatus::Reported,
    ];

    /// An active order blocks a new one (at most one at a time).
    pub fn is_active(self) -> bool {
        OrderStatus::ACTIVE.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Ordered => "ordered",
            OrderStatus::Directed => "directed",
            OrderStatus::Started => "started",
            OrderStatus::Reported => "reported",
            OrderStatus::Received => "received",
            OrderStatus::Logged => "logged",
            OrderStatus::Failed => "failed",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        [
            OrderStatus::Ordered,
            OrderStatus::Directed,
            OrderStatus::Started,
            OrderStatus::Reported,
            OrderStatus::Received,
            OrderStatus::Logged,
            OrderStatus::Failed,
            OrderStatus::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// How a step stands: open, or how it ended. Only [`StepOutcome::Done`] is a step that happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    /// Waiting for its actor, or being done now.
    Open,
    /// Done.
    Done,
    /// The run failed in this step (the order's reason says why).
    Failed,
    /// Under way when the order was cancelled: begun, never finished.
    Stopped,
    /// Waiting for its actor when the order ended: it never happened.
    NotDone,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Open => "open",
            StepOutcome::Done => "done",
            StepOutcome::Failed => "failed",
            StepOutcome::Stopped => "stopped",
            StepOutcome::NotDone => "not_done",
        }
    }

    pub fn parse(s: &str) -> Option<StepOutcome> {
        [
            StepOutcome::Open,
            StepOutcome::Done,
            StepOutcome::Failed,
            StepOutcome::Stopped,
            StepOutcome::NotDone,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One SOP step of one order: who, from when to when, and how it ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: SopStep,
    /// `None` for what the bot does on its own (step 8), or before the actor is known (step 7).
    pub actor: Option<UserId>,
    pub started_at: DateTime<Utc>,
    /// Set exactly when `outcome` is not [`StepOutcome::Open`].
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: StepOutcome,
}

impl StepRecord {
    /// A record read back from storage, which may predate the outcome column (`None`): an ended
    /// step of such a row was done, an open one is open.
    pub fn restore(
        step: SopStep,
        actor: Option<UserId>,
        started_at: DateTime<Utc>,
        ended_at: Option<DateTime<Utc>>,
        outcome: Option<StepOutcome>,
    ) -> StepRecord {
        let outcome = match (ended_at, outcome) {
            (None, _) => StepOutcome::Open,
            (Some(_), None | Some(StepOutcome::Open)) => StepOutcome::Done,
            (Some(_), Some(o)) => o,
        };
        StepRecord {
            step,
            actor,
            started_at,
            ended_at,
            outcome,
        }
    }

    pub fn is_open(&self) -> bool {
        self.outcome == StepOutcome::Open
    }

    /// The verdict against the standard time: only for a step that was done.
    pub fn verdict(&self) -> Option<bool> {
        (self.outcome == StepOutcome::Done).then(|| {
            self.step
                .within_standard(self.took(self.ended_at.unwrap_or(self.started_at)))
        })
    }

    /// How long the step took, or has taken so far.
    pub fn took(&self, now: DateTime<Utc>) -> TimeDelta {
        (self.ended_at.unwrap_or(now) - self.started_at).max(TimeDelta::zero())
    }

    pub fn within_standard(&self, now: DateTime<Utc>) -> bool {
        self.step.within_standard(self.took(now))
    }
}

/// An order and its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub id: OrderId,
    pub status: OrderStatus,
    pub note: Option<String>,
    pub ordered_by: UserId,
    /// The JFU it was directed to.
    pub jfu: Option<UserId>,
    pub created_at: DateTime<Utc>,
    /// One record per step reached, in step order.
    pub steps: Vec<StepRecord>,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Who cancelled it.
    pub closed_by: Option<UserId>,
}

/// A new order, before storage gives it an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub ordered_by: UserId,
    pub note: Option<String>,
    pub at: DateTime<Utc>,
}

/// What may happen to an order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The Kasi directs a JFU (step 2). Again, before `/start`, re-directs to another JFU.
    Direct { by: UserId, jfu: UserId },
    /// The directed JFU confirms; the machine steps begin.
    Start { by: UserId },
    /// The engine began a machine step (3–6).
    StepStarted { step: SopStep, at: DateTime<Utc> },
    /// The engine finished a machine step (3–6).
    StepFinished { step: SopStep, at: DateTime<Utc> },
    /// The engine finished and every mailbox is verified: the report goes to the Kasi.
    Reported,
    /// The engine could not finish: `step` failed (`None`: the step under way), for `reason`.
    Failed {
        step: Option<SopStep>,
        reason: String,
    },
    /// The Kasi acknowledges the report (step 7), which goes up to the Kasubdit.
    Receive { by: UserId },
    /// The bot records the report in the daily log (step 8).
    Log,
    /// The Kasubdit or the Kasi calls the order off.
    Cancel { by: UserId, reason: Option<String> },
}

/// What the outside world must do after a move. The adapters carry these out.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    RelayOrderToKasi,
    RelayDirectionToJfu(UserId),
    RunEngine,
    StopEngine,
    ReportToKasi,
    RelayReportToKasubdit,
    WriteDailyLog,
    AnnounceFailure,
    AnnounceCancel,
}

/// The moves, for naming them in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Order,
    Direct,
    Start,
    Progress,
    Report,
    Fail,
    Receive,
    Log,
    Cancel,
}

/// Why a move was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("only {needed:?} may do this")]
    WrongRole { needed: Vec<Role> },
    #[error("the order was directed to {directed}, not to this user")]
    NotTheDirectedJfu { directed: UserId },
    #[error("{user} is not a JFU")]
    NotAJfu { user: UserId },
    #[error("{action:?} is not possible while the order is {status:?}")]
    OutOfOrder { status: OrderStatus, action: Move },
    #[error("order {active} is still active")]
    AlreadyActive {
        active: OrderId,
        status: OrderStatus,
    },
}

fn require(roster: &Roster, user: UserId, roles: &[Role]) -> Result<(), Refusal> {
    if roles.iter().any(|r| roster.has(user, *r)) {
        Ok(())
    } else {
        Err(Refusal::WrongRole {
            needed: roles.to_vec(),
        })
    }
}

/// Step 1: the Kasubdit orders a backup. Refused while another order is active.
pub fn place_order(
    roster: &Roster,
    by: UserId,
    note: Option<String>,
    active: Option<&Order>,
    now: DateTime<Utc>,
) -> Result<(NewOrder, Vec<Effect>), Refusal> {
    require(roster, by, &[Role::Kasubdit])?;
    if let Some(active) = active.filter(|o| o.status.is_active()) {
        return Err(Refusal::AlreadyActive {
            active: active.id,
            status: active.status,
        });
    }
    Ok((
        NewOrder {
            ordered_by: by,
            note,
            at: now,
        },
        vec![Effect::RelayOrderToKasi],
    ))
}

impl Order {
    /// The order as it stands right after step 1: the order itself is instant, and step 2 (the
    /// Kasi's turn) starts at once.
    pub fn from_new(id: OrderId, new: NewOrder) -> Order {
        Order {
            id,
            status: OrderStatus::Ordered,
            note: new.note,
            ordered_by: new.ordered_by,
            jfu: None,
            created_at: new.at,
            steps: vec![
                StepRecord {
                    step: SopStep::Order,
                    actor: Some(new.ordered_by),
                    started_at: new.at,
                    ended_at: Some(new.at),
                    outcome: StepOutcome::Done,
                },
                StepRecord {
                    step: SopStep::Direct,
                    actor: None,
                    started_at: new.at,
                    ended_at: None,
                    outcome: StepOutcome::Open,
                },
            ],
            reason: None,
            closed_by: None,
        }
    }

    pub fn step(&self, step: SopStep) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.step == step)
    }

    fn step_mut(&mut self, step: SopStep) -> Option<&mut StepRecord> {
        self.steps.iter_mut().find(|s| s.step == step)
    }

    /// Opens `step` at `at` (if not open yet) with `actor`.
    fn open(&mut self, step: SopStep, actor: Option<UserId>, at: DateTime<Utc>) {
        match self.step_mut(step) {
            Some(rec) => {
                if rec.actor.is_none() {
                    rec.actor = actor;
                }
            }
            None => {
                self.steps.push(StepRecord {
                    step,
                    actor,
                    started_at: at,
                    ended_at: None,
                    outcome: StepOutcome::Open,
                });
                self.steps.sort_by_key(|s| s.step);
            }
        }
    }

    /// Closes `step` at `at` as done, opening it first if needed; `actor` fills in an unknown actor.
    fn close(&mut self, step: SopStep, actor: Option<UserId>, at: DateTime<Utc>) {
        self.open(step, actor, at);
        if let Some(rec) = self.step_mut(step) {
            if rec.is_open() {
                rec.ended_at = Some(at.max(rec.started_at));
                rec.outcome = StepOutcome::Done;
            }
            if actor.is_some() {
                rec.actor = actor;
            }
        }
    }

    /// Ends every open step at `at` with `outcome` (a step that ends the order early).
    fn end_open_steps(&mut self, at: DateTime<Utc>, outcome: impl Fn(&StepRecord) -> StepOutcome) {
        for rec in self.steps.iter_mut().filter(|s| s.is_open()) {
            rec.ended_at = Some(at.max(rec.started_at));
            rec.outcome = outcome(rec);
        }
    }

    /// The step in progress: the first one not yet closed.
    pub fn current_step(&self) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.is_open())
    }

    /// Time since the order, and the standard time of the steps reached so far.
    pub fn elapsed(&self, now: DateTime<Utc>) -> TimeDelta {
        let end = self
            .steps
            .iter()
            .filter_map(|s| s.ended_at)
            .max()
            .filter(|_| !self.status.is_active())
            .unwrap_or(now);
        (end - self.created_at).max(TimeDelta::zero())
    }

    /// Applies `event` at `now`. On success returns the new order and what must happen outside.
    pub fn apply(
        &self,
        roster: &Roster,
        event: Event,
        now: DateTime<Utc>,
    ) -> Result<(Order, Vec<Effect>), Refusal> {
        use OrderStatus as S;
        let mut next = self.clone();
        let out_of_order = |action| Refusal::OutOfOrder {
            status: self.status,
            action,
        };
        let effects = match event {
            Event::Direct { by, jfu } => {
                require(roster, by, &[Role::Kasi])?;
                if !roster.has(jfu, Role::Jfu) {
                    return Err(Refusal::NotAJfu { user: jfu });
                }
                if !matches!(self.status, S::Ordered | S::Directed) {
                    return Err(out_of_order(Move::Direct));
                }
                // A re-direction restarts the JFU's step with the new JFU.
                next.steps.retain(|s| s.step <= SopStep::Direct);
                if let Some(rec) = next.step_mut(SopStep::Direct) {
                    rec.ended_at = None;
                    rec.outcome = StepOutcome::Open;
                }
                next.close(SopStep::Direct, Some(by), now);
                next.open(SopStep::CreateFolder, Some(jfu), now);
                next.jfu = Some(jfu);
                next.status = S::Directed;
                vec![Effect::RelayDirectionToJfu(jfu)]
            }
            Event::Start { by } => {
                require(roster, by, &[Role::Jfu])?;
                if self.status != S::Directed {
                    return Err(out_of_order(Move::Start));
                }
                match self.jfu {
                    Some(jfu) if jfu != by => {
                        return Err(Refusal::NotTheDirectedJfu { directed: jfu })
                    }
                    _ => {}
                }
                next.status = S::Started;
                vec![Effect::RunEngine]
            }
            Event::StepStarted { step, at } => {
                if self.status != S::Started || !SopStep::MACHINE.contains(&step) {
                    return Err(out_of_order(Move::Progress));
                }
                next.open(step, self.jfu, at);
                vec![]
            }
            Event::StepFinished { step, at } => {
                if self.status != S::Started || !SopStep::MACHINE.contains(&step) {
                    return Err(out_of_order(Move::Progress));
                }
                next.close(step, self.jfu, at);
                vec![]
            }
            Event::Reported => {
                if self.status != S::Started {
                    return Err(out_of_order(Move::Report));
                }
                for step in SopStep::MACHINE {
                    next.close(step, self.jfu, now);
                }
                next.open(SopStep::Receive, None, now);
                next.status = S::Reported;
                vec![Effect::ReportToKasi]
            }
            Event::Failed { step, reason } => {
                if self.status != S::Started {
                    return Err(out_of_order(Move::Fail));
                }
                let failed = step
                    .filter(|s| SopStep::MACHINE.contains(s))
                    .or_else(|| self.current_step().map(|s| s.step))
                    .unwrap_or(SopStep::CreateFolder);
                // The failed step is failed even when the engine had finished it (a mailbox
                // that failed in a finished copy); every other open step never happened.
                next.open(failed, self.jfu, now);
                if let Some(rec) = next.step_mut(failed) {
                    rec.ended_at = Some(rec.ended_at.unwrap_or(now).max(rec.started_at));
                    rec.outcome = StepOutcome::Failed;
                }
                next.end_open_steps(now, |_| StepOutcome::NotDone);
                next.status = S::Failed;
                next.reason = Some(reason);
                vec![Effect::AnnounceFailure, Effect::WriteDailyLog]
            }
            Event::Receive { by } => {
                require(roster, by, &[Role::Kasi])?;
                if self.status != S::Reported {
                    return Err(out_of_order(Move::Receive));
                }
                next.close(SopStep::Receive, Some(by), now);
                next.status = S::Received;
                vec![Effect::RelayReportToKasubdit]
            }
            Event::Log => {
                if self.status != S::Received {
                    return Err(out_of_order(Move::Log));
                }
                next.close(SopStep::DailyLog, None, now);
                next.status = S::Logged;
                vec![Effect::WriteDailyLog]
            }
            Event::Cancel { by, reason } => {
                require(roster, by, &[Role::Kasubdit, Role::Kasi])?;
                // A verified backup is not thrown away: after the report only /receive is left.
                if !self.status.is_active() || self.status == S::Reported {
                    return Err(out_of_order(Move::Cancel));
                }
                // A machine step under way is stopped; a step waiting for its actor never happened.
                let running = self.status == S::Started;
                next.end_open_steps(now, |rec| {
                    if running && SopStep::MACHINE.contains(&rec.step) {
                        StepOutcome::Stopped
                    } else {
                        StepOutcome::NotDone
                    }
                });
                next.status = S::Cancelled;
                next.reason = reason;
                next.closed_by = Some(by);
                let mut effects = vec![Effect::AnnounceCancel, Effect::WriteDailyLog];
                if self.status == S::Started {
                    effects.insert(0, Effect::StopEngine);
                }
                effects
            }
        };
        Ok((next, effects))
    }
}

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
    use chrono::TimeZone;

    const KASUBDIT: UserId = UserId(10);
    const KASI: UserId = UserId(20);
    const JFU: UserId = UserId(30);
    const OTHER_JFU: UserId = UserId(31);
    const STRANGER: UserId = UserId(99);

    fn roster() -> Roster {
        Roster {
            kasubdit: [KASUBDIT].into(),
            kasi: [KASI].into(),
            jfu: [JFU, OTHER_JFU].into(),
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 1, 0, 0)
            .single()
            .expect("valid time")
    }

    fn mins(m: i64) -> DateTime<Utc> {
        t0() + TimeDelta::minutes(m)
    }

    fn ordered() -> Order {
        let (new, effects) = place_order(&roster(), KASUBDIT, Some("monthly".into()), None, t0())
            .expect("kasubdit orders");
        assert_eq!(effects, vec![Effect::RelayOrderToKasi]);
        Order::from_new(OrderId(1), new)
    }

    fn step(order: &Order, event: Event, at: DateTime<Utc>) -> Order {
        order.apply(&roster(), event, at).expect("allowed").0
    }

    fn directed() -> Order {
        step(&ordered(), Event::Direct { by: KASI, jfu: JFU }, mins(3))
    }

    fn started() -> Order {
        step(&directed(), Event::Start { by: JFU }, mins(5))
    }

    fn reported() -> Order {
        step(&started(), Event::Reported, mins(60))
    }

    fn all_events() -> Vec<Event> {
        vec![
            Event::Direct { by: KASI, jfu: JFU },
            Event::Start { by: JFU },
            Event::StepStarted {
                step: SopStep::RemoteLogin,
                at: mins(1),
            },
            Event::StepFinished {
                step: SopStep::RemoteLogin,
                at: mins(1),
            },
            Event::Reported,
            Event::Failed {
                step: None,
                reason: "x".into(),
            },
            Event::Receive { by: KASI },
            Event::Log,
            Event::Cancel {
                by: KASI,
                reason: None,
            },
        ]
    }

    #[test]
    fn the_whole_chain_runs_in_order_and_records_every_step() {
        let o = reported();
        let (o, effects) = o
            .apply(&roster(), Event::Receive { by: KASI }, mins(62))
            .expect("kasi receives");
        assert_eq!(effects, vec![Effect::RelayReportToKasubdit]);
        let (o, effects) = o.apply(&roster(), Event::Log, mins(62)).expect("bot logs");
        assert_eq!(effects, vec![Effect::WriteDailyLog]);
        assert_eq!(o.status, OrderStatus::Logged);
        let steps: Vec<u8> = o.steps.iter().map(|s| s.step.number()).collect();
        assert_eq!(steps, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(o.steps.iter().all(|s| s.ended_at.is_some()));
        assert!(o.steps.iter().all(|s| s.outcome == StepOutcome::Done));
        assert_eq!(
            o.step(SopStep::Order).map(|s| s.actor),
            Some(Some(KASUBDIT))
        );
        assert_eq!(
            o.step(SopStep::Direct).map(|s| (s.actor, s.took(mins(99)))),
            Some((Some(KASI), TimeDelta::minutes(3)))
        );
        assert_eq!(
            o.step(SopStep::CreateFolder).and_then(|s| s.actor),
            Some(JFU)
        );
        assert_eq!(
            o.step(SopStep::Receive)
                .map(|s| (s.actor, s.took(mins(99)))),
            Some((Some(KASI), TimeDelta::minutes(2)))
        );
        assert_eq!(o.step(SopStep::DailyLog).and_then(|s| s.actor), None);
        assert_eq!(o.elapsed(mins(500)), TimeDelta::minutes(62));
    }

    #[test]
    fn only_a_kasubdit_may_order() {
        for who in [KASI, JFU, STRANGER] {
            assert_eq!(
                place_order(&roster(), who, None, None, t0()).map(|_| ()),
                Err(Refusal::WrongRole {
                    needed: vec![Role::Kasubdit]
                })
            );
        }
    }

    #[test]
    fn a_second_order_is_refused_while_one_is_active_and_allowed_after_it_ends() {
        for active in [ordered(), directed(), started(), reported()] {
            let refused = place_order(&roster(), KASUBDIT, None, Some(&active), t0());
            assert_eq!(
                refused.map(|_| ()),
                Err(Refusal::AlreadyActive {
                    active: OrderId(1),
                    status: active.status
                })
            );
        }
        let failed = step(
            &started(),
            Event::Failed {
                step: None,
                reason: "ssh".into(),
            },
            mins(9),
        );
        assert!(place_order(&roster(), KASUBDIT, None, Some(&failed), t0()).is_ok());
    }

    #[test]
    fn only_a_kasi_may_direct_and_only_to_a_jfu() {
        for who in [KASUBDIT, JFU, STRANGER] {
            assert_eq!(
                ordered()
                    .apply(&roster(), Event::Direct { by: who, jfu: JFU }, mins(1))
                    .map(|_| ()),
                Err(Refusal::WrongRole {
                    needed: vec![Role::Kasi]
                })
            );
        }
        assert_eq!(
            ordered()
                .apply(
                    &roster(),
                    Event::Direct {
                        by: KASI,
                        jfu: STRANGER
                    },
                    mins(1)
                )
                .map(|_| ()),
            Err(Refusal::NotAJfu { user: STRANGER })
        );
    }

    #[test]
    fn a_kasi_may_redirect_before_the_start_and_the_jfu_step_restarts() {
        let o = step(
            &directed(),
            Event::Direct {
                by: KASI,
                jfu: OTHER_JFU,
            },
            mins(8),
        );
        assert_eq!(o.jfu, Some(OTHER_JFU));
        assert_eq!(
            o.step(SopStep::CreateFolder)
                .map(|s| (s.actor, s.started_at)),
            Some((Some(OTHER_JFU), mins(8)))
        );
        assert_eq!(
            o.apply(&roster(), Event::Start { by: JFU }, mins(9))
                .map(|_| ()),
            Err(Refusal::NotTheDirectedJfu {
                directed: OTHER_JFU
            })
        );
        assert_eq!(
            started()
                .apply(
                    &roster(),
                    Event::Direct {
                        by: KASI,
                        jfu: OTHER_JFU
                    },
                    mins(9)
                )
                .map(|_| ()),
            Err(Refusal::OutOfOrder {
                status: OrderStatus::Started,
                action: Move::Direct
            })
        );
    }

    #[test]
    fn only_the_directed_jfu_may_start() {
        let o = directed();
        assert_eq!(
            o.apply(&roster(), Event::Start { by: OTHER_JFU }, mins(4))
                .map(|_| ()),
            Err(Refusal::NotTheDirectedJfu { directed: JFU })
        );
        for who in [KASUBDIT, KASI, STRANGER] {
            assert_eq!(
                o.apply(&roster(), Event::Start { by: who }, mins(4))
                    .map(|_| ()),
                Err(Refusal::WrongRole {
                    needed: vec![Role::Jfu]
                })
            );
        }
        let (o, effects) = o
            .apply(&roster(), Event::Start { by: JFU }, mins(4))
            .expect("jfu starts");
        assert_eq!(effects, vec![Effect::RunEngine]);
        assert_eq!(o.status, OrderStatus::Started);
    }

    #[test]
    fn starting_twice_is_refused() {
        assert_eq!(
            started()
                .apply(&roster(), Event::Start { by: JFU }, mins(6))
                .map(|_| ()),
            Err(Refusal::OutOfOrder {
                status: OrderStatus::Started,
                action: Move::Start
            })
        );
    }

    #[test]
    fn only_a_kasi_may_receive_and_only_after_the_report() {
        for who in [KASUBDIT, JFU, STRANGER] {
            assert_eq!(
                reported()
                    .apply(&roster(), Event::Receive { by: who }, mins(61))
                    .map(|_| ()),
                Err(Refusal::WrongRole {
                    needed: vec![Role::Kasi]
                })
            );
        }
        for early in [ordered(), directed(), started()] {
            let status = early.status;
            assert_eq!(
                early
                    .apply(&roster(), Event::Receive { by: KASI }, mins(61))
                    .map(|_| ()),
                Err(Refusal::OutOfOrder {
                    status,
                    action: Move::Receive
                })
            );
        }
    }

    #[test]
    fn every_move_out_of_order_is_refused() {
        // (state, events allowed in it); every other event must be refused.
        let cases: Vec<(Order, Vec<&str>)> = vec![
            (ordered(), vec!["Direct", "Cancel"]),
            (directed(), vec!["Direct", "Start", "Cancel"]),
            (
                started(),
                vec![
                    "StepStarted",
                    "StepFinished",
                    "Reported",
                    "Failed",
                    "Cancel",
                ],
            ),
            (reported(), vec!["Receive"]),
            (
                step(&reported(), Event::Receive { by: KASI }, mins(61)),
                vec!["Log"],
            ),
        ];
        for (order, allowed) in cases {
            for event in all_events() {
                let name = format!("{event:?}");
                let name = name.split([' ', '{']).next().unwrap_or_default();
                let result = order.apply(&roster(), event.clone(), mins(70));
                assert_eq!(
                    result.is_ok(),
                    allowed.contains(&name),
                    "{name} in {:?}",
                    order.status
                );
            }
        }
        for ended in [
            step(
                &started(),
                Event::Failed {
                    step: None,
                    reason: "x".into(),
                },
                mins(9),
            ),
            step(
                &started(),
                Event::Cancel {
                    by: KASI,
                    reason: None,
                },
                mins(9),
            ),
        ] {
            for event in all_events() {
                assert!(ended.apply(&roster(), event, mins(70)).is_err());
            }
        }
    }

    #[test]
    fn kasubdit_and_kasi_may_cancel_but_not_a_jfu_and_a_running_backup_is_stopped() {
        assert_eq!(
            ordered()
                .apply(
                    &roster(),
                    Event::Cancel {
                        by: JFU,
                        reason: None
                    },
                    mins(1)
                )
                .map(|_| ()),
            Err(Refusal::WrongRole {
                needed: vec![Role::Kasubdit, Role::Kasi]
            })
        );
        let (o, effects) = ordered()
            .apply(
                &roster(),
                Event::Cancel {
                    by: KASUBDIT,
                    reason: Some("salah".into()),
                },
                mins(1),
            )
            .expect("cancel");
        assert_eq!(effects, vec![Effect::AnnounceCancel, Effect::WriteDailyLog]);
        assert_eq!(
            (o.status, o.reason.as_deref(), o.closed_by),
            (OrderStatus::Cancelled, Some("salah"), Some(KASUBDIT))
        );
        let (_, effects) = started()
            .apply(
                &roster(),
                Event::Cancel {
                    by: KASI,
                    reason: None,
                },
                mins(9),
            )
            .expect("cancel");
        assert_eq!(effects[0], Effect::StopEngine);
    }

    #[test]
    fn a_reported_backup_cannot_be_cancelled_and_still_waits_for_the_kasi() {
        let order = reported();
        for by in [KASI, KASUBDIT] {
            assert_eq!(
                order.apply(
                    &roster(),
                    Event::Cancel {
                        by,
                        reason: Some("terlambat".into())
                    },
                    mins(61)
                ),
                Err(Refusal::OutOfOrder {
                    status: OrderStatus::Reported,
                    action: Move::Cancel
                })
            );
        }
        let (received, _) = order
            .apply(&roster(), Event::Receive { by: KASI }, mins(62))
            .expect("the Kasi still receives it");
        assert_eq!(received.status, OrderStatus::Received);
    }

    fn outcomes(o: &Order) -> Vec<(u8, StepOutcome)> {
        o.steps
            .iter()
            .map(|s| (s.step.number(), s.outcome))
            .collect()
    }

    /// Started, step 3 done at minute 6, step 4 under way since minute 6.
    fn logging_in() -> Order {
        let o = step(
            &started(),
            Event::StepFinished {
                step: SopStep::CreateFolder,
                at: mins(6),
            },
            mins(6),
        );
        step(
            &o,
            Event::StepStarted {
                step: SopStep::RemoteLogin,
                at: mins(6),
            },
            mins(6),
        )
    }

    #[test]
    fn a_failure_marks_its_step_failed_and_keeps_the_reason() {
        let (o, effects) = logging_in()
            .apply(
                &roster(),
                Event::Failed {
                    step: Some(SopStep::RemoteLogin),
                    reason: "host key changed".into(),
                },
                mins(7),
            )
            .expect("fail");
        assert_eq!(
            effects,
            vec![Effect::AnnounceFailure, Effect::WriteDailyLog]
        );
        assert_eq!(o.reason.as_deref(), Some("host key changed"));
        use StepOutcome::{Done, Failed};
        assert_eq!(
            outcomes(&o),
            vec![(1, Done), (2, Done), (3, Done), (4, Failed)],
            "steps 5-8 were never reached and are not recorded"
        );
        let login = o.step(SopStep::RemoteLogin).expect("step 4");
        assert_eq!(
            (login.ended_at, login.verdict()),
            (Some(mins(7)), None),
            "a failed step gets no verdict"
        );
        assert_eq!(o.current_step(), None);
    }

    #[test]
    fn a_failure_without_a_step_fails_the_step_under_way() {
        let o = step(
            &logging_in(),
            Event::Failed {
                step: None,
                reason: "restart".into(),
            },
            mins(8),
        );
        assert_eq!(
            o.step(SopStep::RemoteLogin).map(|s| s.outcome),
            Some(StepOutcome::Failed)
        );
    }

    #[test]
    fn a_failure_found_after_a_finished_step_fails_that_step() {
        // A mailbox that could not be copied: step 6 ended, but it did not succeed.
        let mut o = logging_in();
        for (s, at) in [
            (SopStep::RemoteLogin, 7),
            (SopStep::ServerBackup, 8),
            (SopStep::CopyAndReport, 9),
        ] {
            if s != SopStep::RemoteLogin {
                o = step(
                    &o,
                    Event::StepStarted {
                        step: s,
                        at: mins(at - 1),
                    },
                    mins(at - 1),
                );
            }
            o = step(
                &o,
                Event::StepFinished {
                    step: s,
                    at: mins(at),
                },
                mins(at),
            );
        }
        let o = step(
            &o,
            Event::Failed {
                step: Some(SopStep::CopyAndReport),
                reason: "1 of 3 mailboxes failed".into(),
            },
            mins(10),
        );
        let copy = o.step(SopStep::CopyAndReport).expect("step 6");
        assert_eq!(
            (copy.outcome, copy.ended_at),
            (StepOutcome::Failed, Some(mins(9)))
        );
        assert_eq!(
            o.step(SopStep::ServerBackup).map(|s| s.outcome),
            Some(StepOutcome::Done)
        );
    }

    #[test]
    fn a_cancelled_order_shows_no_direction_that_nobody_gave() {
        let o = step(
            &ordered(),
            Event::Cancel {
                by: KASUBDIT,
                reason: None,
            },
            mins(2),
        );
        let direct = o.step(SopStep::Direct).expect("step 2 was waiting");
        assert_eq!(
            (direct.outcome, direct.actor, direct.verdict()),
            (StepOutcome::NotDone, None, None)
        );
        assert_eq!(outcomes(&o)[0], (1, StepOutcome::Done));
    }

    #[test]
    fn cancelling_a_directed_order_leaves_step_3_not_done_and_a_running_one_stopped() {
        let o = step(
            &directed(),
            Event::Cancel {
                by: KASI,
                reason: None,
            },
            mins(4),
        );
        use StepOutcome::{Done, NotDone, Stopped};
        assert_eq!(outcomes(&o), vec![(1, Done), (2, Done), (3, NotDone)]);
        let o = step(
            &logging_in(),
            Event::Cancel {
                by: KASI,
                reason: None,
            },
            mins(8),
        );
        assert_eq!(
            outcomes(&o),
            vec![(1, Done), (2, Done), (3, Done), (4, Stopped)]
        );
        // A reported order cannot be cancelled at all: see
        // a_reported_backup_cannot_be_cancelled_and_still_waits_for_the_kasi.
    }

    #[test]
    fn an_open_step_has_no_verdict_and_a_done_one_is_judged_on_its_own_times() {
        let o = ordered();
        assert_eq!(o.step(SopStep::Direct).map(|s| s.verdict()), Some(None));
        let o = directed();
        assert_eq!(
            o.step(SopStep::Direct).map(|s| s.verdict()),
            Some(Some(true))
        );
        let late = step(&ordered(), Event::Direct { by: KASI, jfu: JFU }, mins(6));
        assert_eq!(
            late.step(SopStep::Direct).map(|s| s.verdict()),
            Some(Some(false))
        );
    }

    #[test]
    fn a_redirection_reopens_step_2_and_closes_it_again_as_done() {
        let o = step(
            &directed(),
            Event::Direct {
                by: KASI,
                jfu: OTHER_JFU,
            },
            mins(4),
        );
        assert_eq!(
            o.step(SopStep::Direct).map(|s| (s.outcome, s.ended_at)),
            Some((StepOutcome::Done, Some(mins(4))))
        );
        assert_eq!(
            o.step(SopStep::CreateFolder).map(|s| (s.outcome, s.actor)),
            Some((StepOutcome::Open, Some(OTHER_JFU)))
        );
    }

    #[test]
    fn stored_rows_without_an_outcome_read_as_done_or_open() {
        let r = StepRecord::restore(SopStep::Order, None, t0(), Some(t0()), None);
        assert_eq!(r.outcome, StepOutcome::Done);
        let r = StepRecord::restore(SopStep::Direct, None, t0(), None, Some(StepOutcome::Failed));
        assert_eq!(r.outcome, StepOutcome::Open);
        for o in [
            StepOutcome::Open,
            StepOutcome::Done,
            StepOutcome::Failed,
            StepOutcome::Stopped,
            StepOutcome::NotDone,
        ] {
            assert_eq!(StepOutcome::parse(o.as_str()), Some(o));
        }
    }

    #[test]
    fn machine_steps_are_timed_by_the_engine_and_judged_against_the_standard() {
        let mut o = started();
        let marks = [
            (SopStep::CreateFolder, None, mins(15)),
            (SopStep::RemoteLogin, Some(mins(15)), mins(25)),
            (SopStep::ServerBackup, Some(mins(25)), mins(25 + 120)),
            (SopStep::CopyAndReport, Some(mins(145)), mins(145 + 121)),
        ];
        for (s, start, end) in marks {
            if let Some(start) = start {
                o = step(&o, Event::StepStarted { step: s, at: start }, start);
            }
            o = step(&o, Event::StepFinished { step: s, at: end }, end);
        }
        let now = mins(300);
        // Step 3 ran from the direction (minute 3) to minute 15: 12 minutes, over its 10.
        assert_eq!(
            o.step(SopStep::CreateFolder).map(|s| s.took(now)),
            Some(TimeDelta::minutes(12))
        );
        assert_eq!(
            o.step(SopStep::CreateFolder)
                .map(|s| s.within_standard(now)),
            Some(false)
        );
        assert_eq!(
            o.step(SopStep::RemoteLogin).map(|s| s.within_standard(now)),
            Some(true)
        );
        assert_eq!(
            o.step(SopStep::ServerBackup)
                .map(|s| s.within_standard(now)),
            Some(true)
        );
        assert_eq!(
            o.step(SopStep::CopyAndReport)
                .map(|s| s.within_standard(now)),
            Some(false)
        );
        assert_eq!(o.current_step(), None);
    }

    #[test]
    fn the_current_step_is_the_first_open_one() {
        assert_eq!(
            ordered().current_step().map(|s| s.step),
            Some(SopStep::Direct)
        );
        assert_eq!(
            started().current_step().map(|s| s.step),
            Some(SopStep::CreateFolder)
        );
        assert_eq!(
            reported().current_step().map(|s| s.step),
            Some(SopStep::Receive)
        );
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in [
            OrderStatus::Ordered,
            OrderStatus::Logged,
            OrderStatus::Cancelled,
            OrderStatus::Failed,
        ] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderStatus::parse("running"), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn user() -> impl Strategy<Value = UserId> {
            prop_oneof![
                Just(KASUBDIT),
                Just(KASI),
                Just(JFU),
                Just(OTHER_JFU),
                Just(STRANGER)
            ]
        }

        fn event() -> impl Strategy<Value = Event> {
            let step = prop_oneof![
                Just(SopStep::Order),
                Just(SopStep::CreateFolder),
                Just(SopStep::RemoteLogin),
                Just(SopStep::ServerBackup),
                Just(SopStep::CopyAndReport),
                Just(SopStep::Receive),
                Just(SopStep::DailyLog),
            ];
            prop_oneof![
                (user(), user()).prop_map(|(by, jfu)| Event::Direct { by, jfu }),
                user().prop_map(|by| Event::Start { by }),
                (step.clone(), 0i64..200)
                    .prop_map(|(step, m)| Event::StepStarted { step, at: mins(m) }),
                (step, 0i64..200).prop_map(|(step, m)| Event::StepFinished { step, at: mins(m) }),
                Just(Event::Reported),
                ".{0,20}".prop_map(|reason| Event::Failed { step: None, reason }),
                user().prop_map(|by| Event::Receive { by }),
                Just(Event::Log),
                (user(), proptest::option::of(".{0,20}"))
                    .prop_map(|(by, reason)| Event::Cancel { by, reason }),
            ]
        }

        proptest! {
            /// Any sequence of moves by anyone: a refusal leaves the order exactly as it was, a
            /// reported order is never cancelled, and a closed order never moves again.
            #[test]
            fn a_refusal_never_changes_the_order(events in proptest::collection::vec((event(), 0i64..300), 0..40)) {
                let mut order = ordered();
                for (event, at) in events {
                    let before = order.clone();
                    match order.apply(&roster(), event.clone(), mins(at)) {
                        Ok((next, _)) => {
                            // Step 8 follows a received order; nothing else moves a closed one.
                            let logging = before.status == OrderStatus::Received && event == Event::Log;
                            prop_assert!(before.status.is_active() || logging, "{:?} moved a closed order", event);
                            prop_assert!(
                                !(before.status == OrderStatus::Reported && next.status == OrderStatus::Cancelled),
                                "a reported backup was cancelled"
                            );
                            order = next;
                        }
                        Err(_) => prop_assert_eq!(&order, &before),
                    }
                }
            }

            /// Any note: no panic; a kept note is within the limit and free of control characters.
            #[test]
            fn any_note_is_kept_whole_or_refused(text in any::<String>()) {
                if let Ok(Some(note)) = crate::domain::parse_note(&text) {
                    prop_assert!(note.chars().count() <= crate::domain::NOTE_MAX_CHARS);
                    prop_assert!(!note.contains('\0'));
                    prop_assert_eq!(note.as_str(), text.trim());
                }
            }
        }
    }
}
