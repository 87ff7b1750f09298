//! The Telegram adapter: the update tree ([`schema`]), the commands, and sending to the group.
//! Handlers only translate an update into a call of [`crate::procedure::chain`].

pub mod chat;
pub mod delivery;
pub mod handlers;
pub mod queues;
pub mod service;
pub mod turns;

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
    /// The month's activity as a CSV document.
    Export(String),
    /// Your Telegram id, this chat's id and your roles.
    Id(String),
    /// Check the settings, the disk, the database, the mail server and the group.
    Check(String),
    /// Ask to restore a mailbox from a backup (Kasi; a Kasubdit approves).
    Restore(String),
    /// A restore drill now (Kasubdit or Kasi).
    Drill(String),
    /// The commands you may use.
    Help(String),
}

/// What a message starting with `/` is, for this bot.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Command(Command),
    /// `/cmd@other_bot`, or a malformed suffix (`/cmd@`, `/cmd@this_bot@x`): not for this bot,
    /// ignored without a word.
    NotForThisBot,
    /// No command of ours by that name.
    Unknown,
}

/// Parses `/name[@bot] [arguments]`. The name ends at the first whitespace (a note may start on
/// the next line); an `@` suffix must be exactly this bot's username (any case).
pub fn parse_command(text: &str, bot_name: &str) -> Parsed {
    let Some(body) = text.strip_prefix('/') else {
        return Parsed::Unknown;
    };
    let (head, rest) = match body.find(char::is_whitespace) {
        Some(i) => {
            let ws = body[i..].chars().next().map_or(1, char::len_utf8);
            (&body[..i], &body[i + ws..])
        }
        None => (body, ""),
    };
    let name = match head.split_once('@') {
        None => head,
        Some((name, addressee)) => {
            if addressee.is_empty()
                || addressee.contains('@')
                || !addressee.eq_ignore_ascii_case(bot_name)
            {
                return Parsed::NotForThisBot;
            }
            name
        }
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Parsed::Unknown;
    }
    match Command::parse(&format!("/{name} {rest}"), bot_name) {
        Ok(c) => Parsed::Command(c),
        Err(_) => Parsed::Unknown,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: &str = "DjkiBackupBot";

    #[test]
    fn commands_for_this_bot_parse_with_their_arguments() {
        assert_eq!(
            parse_command("/start", BOT),
            Parsed::Command(Command::Start(String::new()))
        );
        assert_eq!(
            parse_command("/start@djkibackupbot", BOT),
            Parsed::Command(Command::Start(String::new()))
        );
        assert_eq!(
            parse_command("/order_backup@DjkiBackupBot backup  bulanan", BOT),
            Parsed::Command(Command::OrderBackup("backup  bulanan".into()))
        );
        assert_eq!(
            parse_command("/order_backup\nbaris kedua", BOT),
            Parsed::Command(Command::OrderBackup("baris kedua".into()))
        );
    }

    #[test]
    fn a_malformed_or_foreign_suffix_is_not_a_command_for_this_bot() {
        for text in [
            "/start@DjkiBackupBot@x",
            "/start@",
            "/start@other_bot",
            "/start@@DjkiBackupBot",
            "/@DjkiBackupBot@",
        ] {
            assert_eq!(parse_command(text, BOT), Parsed::NotForThisBot, "{text}");
        }
    }

    #[test]
    fn unknown_names_are_unknown() {
        for text in ["/", "/frobnicate", "/ start", "/@DjkiBackupBot", "start"] {
            assert_eq!(parse_command(text, BOT), Parsed::Unknown, "{text}");
        }
    }

    mod properties {
        use super::*;
        use crate::domain::{direct_button_data, parse_direct_button};
        use crate::domain::{OrderId, UserId};
        use proptest::prelude::*;

        proptest! {
            /// Any text: no panic, and a command is only ever taken when its suffix, if any, is
            /// exactly `@` and this bot's name.
            #[test]
            fn any_text_parses_without_panic(text in any::<String>(), tail in "[/@a-zA-Z_ \n]{0,12}") {
                for t in [text.clone(), format!("/{text}"), format!("/start{tail}"), format!("/start@{text}")] {
                    let parsed = parse_command(&t, BOT);
                    if let Parsed::Command(_) = parsed {
                        let head = t[1..].split(char::is_whitespace).next().unwrap_or("");
                        if let Some((_, who)) = head.split_once('@') {
                            prop_assert!(who.eq_ignore_ascii_case(BOT), "{t:?} taken as ours");
                        }
                    }
                }
            }

            /// A suffix that is not exactly this bot's name never makes a command.
            #[test]
            fn a_foreign_or_malformed_suffix_is_never_a_command(name in "[a-z_]{1,12}", who in "[a-zA-Z_@]{0,20}", rest in ".{0,30}") {
                prop_assume!(!who.eq_ignore_ascii_case(BOT));
                let text = format!("/{name}@{who} {rest}");
                prop_assert_eq!(parse_command(&text, BOT), Parsed::NotForThisBot);
            }

            /// Any callback data: no panic; what parses is exactly what the bot makes.
            #[test]
            fn any_callback_data_parses_without_panic(data in any::<String>(), order in any::<i64>(), jfu in any::<i64>()) {
                if let Some((o, j)) = parse_direct_button(&data) {
                    prop_assert_eq!(parse_direct_button(&direct_button_data(o, j)), Some((o, j)));
                }
                let made = direct_button_data(OrderId(order), UserId(jfu));
                prop_assert_eq!(parse_direct_button(&made), Some((OrderId(order), UserId(jfu))));
                prop_assert_eq!(parse_direct_button(&format!("{made}:{data}")), None);
            }
        }
    }
}
