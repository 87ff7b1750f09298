//! mailbox-backup-bot: a Telegram chat-ops bot that runs DJKI's mailbox-backup SOP, from the
//! Kasubdit's order to the entry in the daily activity log.
//!
//! - [`domain`]: the SOP, the roles and the order chain (no I/O).
//! - [`telegram`]: where each chat command is handled.
//! - [`procedure`]: the order chain, runs, restores and reminders, as the group carries them out.
//! - [`engine`]: where steps 3–6 run (dated folder, SSH, server backup, copy and verify).
//! - [`storage`]: where rows are written (PostgreSQL).
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cli;
pub mod config;
pub mod domain;
pub mod engine;
pub mod messages;
pub mod outbox;
pub mod preflight;
pub mod procedure;
pub mod run_outcome;
pub mod startup;
pub mod storage;
pub mod telegram;
