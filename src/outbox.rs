//! What the bot says in the group, as data: a move renders its messages into [`Outgoing`] values,
//! which are stored with the move in one transaction ([`crate::storage`]) and sent afterwards by
//! the delivery worker ([`crate::telegram::delivery`]). No I/O here.

use serde::{Deserialize, Serialize};

/// A message the order keeps the id of, so a later move can edit it or remove its buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// The order as relayed to the Kasi, with the "direct to" buttons.
    OrderMessage,
    /// The run's live progress, edited in place.
    ProgressMessage,
    /// The report to the Kasi, which the relay to the Kasubdit replies to.
    ReportMessage,
}

impl Slot {
    /// The column of `orders` holding the message's id.
    pub fn column(self) -> &'static str {
        match self {
            Slot::OrderMessage => "order_message_id",
            Slot::ProgressMessage => "progress_message_id",
            Slot::ReportMessage => "report_message_id",
        }
    }
}

/// An inline button: its label and its callback data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Button {
    pub text: String,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outgoing {
    /// A new message (HTML), one button per row; its id is kept in `remember` when given; it
    /// replies to the message in `reply_to` when that one was sent.
    Say {
        html: String,
        #[serde(default)]
        quiet: bool,
        #[serde(default)]
        buttons: Vec<Button>,
        #[serde(default)]
        remember: Option<Slot>,
        #[serde(default)]
        reply_to: Option<Slot>,
    },
    /// Replaces the text of the message in `slot` (nothing when the order has none).
    Edit { slot: Slot, html: String },
    /// Removes the buttons under the message in `slot`.
    RemoveButtons { slot: Slot },
    /// A text file attached to the chat, without a notification.
    Document {
        file_name: String,
        content: String,
        caption: String,
    },
}

impl Outgoing {
    pub fn say(html: String) -> Outgoing {
        Outgoing::Say {
            html,
            quiet: false,
            buttons: Vec::new(),
            remember: None,
            reply_to: None,
        }
    }

    pub fn say_quietly(html: String) -> Outgoing {
        Outgoing::Say {
            html,
            quiet: true,
            buttons: Vec::new(),
            remember: None,
            reply_to: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_messages_round_trip_through_json() {
        let all = vec![
            Outgoing::Say {
                html: "<b>Perintah</b> #1".into(),
                quiet: false,
                buttons: vec![Button {
                    text: "Budi".into(),
                    data: "direct:1:2".into(),
                }],
                remember: Some(Slot::OrderMessage),
                reply_to: None,
            },
            Outgoing::say_quietly("x".into()),
            Outgoing::Edit {
                slot: Slot::ProgressMessage,
                html: "⏹".into(),
            },
            Outgoing::RemoveButtons {
                slot: Slot::OrderMessage,
            },
            Outgoing::Document {
                file_name: "SHA256SUMS.txt".into(),
                content: "abc  a.tgz\n".into(),
                caption: "SHA256SUMS".into(),
            },
        ];
        for o in all {
            let json = serde_json::to_value(&o).expect("serialize");
            assert_eq!(serde_json::from_value::<Outgoing>(json).expect("parse"), o);
        }
        // A row written before a field existed still reads.
        let old = serde_json::json!({"kind": "say", "html": "hi"});
        assert_eq!(
            serde_json::from_value::<Outgoing>(old).expect("parse"),
            Outgoing::say("hi".into())
        );
    }
}
