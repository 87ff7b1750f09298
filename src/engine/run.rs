use crate::config::EngineSettings;
use super::*;
pub struct SshEngine { settings: EngineSettings }
impl SshEngine { pub fn new(settings: EngineSettings) -> Self { SshEngine { settings } } }
impl BackupEngine for SshEngine {
    fn run(&self, _r: RunRequest, _p: ProgressSender) -> BoxFuture<'_, Result<BackupReport, EngineError>> {
        let _ = &self.settings;
        Box::pin(async { Err(EngineError::new(SopStep::CreateFolder, ErrorKind::LocalFolder, "todo")) })
    }
}
