//! The procedure: the SOP carried out with the people in the group. A command becomes a move of
//! the order chain (`chain`, `moves`), a run is started and its steps recorded (`backup_run`),
//! a restore is asked and decided (`restores`), a restore drilled (`drills`), the Kasubdit
//! reminded (`reminders`), names kept
//! (`people`). `app` is the shared context. Built on the domain and the services; speaks to the
//! group only through the outbox and [`app::GroupPort`], never the Telegram client.

pub mod app;
pub mod backup_run;
pub mod chain;
pub mod drills;
pub mod moves;
pub mod people;
pub mod reminders;
pub mod restores;
