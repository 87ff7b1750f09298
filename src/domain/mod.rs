//! The procedure itself, with no I/O: the SOP's steps and standard times, the roles, and the order
//! chain as a state machine. Everything else in the crate is an adapter around this.

pub mod drill;
pub mod flood;
pub mod lang;
pub mod log_date;
pub mod note;
pub mod order;
pub mod reminder;
pub mod restore_request;
pub mod roles;
pub mod sop;
pub mod turns;

pub use drill::{choose_mailbox, drill_due, DrillCandidate, DrillFacts};
pub use lang::Lang;
pub use log_date::{
    parse_log_date, parse_log_period, parse_month, BadLogDate, BadMonth, LogPeriod, Month,
};
pub use note::{parse_note, BadNote, NOTE_MAX_CHARS};
pub use order::{
    direct_button_data, parse_direct_button, place_order, Effect, Event, Move, NewOrder, Order,
    OrderId, OrderStatus, Refusal, StepOutcome, StepRecord,
};
pub use reminder::{reminder_due, ReminderFacts};
pub use restore_request::{
    can_be_decided, decide, is_withdrawal, parse_restore_all, parse_restore_args,
    parse_restore_button, restore_button_data, withdraw, DecisionRefused, RestoreStatus,
    EVERY_ACCOUNT,
};
pub use roles::{Role, Roster, UserId};
pub use sop::SopStep;
