//! The operator's own command (`MAIL_BACKUP_COMMAND`): it writes whatever files it makes into the
//! server folder, which the bot then sums, copies and verifies. The bot lists no mailbox, keeps
//! no directory and restores nothing of it.

use futures::future::BoxFuture;

use super::{ImportProgress, MailKind, MailboxScripts};
use crate::engine::import::{FolderCount, ImportTarget, RestoreError};
use crate::engine::remote::Remote;

pub struct Command {
    pub command: String,
}

/// The operator's command with `{dir}` replaced by the quoted server folder, as a script for
/// [`crate::engine::server::EXPORT_ONE`] (its OUT ACCOUNT STAGE arguments are not used).
pub fn operator_script(command: &str, dir: &str) -> String {
    command.replace("{dir}", &super::shell_quote(dir))
}

impl MailKind for Command {
    fn name(&self) -> &'static str {
        "command"
    }

    fn mailboxes(&self) -> Option<MailboxScripts> {
        None
    }

    fn operator_command(&self, dir: &str) -> Option<String> {
        Some(operator_script(&self.command, dir))
    }

    fn tools(&self) -> &'static [&'static str] {
        &[]
    }

    fn target_owner<'a>(
        &'a self,
        _: &'a Remote,
        _: &'a str,
    ) -> BoxFuture<'a, Result<String, RestoreError>> {
        Box::pin(async { Err(RestoreError::Unsupported(self.name().into())) })
    }

    fn import<'a>(
        &'a self,
        _: &'a Remote,
        _: &'a str,
        _: &'a ImportTarget<'a>,
        _: ImportProgress<'a>,
    ) -> BoxFuture<'a, Result<Vec<FolderCount>, RestoreError>> {
        Box::pin(async { Err(RestoreError::Unsupported(self.name().into())) })
    }
}
