//! Where each command is handled: a message or a button press becomes a call of [`crate::procedure::chain`].

use std::future::Future;
use std::sync::Arc;

use super::chat::{GroupChat, TgBot};
use super::queues::Queues;
use super::turns::answering;
use super::{parse_command, Command, Parsed};
use crate::domain::flood::Admission;
use crate::domain::{parse_note, UserId};
use crate::procedure::app::App;
use crate::procedure::chain;
use crate::storage::Person;
use teloxide::prelude::*;
use teloxide::types::{Me, User};

fn user_id(user: &User) -> UserId {
    UserId(user.id.0 as i64)
}

/// Who sent an update, as the procedure knows people.
async fn learn(app: &App, user: &User) {
    app.learn(Person {
        id: user_id(user),
        first_name: user.first_name.clone(),
        username: user.username.clone(),
    })
    .await;
}

/// An update from a group that is not `GROUP_CHAT_ID`: ignored, but logged with the chat's id
/// and title so a wrong setting can be found.
fn log_other_chat(group: &GroupChat, chat: &teloxide::types::Chat, what: &str) {
    tracing::warn!(
        chat_id = chat.id.0,
        title = chat.title().unwrap_or(""),
        group_chat_id = group.chat_id().0,
        "ignored a {what} from another chat (not GROUP_CHAT_ID)"
    );
}

/// Answers a command `from` sent in `chat` with `job`: at once in a private chat; in a group,
/// if the flood guard admits it ([`crate::domain::flood`]), after the person's earlier commands,
/// in their own turn. A dropped one is logged, the first of a burst as a warning, and a person
/// with a role is told once to slow down.
async fn answer<F>(
    app: &Arc<App>,
    queues: &Queues,
    from: &User,
    chat: &teloxide::types::Chat,
    job: F,
) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let by = user_id(from);
    if chat.is_private() {
        return job.await;
    }
    let has_role = app.settings.roster.has_any_role(by);
    let admission = app.flood.lock().unwrap_or_else(|p| p.into_inner()).admit(
        by,
        has_role,
        std::time::Instant::now(),
    );
    let too_many = || {
        tracing::warn!(
            user = by.0,
            has_role,
            chat_id = chat.id.0,
            "too many commands: not answering this person for now"
        )
    };
    match admission {
        Admission::Answer => queues.answer(app.clone(), by, job),
        Admission::SlowDown => {
            too_many();
            let app = app.clone();
            tokio::spawn(answering(by, async move {
                let text = app.catalog.slow_down(&app.people.name(by));
                if let Err(e) = app.chat.say(&text).await {
                    tracing::warn!(error = %e, "could not ask someone to slow down");
                }
            }));
        }
        Admission::Drop { first: true } => too_many(),
        Admission::Drop { first: false } => {
            tracing::debug!(user = by.0, "dropped a command of a flood");
        }
    }
    Ok(())
}

pub async fn on_message(
    app: Arc<App>,
    group: GroupChat,
    queues: Queues,
    me: Me,
    msg: Message,
) -> anyhow::Result<()> {
    // The group upgraded to a supergroup: the old chat says where it went, the new one where it
    // came from.
    if let Some(to) = msg.migrate_to_chat_id() {
        group.follow_migration(msg.chat.id, *to);
        return Ok(());
    }
    if let Some(from) = msg.migrate_from_chat_id() {
        group.follow_migration(*from, msg.chat.id);
        return Ok(());
    }
    // `/id` is answered anywhere: it is how the admin finds the ids to put in the settings.
    if let (Some(from), Some(Parsed::Command(Command::Id(_)))) = (
        msg.from.as_ref(),
        msg.text().map(|t| parse_command(t, me.username())),
    ) {
        let roles = app.settings.roster.roles_of(user_id(from));
        let text = app.catalog.your_id(user_id(from), msg.chat.id.0, &roles);
        let chat = msg.chat.clone();
        return answer(&app, &queues, from, &msg.chat, async move {
            if !chat.is_private() && !group.is_ours(chat.id) {
                tracing::warn!(
                    chat_id = chat.id.0,
                    title = chat.title().unwrap_or(""),
                    group_chat_id = group.chat_id().0,
                    "answered /id in another chat (not GROUP_CHAT_ID)"
                );
            }
            group.send_to(chat.id, &text, false, None).await?;
            Ok(())
        })
        .await;
    }
    if !msg.chat.is_private() && !group.is_ours(msg.chat.id) {
        log_other_chat(&group, &msg.chat, "message");
        return Ok(());
    }
    let (Some(from), Some(text)) = (msg.from.as_ref(), msg.text()) else {
        return Ok(());
    };
    if msg.chat.is_private() {
        return private(&app, &group, from, text).await;
    }
    learn(&app, from).await;
    if !text.starts_with('/') {
        return Ok(());
    }
    let parsed = parse_command(text, me.username());
    if parsed == Parsed::NotForThisBot {
        return Ok(()); // another bot's, or a malformed @suffix
    }
    let by = user_id(from);
    let job = {
        let app = app.clone();
        async move {
            match parsed {
                Parsed::Command(command) => {
                    if let Err(e) = dispatch(&app, by, command).await {
                        let _ = app.chat.say(&app.failure_reply(&e)).await;
                    }
                }
                Parsed::Unknown => {
                    app.chat.say(&app.catalog.unknown_command()).await?;
                }
                Parsed::NotForThisBot => {}
            }
            Ok(())
        }
    };
    answer(&app, &queues, from, &msg.chat, job).await
}

/// The note of `/order_backup` or `/cancel`; a bad one is refused in the group (`Err(())`) and
/// nothing changes.
async fn note(app: &App, arg: &str) -> anyhow::Result<Result<Option<String>, ()>> {
    match parse_note(arg) {
        Ok(note) => Ok(Ok(note)),
        Err(bad) => {
            app.chat.say(&app.catalog.bad_note(&bad)).await?;
            Ok(Err(()))
        }
    }
}

async fn no_arguments(app: &App, arg: &str, usage: &str) -> anyhow::Result<bool> {
    if arg.trim().is_empty() {
        return Ok(true);
    }
    app.chat.say(&app.catalog.bad_arguments(usage)).await?;
    Ok(false)
}

async fn dispatch(app: &Arc<App>, by: UserId, command: Command) -> anyhow::Result<()> {
    match command {
        Command::OrderBackup(arg) => match note(app, &arg).await? {
            Ok(note) => chain::order_backup(app, by, note).await,
            Err(()) => Ok(()),
        },
        Command::Direct(arg) => chain::direct_named(app, by, arg.trim()).await,
        Command::Start(arg) => {
            if no_arguments(app, &arg, "/start").await? {
                chain::start(app, by).await?;
            }
            Ok(())
        }
        Command::Receive(arg) => {
            if no_arguments(app, &arg, "/receive").await? {
                chain::receive(app, by).await?;
            }
            Ok(())
        }
        Command::Status(arg) => {
            if no_arguments(app, &arg, "/status").await? {
                chain::status(app, by).await?;
            }
            Ok(())
        }
        Command::Cancel(arg) => match note(app, &arg).await? {
            Ok(reason) => chain::cancel(app, by, reason).await,
            Err(()) => Ok(()),
        },
        Command::Log(arg) => chain::log(app, by, &arg).await,
        Command::Export(arg) => chain::export(app, by, &arg).await,
        Command::Restore(arg) => crate::procedure::restores::ask(app, by, &arg).await,
        Command::Drill(arg) => {
            if no_arguments(app, &arg, "/drill").await? {
                crate::procedure::drills::ask(app, by).await?;
            }
            Ok(())
        }
        Command::Check(arg) => {
            if no_arguments(app, &arg, "/check").await? {
                chain::check(app, by).await?;
            }
            Ok(())
        }
        // Answered before the group check, in any chat.
        Command::Id(_) => Ok(()),
        Command::Help(_) => {
            app.chat
                .say(&app.catalog.help(&app.settings.roster.roles_of(by)))
                .await?;
            Ok(())
        }
    }
}

async fn private(app: &App, group: &GroupChat, from: &User, text: &str) -> anyhow::Result<()> {
    if !text.starts_with('/') {
        return Ok(());
    }
    let roles = app.settings.roster.roles_of(user_id(from));
    let help = format!(
        "{}\n\n{}",
        app.catalog.private_chat(),
        app.catalog.help(&roles)
    );
    group
        .send_to(ChatId(from.id.0 as i64), &help, false, None)
        .await?;
    Ok(())
}

/// A "direct to" button: only a Kasi may use it; it is always answered and removed once used.
pub async fn on_button(
    app: Arc<App>,
    group: GroupChat,
    bot: TgBot,
    q: CallbackQuery,
) -> anyhow::Result<()> {
    let by = user_id(&q.from);
    if let Some(m) = q.regular_message().filter(|m| !group.is_ours(m.chat.id)) {
        log_other_chat(&group, &m.chat, "button press");
    }
    let in_our_group = q
        .regular_message()
        .is_some_and(|m| group.is_ours(m.chat.id));
    if let Some((id, approve)) = q
        .data
        .as_deref()
        .and_then(crate::domain::parse_restore_button)
        .filter(|_| in_our_group)
    {
        learn(&app, &q.from).await;
        let message = q.regular_message().map(|m| i64::from(m.id.0));
        let reply = crate::procedure::restores::decide(&app, by, id, approve, message).await;
        if let Err(e) = bot
            .answer_callback_query(q.id.clone())
            .text(reply.text)
            .show_alert(reply.alert)
            .await
        {
            tracing::warn!(error = %e, "could not answer a button press");
        }
        return Ok(());
    }
    let parsed = q
        .data
        .as_deref()
        .and_then(crate::domain::parse_direct_button);
    let answer = |text: String, alert: bool| {
        let bot = bot.clone();
        let id = q.id.clone();
        async move {
            if let Err(e) = bot
                .answer_callback_query(id)
                .text(text)
                .show_alert(alert)
                .await
            {
                tracing::warn!(error = %e, "could not answer a button press");
            }
        }
    };
    let Some((order_id, jfu)) = parsed.filter(|_| in_our_group) else {
        answer(app.catalog.button_stale(), false).await;
        return Ok(());
    };
    learn(&app, &q.from).await;
    let message = q.regular_message().map(|m| i64::from(m.id.0));
    let reply = chain::direct_button(&app, by, order_id, jfu, message).await;
    answer(reply.text, reply.alert).await;
    Ok(())
}
