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

/// The command menu, in the configured language.
pub fn command_menu(lang: Lang) -> Vec<BotCommand> {
    let id = lang == Lang::Id;
    let t = |a: &str, b: &str| if id { a.to_owned() } else { b.to_owned() };
    vec![
        BotCommand::new(
            "order_backup",
            t(
                "Perintahkan backup mailbox (Kasubdit)",
                "Order a mailbox backup (Kasubdit)",
            ),
        ),
        BotCommand::new(
            "direct",
            t("Disposisikan ke JFU (Kasi)", "Direct a JFU (Kasi)"),
        ),
        BotCommand::new("start", t("Mulai backup (JFU)", "Start the backup (JFU)")),
        BotCommand::new(
            "receive",
            t("Terima laporan (Kasi)", "Receive the report (Kasi)"),
        ),
        BotCommand::new("status", t("Status perintah aktif", "The active order")),
        BotCommand::new(
            "cancel",
            t("Batalkan perintah aktif", "Cancel the active order"),
        ),
        BotCommand::new("log", t("Log kegiatan harian", "The daily activity log")),
        BotCommand::new("help", t("Bantuan", "Help")),
    ]
}

/// The whole update tree.
pub fn schema() -> UpdateHandler<anyhow::Error> {
    dptree::entry()
        .branch(Update::filter_message().endpoint(handlers::on_message))
        .branch(Update::filter_callback_query().endpoint(handlers::on_button))
}
