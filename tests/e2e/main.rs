//! End-to-end tests on real parts: PostgreSQL (a fresh database per test), the bot's real HTTP
//! client talking to the project's Bot API server on 127.0.0.1. Run through `scripts/test`, which
//! starts the shared services and exports their addresses.

mod chain;
mod disaster;
mod drill;
mod encryption;
mod engine;
mod hostile;
mod imap;
mod incremental;
mod input;
mod namespaces;
mod outages;
mod procedure;
mod records;
mod restore_chat;
mod retry;
mod safety;
mod scale;
mod startup;
mod support;
mod wild_mail;
mod zimbra;
