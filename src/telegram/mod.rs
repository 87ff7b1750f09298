//! The Telegram adapter: the update tree ([`schema`]), the commands, and sending to the group.
//! Handlers only translate an update into a call of [`crate::chain`].

pub mod chat;
pub mod handlers;

use teloxide::dispatching::UpdateHandler;
use teloxide::prelude::*;
use teloxide::types::BotCommand;
use teloxide::utils::command::BotCommands;

use crate::messages::Lang;

/// The bot's commands. Each takes the rest of the line; the handler checks it.
#[derive(BotCommands, Clone, Debug, PartialEq)]
#[command(rename_rule = "snake_case")]
pub enum Command {
    /// Order a mailbox backup (Kasubdit).
    OrderBackup(String),
    /// Direct a JFU (Kasi).
    Direct(String),
    /// Start the backup (the directed JFU).
    Start(String),
    /// Receive the report (Kasi).
    Receive(String),
    /// The active order.
    Status(String),
    /// Cancel the active order (Kasubdit or Kasi).
    Cancel(String),
    /// The daily activity log.
    Log(String),
    /// The commands you may use.
    Help(String),
}

/// The command menu, in the configured language (its words come from the catalogue).
pub fn command_menu(lang: Lang) -> Vec<BotCommand> {
    crate::messages::command_menu(lang)
        .into_iter()
        .map(|(command, description)| BotCommand::new(command, description))
        .collect()
}

/// The whole update tree.
pub fn schema() -> UpdateHandler<anyhow::Error> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(handlers::on_message))
        .branch(Update::filter_callback_query().endpoint(handlers::on_button))
}
