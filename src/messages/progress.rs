//! The run's progress message, edited in place while steps 3–6 run, and its last words.

use chrono::TimeDelta;

use super::{bytes, duration, Catalog, Lang};
use crate::domain::SopStep;

/// How a run ended, as its progress message says at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every mailbox copied and verified.
    Completed,
    /// The run failed in this step.
    Failed(SopStep),
    /// The order was cancelled and the run stopped.
    Cancelled,
    /// The bot was stopped; the run goes on at its next start.
    Interrupted,
}

/// What the progress message shows.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunView {
    /// The steps under way, in order (steps 5 and 6 run side by side).
    pub running: Vec<SopStep>,
    /// The steps finished so far in this run, with how long each took.
    pub finished: Vec<(SopStep, TimeDelta)>,
    pub exported: Option<(usize, usize)>,
    /// Files verified and of all, bytes done and of all, bytes per second, seconds left.
    pub copy: Option<(usize, usize, u64, u64, f64, Option<u64>)>,
    pub read_back: Option<(usize, usize)>,
    /// Reconnecting now: try `.0` of `.1`.
    pub reconnecting: Option<(u32, u32)>,
    pub reconnects: u32,
    /// Free bytes on the server and the export's expected need.
    pub server_space: Option<(u64, Option<u64>)>,
    pub end: Option<RunEnd>,
}

fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let done = done.min(total);
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    let percent = (done * 100).checked_div(total).unwrap_or(100);
    format!(
        "[{}{}] {percent}%",
        "█".repeat(filled as usize),
        "░".repeat((WIDTH - filled) as usize),
    )
}

impl Catalog {
    /// The last words of the progress message: the run's real outcome.
    pub fn run_end(&self, end: RunEnd) -> String {
        match (self.lang, end) {
            (Lang::Id, RunEnd::Completed) => "✅ Backup selesai: semua mailbox tersalin dan terverifikasi. Lihat laporan di bawah.".into(),
            (Lang::En, RunEnd::Completed) => "✅ Backup finished: every mailbox copied and verified. See the report below.".into(),
            (Lang::Id, RunEnd::Failed(step)) => format!("❌ Backup GAGAL pada langkah {} ({}). Lihat laporan di bawah.", step.number(), self.step_name(step)),
            (Lang::En, RunEnd::Failed(step)) => format!("❌ Backup FAILED in step {} ({}). See the report below.", step.number(), self.step_name(step)),
            (Lang::Id, RunEnd::Cancelled) => "⏹ Backup dibatalkan; proses dihentikan dan berkas sementara dihapus.".into(),
            (Lang::En, RunEnd::Cancelled) => "⏹ Backup cancelled; the run was stopped and its partial files removed.".into(),
            (Lang::Id, RunEnd::Interrupted) => "🔄 Backup terhenti karena bot dimatikan; akan dilanjutkan saat bot berjalan kembali.".into(),
            (Lang::En, RunEnd::Interrupted) => "🔄 Backup interrupted by a shutdown of the bot; it resumes when the bot starts again.".into(),
        }
    }

    /// A finished step in the progress message, judged against its standard time.
    pub fn step_finished_line(&self, step: SopStep, took: TimeDelta) -> String {
        let mark = if step.within_standard(took) {
            "✅"
        } else {
            "⚠️"
        };
        format!(
            "{mark} {} {}: {} — {} ({} {})",
            self.pick("Langkah", "Step"),
            step.number(),
            self.step_name(step),
            duration(self.lang, took),
            self.pick("standar", "standard"),
            duration(self.lang, step.standard_time())
        )
    }

    /// The progress message.
    pub fn progress(&self, v: &RunView) -> String {
        if let Some(end) = v.end {
            return self.run_end(end);
        }
        let b = |n| bytes(self.lang, n);
        let mut lines = vec![format!(
            "⏳ <b>{}</b>",
            self.pick("Kemajuan backup", "Backup progress")
        )];
        // The finished steps live here, not in messages of their own: one message to watch.
        for (step, took) in &v.finished {
            lines.push(self.step_finished_line(*step, *took));
        }
        if v.running.is_empty() {
            lines.push(self.pick("Menyiapkan…", "Preparing…").to_owned());
        }
        for step in &v.running {
            lines.push(format!(
                "▶️ {} {}: {}",
                self.pick("Langkah", "Step"),
                step.number(),
                self.step_name(*step)
            ));
        }
        if let Some((free, need)) = v.server_space {
            let need = need
                .map(|n| {
                    format!(
                        " ({} {})",
                        self.pick("perkiraan kebutuhan", "expected need"),
                        b(n)
                    )
                })
                .unwrap_or_default();
            lines.push(format!(
                "{}: {}{need}",
                self.pick("Ruang kosong di server", "Free on the server"),
                b(free)
            ));
        }
        if let Some((done, total)) = v.exported {
            lines.push(format!(
                "{}: {done}/{total}",
                self.pick("Mailbox diekspor", "Mailboxes exported")
            ));
        }
        if let Some((fd, ft, bd, bt, rate, eta)) = v.copy {
            // While step 5 still exports, the totals are what is exported so far.
            let exporting = v.exported.is_some_and(|(done, total)| done < total);
            lines.push(match (self.lang, exporting) {
                (Lang::Id, false) => format!("Berkas terverifikasi: {fd}/{ft}"),
                (Lang::En, false) => format!("Files verified: {fd}/{ft}"),
                (Lang::Id, true) => {
                    format!("Berkas terverifikasi: {fd} dari {ft} yang sudah diekspor")
                }
                (Lang::En, true) => format!("Files verified: {fd} of the {ft} exported so far"),
            });
            lines.push(format!("{} {} / {}", bar(bd, bt), b(bd), b(bt)));
            let eta = eta
                .map(|s| duration(self.lang, TimeDelta::seconds(s as i64)))
                .unwrap_or_else(|| "–".into());
            lines.push(format!(
                "{}: {}, {}: {eta}",
                self.pick("Kecepatan", "Rate"),
                self.rate(rate),
                match exporting {
                    false => self.pick("perkiraan sisa waktu", "time left"),
                    true => self.pick(
                        "perkiraan sisa waktu (ekspor dan salin)",
                        "time left (export and copy)"
                    ),
                }
            ));
        }
        if let Some((done, total)) = v.read_back {
            lines.push(format!(
                "{}: {done}/{total}",
                self.pick("Arsip dibaca ulang", "Archives read back")
            ));
        }
        if let Some((attempt, of)) = v.reconnecting {
            lines.push(match self.lang {
                Lang::Id => format!("🔌 Koneksi ke server mail terputus; menyambung ulang (percobaan {attempt} dari {of})…"),
                Lang::En => format!("🔌 The connection to the mail server was lost; reconnecting (try {attempt} of {of})…"),
            });
        } else if v.reconnects > 0 {
            lines.push(match self.lang {
                Lang::Id => format!(
                    "🔌 Tersambung kembali ({} kali); proses dilanjutkan.",
                    v.reconnects
                ),
                Lang::En => format!("🔌 Reconnected ({} times); the run goes on.", v.reconnects),
            });
        }
        lines.join("\n")
    }
}
