//! The texts of a run's end, for the Kasi and the log: the report (or the failure report), the
//! daily-log summary, the per-mailbox document, and the reason a run failed.

use chrono::{DateTime, TimeDelta, Utc};

use super::{bytes, duration, esc, Catalog, Lang};
use crate::domain::{Order, OrderStatus, UserId};
use crate::engine::directory::DirectoryResult;
use crate::engine::piece::Export;
use crate::engine::{BackupReport, EngineError, Incremental, MailboxStatus, SpaceShortfall};
use crate::run_outcome::RunOutcome;

/// Up to this many mailboxes, the report names each one.
const REPORT_ROWS: usize = 10;
/// With more, the report shows the largest few…
const LARGEST_SHOWN: usize = 5;
/// …and at most this many failures by name (the CSV document has them all).
const FAILURES_SHOWN: usize = 20;

impl Catalog {
    fn more_in_document(&self, n: usize) -> String {
        match self.lang {
            Lang::Id => format!("… dan {n} mailbox lain: rinciannya di berkas CSV di bawah.\n"),
            Lang::En => {
                format!("… and {n} more mailboxes: the details are in the CSV document below.\n")
            }
        }
    }

    /// The per-mailbox document of a run: one row per mailbox with its archive, size, SHA-256,
    /// messages and result.
    pub fn mailboxes_csv(&self, r: &BackupReport) -> String {
        let header: [&str; 9] = match self.lang {
            Lang::Id => [
                "akun",
                "berkas",
                "ukuran_byte",
                "sha256",
                "jumlah_pesan",
                "jumlah_pesan_server",
                "akun_di_direktori",
                "hasil",
                "keterangan",
            ],
            Lang::En => [
                "account",
                "file",
                "bytes",
                "sha256",
                "messages",
                "server_messages",
                "account_in_directory",
                "result",
                "detail",
            ],
        };
        // Whether each mailbox's account is in the directory capture (empty: the kind keeps none).
        let in_directory = |account: &str| match &r.directory {
            Some(d) if d.status == MailboxStatus::Verified => self
                .pick(
                    if d.counts.names.iter().any(|n| n == account) {
                        "ya"
                    } else {
                        "tidak"
                    },
                    if d.counts.names.iter().any(|n| n == account) {
                        "yes"
                    } else {
                        "no"
                    },
                )
                .to_owned(),
            _ => String::new(),
        };
        let mut out = csv::Writer::from_writer(Vec::new());
        let _ = out.write_record(header);
        for m in &r.mailboxes {
            let (result, detail) = match &m.status {
                MailboxStatus::Verified => (self.pick("terverifikasi", "verified"), String::new()),
                MailboxStatus::Failed { error } => (self.pick("gagal", "failed"), error.clone()),
            };
            let cells = [
                m.account.clone(),
                m.file.clone(),
                m.size.to_string(),
                m.sha256.clone(),
                m.messages.map(|n| n.to_string()).unwrap_or_default(),
                // The server's count around the export ("12–13": mail arrived meanwhile).
                m.server_messages.map(|c| c.to_string()).unwrap_or_default(),
                in_directory(&m.account),
                result.to_owned(),
                detail,
            ];
            let _ = out.write_record(cells.iter().map(|c| super::inert_cell(c)));
        }
        if let Some(d) = &r.directory {
            let (result, detail) = match &d.status {
                MailboxStatus::Verified => (
                    self.pick("terverifikasi", "verified"),
                    self.directory_counts(d),
                ),
                MailboxStatus::Failed { error } => (self.pick("gagal", "failed"), error.clone()),
            };
            let cells = [
                self.pick("(direktori akun)", "(account directory)")
                    .to_owned(),
                d.file.clone(),
                d.size.to_string(),
                d.sha256.clone(),
                String::new(),
                String::new(),
                d.counts.accounts.to_string(),
                result.to_owned(),
                detail,
            ];
            let _ = out.write_record(cells.iter().map(|c| super::inert_cell(c)));
        }
        out.into_inner()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn mailboxes_csv_name(&self, r: &BackupReport) -> String {
        let folder = r
            .folders
            .local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match self.lang {
            Lang::Id => format!("backup-{folder}-per-mailbox.csv"),
            Lang::En => format!("backup-{folder}-mailboxes.csv"),
        }
    }

    pub fn mailboxes_csv_caption(&self) -> String {
        self.pick(
            "Rincian per mailbox: berkas, ukuran, SHA-256 (sama dengan SHA256SUMS di folder backup), jumlah pesan di arsip dan menurut server, hasil.",
            "Per mailbox: file, size, SHA-256 (as in SHA256SUMS in the backup folder), messages in the archive and as the server counted them, result.",
        )
        .into()
    }

    /// Why a run stopped, as a label in the reader's language (the raw error is quoted elsewhere).
    pub fn failure_reason(&self, e: &EngineError) -> String {
        self.failure_kind(e.kind).to_owned()
    }

    /// What a directory capture holds, in plain words ("12 akun, 12 dengan sandi, 3 filter").
    pub fn directory_counts(&self, d: &DirectoryResult) -> String {
        self.counts_text(&d.counts)
    }

    /// What an account directory holds, in plain words.
    pub fn counts_text(&self, c: &crate::engine::directory::DirectoryCounts) -> String {
        let mut text = match self.lang {
            Lang::Id => format!(
                "{} akun, {} dengan sandi, {} filter surat",
                c.accounts, c.passwords, c.filters
            ),
            Lang::En => format!(
                "{} accounts, {} with a password, {} mail filters",
                c.accounts, c.passwords, c.filters
            ),
        };
        // Zimbra's lists and aliases; Dovecot keeps none.
        if c.lists > 0 || c.aliases > 0 {
            text += &match self.lang {
                Lang::Id => format!(", {} milis, {} alias", c.lists, c.aliases),
                Lang::En => format!(", {} lists, {} aliases", c.lists, c.aliases),
            };
        }
        text
    }

    /// The report's line on the accounts beside the mail: captured and verified (with what the
    /// server keeps elsewhere), failed, or not kept by this kind of server.
    pub fn directory_line(&self, r: &BackupReport) -> String {
        match r.directory.as_deref() {
            Some(d @ DirectoryResult { status: MailboxStatus::Verified, .. }) => {
                let mut line = format!(
                    "🗂 {}: {} (<code>{}</code>)\n",
                    self.pick("Direktori akun", "Account directory"),
                    self.directory_counts(d),
                    esc(&d.file)
                );
                for what in &d.counts.not_captured {
                    line.push_str(&format!(
                        "⚠️ {}: <code>{}</code>\n",
                        self.pick(
                            "Tidak ikut tersimpan (cadangkan sendiri)",
                            "Not captured (back it up separately)"
                        ),
                        esc(what)
                    ));
                }
                line
            }
            Some(DirectoryResult { status: MailboxStatus::Failed { error }, .. }) => format!(
                "❌ {}: <code>{}</code>\n",
                self.pick("Direktori akun gagal disimpan", "The account directory failed"),
                esc(&error.chars().take(200).collect::<String>())
            ),
            None => format!(
                "ℹ️ {}\n",
                self.pick(
                    "Direktori akun (sandi, filter) tidak disimpan untuk jenis server ini: hanya surat.",
                    "The account directory (passwords, filters) is not kept for this kind of server: mail only."
                )
            ),
        }
    }

    /// Whether the folder's files are encrypted on the disk, and to how many keys.
    pub fn encryption_line(&self, r: &BackupReport) -> String {
        match (self.lang, r.encrypted_to) {
            (Lang::Id, 0) => "🔓 Tidak terenkripsi: arsip tersimpan apa adanya di disk (BACKUP_ENCRYPT_TO kosong).\n".into(),
            (Lang::En, 0) => "🔓 Not encrypted: the archives are stored as they are on the disk (BACKUP_ENCRYPT_TO is empty).\n".into(),
            (Lang::Id, n) => format!("🔐 Terenkripsi (age) untuk {n} kunci penerima; diverifikasi tanpa kunci pembuka.\n"),
            (Lang::En, n) => format!("🔐 Encrypted (age) to {n} recipient key(s); verified without the key that opens them.\n"),
        }
    }

    /// Why a run whose mailboxes did not all verify failed.
    /// How many mailboxes failed, the first few by name (the document lists them all).
    pub fn mailboxes_failed(&self, failed: &[String], total: usize) -> String {
        const NAMED: usize = 5;
        let names = failed
            .iter()
            .take(NAMED)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let more = failed.len().saturating_sub(NAMED);
        match (self.lang, more) {
            (Lang::Id, 0) => format!("{} dari {total} mailbox gagal: {names}", failed.len()),
            (Lang::En, 0) => format!("{} of {total} mailboxes failed: {names}", failed.len()),
            (Lang::Id, _) => format!(
                "{} dari {total} mailbox gagal: {names} dan {more} lainnya",
                failed.len()
            ),
            (Lang::En, _) => format!(
                "{} of {total} mailboxes failed: {names} and {more} more",
                failed.len()
            ),
        }
    }

    /// Why a run was given up at start-up.
    /// Why a failed order failed, in the reader's language, from how its run ended (the stored
    /// evidence when there is no run: an order of an older bot).
    pub fn failure_of(&self, order: &Order, outcome: Option<&RunOutcome>) -> Option<String> {
        if order.status != OrderStatus::Failed {
            return order.reason.clone();
        }
        match outcome {
            Some(RunOutcome::Completed(r)) if !r.all_verified() => {
                let failed: Vec<String> = r.failed().map(|m| m.account.clone()).collect();
                let mut why = Vec::new();
                if !failed.is_empty() || r.mailboxes.is_empty() {
                    why.push(self.mailboxes_failed(&failed, r.mailboxes.len()));
                }
                if r.directory
                    .as_ref()
                    .is_some_and(|d| d.status != MailboxStatus::Verified)
                {
                    why.push(
                        self.pick(
                            "direktori akun gagal disimpan",
                            "the account directory failed",
                        )
                        .to_owned(),
                    );
                }
                Some(why.join("; "))
            }
            Some(RunOutcome::Stopped(e)) => Some(self.failure_reason(e)),
            Some(RunOutcome::Abandoned(a)) => Some(self.abandoned(a)),
            _ => order.reason.clone(),
        }
    }

    pub fn abandoned(&self, a: &crate::run_outcome::Abandon) -> String {
        match a {
            crate::run_outcome::Abandon::RestartedWithoutEngine => self.restarted_without_engine(),
            crate::run_outcome::Abandon::Said(text) => text.clone(),
        }
    }

    pub fn restarted_without_engine(&self) -> String {
        self.pick(
            "bot dimulai ulang tanpa mesin backup yang dikonfigurasi",
            "the bot restarted without a configured backup engine",
        )
        .into()
    }

    /// The report to the Kasi (end of step 6), or the failure report. `kasi` is the mention;
    /// `kept_verified` whether a stopped run's local folder holds verified files.
    pub fn report(
        &self,
        order: &Order,
        outcome: Option<&RunOutcome>,
        kasi: &str,
        kept_verified: bool,
        now: DateTime<Utc>,
        name_of: &dyn Fn(UserId) -> String,
    ) -> String {
        let failure = self.failure_of(order, outcome);
        let table = self.sop_table(order, failure.as_deref(), now, name_of);
        match outcome {
            Some(RunOutcome::Completed(r))
                if r.all_verified() && order.status != OrderStatus::Failed =>
            {
                self.completed_report(order, r, kasi, &table)
            }
            other => self.failure_report(order, other, kasi, kept_verified, &table),
        }
    }

    fn completed_report(&self, order: &Order, r: &BackupReport, kasi: &str, table: &str) -> String {
        let mut rows = String::new();
        // A handful by name; with many, the largest few (the rest is in the CSV document).
        let mut shown: Vec<&crate::engine::MailboxResult> = r.mailboxes.iter().collect();
        if shown.len() > REPORT_ROWS {
            shown.sort_by_key(|m| std::cmp::Reverse(m.size));
            shown.truncate(LARGEST_SHOWN);
            rows.push_str(self.pick("Terbesar:\n", "Largest:\n"));
        }
        for m in &shown {
            let msgs = m
                .messages
                .map(|n| format!(", {n} {}", self.pick("pesan", "messages")))
                .unwrap_or_default();
            rows.push_str(&format!(
                "✅ <code>{}</code> — {}{msgs}\n",
                esc(&m.account),
                bytes(self.lang, m.size)
            ));
        }
        if shown.len() < r.mailboxes.len() {
            rows.push_str(&self.more_in_document(r.mailboxes.len() - shown.len()));
        }
        let copy_time = duration(
            self.lang,
            TimeDelta::milliseconds((r.copy_secs * 1000.0) as i64),
        );
        let rate = self.rate(r.rate());
        let folder = esc(&r.folders.local.to_string_lossy());
        let total = bytes(self.lang, r.bytes_total);
        let n = r.mailboxes.len();
        let accounts = self.directory_line(r) + &self.encryption_line(r);
        let mut text = match self.lang {
            Lang::Id => format!(
                "📦 <b>Laporan backup {}</b> — {kasi}\nSemua mailbox tersalin dan terverifikasi (SHA-256 sama dengan server, arsip terbaca utuh).\n\n{rows}\nTotal: {n} mailbox, {total}\n{accounts}Folder: <code>{folder}</code>\nWaktu salin: {copy_time}, {rate}\n\n<b>Tabel SOP</b>\n{table}",
                order.id
            ),
            Lang::En => format!(
                "📦 <b>Backup report {}</b> — {kasi}\nEvery mailbox copied and verified (SHA-256 equal to the server's, archive read back whole).\n\n{rows}\nTotal: {n} mailboxes, {total}\n{accounts}Folder: <code>{folder}</code>\nCopy time: {copy_time}, {rate}\n\n<b>SOP table</b>\n{table}",
                order.id
            ),
        };
        text.push_str(&self.run_notes(r));
        if order.status == OrderStatus::Reported {
            text.push_str(self.pick(
                "\nKasi, terima laporan dengan /receive",
                "\nKasi, receive the report with /receive",
            ));
        }
        text
    }

    fn failure_report(
        &self,
        order: &Order,
        outcome: Option<&RunOutcome>,
        kasi: &str,
        kept_verified: bool,
        table: &str,
    ) -> String {
        let (what, kept) = match outcome {
            Some(RunOutcome::Completed(r)) => {
                let mut rows = String::new();
                let many = r.mailboxes.len() > REPORT_ROWS;
                let mut failures_named = 0;
                for m in &r.mailboxes {
                    match &m.status {
                        // With many, the verified ones are counted, the failures named.
                        MailboxStatus::Verified if many => {}
                        MailboxStatus::Verified => rows.push_str(&format!(
                            "✅ <code>{}</code> — {}\n",
                            esc(&m.account),
                            bytes(self.lang, m.size)
                        )),
                        MailboxStatus::Failed { .. } if failures_named >= FAILURES_SHOWN => {}
                        MailboxStatus::Failed { error } => {
                            failures_named += 1;
                            rows.push_str(&format!(
                                "❌ <code>{}</code> — <code>{}</code>\n",
                                esc(&m.account),
                                esc(&error.chars().take(200).collect::<String>())
                            ))
                        }
                    }
                }
                if many {
                    let ok = r
                        .mailboxes
                        .iter()
                        .filter(|m| m.status == MailboxStatus::Verified)
                        .count();
                    rows.push_str(&match self.lang {
                        Lang::Id => format!(
                            "✅ {ok} dari {} mailbox tersalin dan terverifikasi.\n",
                            r.mailboxes.len()
                        ),
                        Lang::En => format!(
                            "✅ {ok} of {} mailboxes copied and verified.\n",
                            r.mailboxes.len()
                        ),
                    });
                }
                let failed = r.failed().count();
                if failed > failures_named {
                    rows.push_str(&self.more_in_document(failed - failures_named));
                }
                rows.push_str(&self.directory_line(r));
                rows.push_str(&self.encryption_line(r));
                let any_verified = r
                    .mailboxes
                    .iter()
                    .any(|m| m.status == MailboxStatus::Verified);
                let kept = if any_verified {
                    format!(
                        "{}: <code>{}</code>",
                        self.pick("Yang berhasil disimpan di", "What succeeded is kept in"),
                        esc(&r.folders.local.to_string_lossy())
                    )
                } else {
                    self.pick(
                        "Tidak ada mailbox yang tersalin dan terverifikasi.",
                        "No mailbox was copied and verified.",
                    )
                    .to_owned()
                };
                (rows, kept)
            }
            Some(RunOutcome::Stopped(e)) => (
                format!(
                    "❌ {} {}: {}\n{}\n",
                    self.pick("Langkah", "Step"),
                    e.step.number(),
                    esc(self.failure_kind(e.kind)),
                    // The figures in the reader's language; otherwise the raw error, quoted.
                    match &e.space {
                        Some(sp) => self.space_text(sp),
                        None => format!("<code>{}</code>", esc(&e.detail)),
                    }
                ),
                match e.folders.as_ref().filter(|_| kept_verified) {
                    Some(f) => format!(
                        "{}: <code>{}</code>",
                        self.pick(
                            "Berkas terverifikasi tetap di",
                            "Verified files are kept in"
                        ),
                        esc(&f.local.to_string_lossy())
                    ),
                    None => self
                        .pick(
                            "Tidak ada berkas terverifikasi yang disimpan.",
                            "No verified files were kept.",
                        )
                        .to_owned(),
                },
            ),
            Some(RunOutcome::Abandoned(a)) => {
                (format!("❌ {}\n", esc(&self.abandoned(a))), String::new())
            }
            None => (
                format!(
                    "❌ {}\n",
                    super::esc_user(order.reason.as_deref().unwrap_or("-"))
                ),
                String::new(),
            ),
        };
        match self.lang {
            Lang::Id => format!(
                "🚨 <b>Backup GAGAL {}</b> — {kasi}\n\n{what}\n{kept}\nPeriksa penyebab di atas (jalankan `mailbox-backup-bot check` di komputer admin), lalu Kasubdit dapat memerintahkan ulang dengan /order_backup.\n\n<b>Tabel SOP</b>\n{table}",
                order.id
            ),
            Lang::En => format!(
                "🚨 <b>Backup FAILED {}</b> — {kasi}\n\n{what}\n{kept}\nFix the cause above (run `mailbox-backup-bot check` on the admin computer), then the Kasubdit can order again with /order_backup.\n\n<b>SOP table</b>\n{table}",
                order.id
            ),
        }
    }

    /// A copy rate: `1,5 MB/detik`, `1.5 MB/s`.
    pub fn rate(&self, bytes_per_sec: f64) -> String {
        format!(
            "{}/{}",
            bytes(self.lang, bytes_per_sec as u64),
            self.pick("detik", "s")
        )
    }

    /// Reconnects, reused bytes, retention on the server and the disk, and the room left.
    pub fn run_notes(&self, r: &BackupReport) -> String {
        let mut out = String::new();
        if r.reconnects > 0 {
            out.push_str(&match self.lang {
                Lang::Id => format!("\n🔌 Koneksi ke server terputus dan tersambung kembali {} kali; setiap berkas tetap diverifikasi.", r.reconnects),
                Lang::En => format!("\n🔌 The connection to the server was lost and made again {} times; every file was still verified.", r.reconnects),
            });
        }
        if r.bytes_reused > 0 {
            out.push_str(&match self.lang {
                Lang::Id => format!(
                    "\n♻️ {} diambil dari salinan terverifikasi sebelumnya, tidak disalin ulang.",
                    bytes(self.lang, r.bytes_reused)
                ),
                Lang::En => format!(
                    "\n♻️ {} taken from an earlier verified copy, not copied again.",
                    bytes(self.lang, r.bytes_reused)
                ),
            });
        }
        if let Some(i) = &r.incremental {
            out.push_str(&self.what_moved(i, r));
        }
        if !r.server_folders_removed.is_empty() {
            let names = r
                .server_folders_removed
                .iter()
                .map(|n| format!("<code>{}</code>", esc(n)))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&match self.lang {
                Lang::Id => format!("\n🧹 Folder backup lama di server dihapus: {names}"),
                Lang::En => format!("\n🧹 Old backup folders removed from the server: {names}"),
            });
        }
        if !r.local_folders_removed.is_empty() {
            let names = r
                .local_folders_removed
                .iter()
                .map(|n| format!("<code>{}</code>", esc(n)))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&match self.lang {
                Lang::Id => format!("\n🧹 Folder backup lama di disk backup dihapus (LOCAL_BACKUP_KEEP): {names}"),
                Lang::En => format!("\n🧹 Old backup folders removed from the backup disk (LOCAL_BACKUP_KEEP): {names}"),
            });
        }
        if let Some(free) = r.disk_free {
            out.push_str(&self.disk_left(free, r.bytes_total));
        }
        out
    }

    /// An incremental run: the mailboxes unchanged, changed and exported whole, and the bytes
    /// exported, copied and newly stored against the whole backup.
    fn what_moved(&self, i: &Incremental, r: &BackupReport) -> String {
        if i.no_hard_links {
            return self.pick(
                "\n⚠️ Disk backup tidak mendukung hard link (exFAT/FAT?): setiap kotak surat diekspor dan disimpan penuh setiap hari. Format disk dengan ext4 atau XFS.",
                "\n⚠️ The backup disk keeps no hard links (exFAT/FAT?): every mailbox is exported and stored whole every day. Format the disk ext4 or XFS.",
            ).to_owned();
        }
        let b = |n: u64| bytes(self.lang, n);
        let stored = r
            .bytes_total
            .saturating_sub(i.bytes_linked)
            .saturating_sub(r.bytes_reused);
        let mut out = match self.lang {
            Lang::Id => format!(
                "\n📦 Inkremental: {} kotak surat tidak berubah, {} berubah, {} diekspor penuh. Surat diekspor {} dari {}; disalin {}; tersimpan baru di disk {} dari {} isi folder ini.",
                i.unchanged, i.changed, i.full,
                b(i.mail_exported), b(i.mail_total), b(r.bytes_copied), b(stored), b(r.bytes_total)
            ),
            Lang::En => format!(
                "\n📦 Incremental: {} mailboxes unchanged, {} changed, {} exported whole. Mail exported {} of {}; copied {}; newly stored on the disk {} of the folder's {}.",
                i.unchanged, i.changed, i.full,
                b(i.mail_exported), b(i.mail_total), b(r.bytes_copied), b(stored), b(r.bytes_total)
            ),
        };
        let forced: Vec<String> = r
            .mailboxes
            .iter()
            .filter_map(|m| Some((m, m.piece.as_ref()?)))
            .filter(|(_, p)| {
                p.export == Export::Full
                    && !matches!(p.reason.as_str(), "rolling" | "first" | "always")
            })
            .map(|(m, p)| {
                format!(
                    "<code>{}</code> ({})",
                    esc(&m.account),
                    self.full_reason(&p.reason)
                )
            })
            .collect();
        if !forced.is_empty() {
            out.push_str(&match self.lang {
                Lang::Id => format!(
                    "\n   Diekspor penuh karena keadaannya diragukan: {}",
                    forced.join(", ")
                ),
                Lang::En => format!(
                    "\n   Exported whole because their state was in doubt: {}",
                    forced.join(", ")
                ),
            });
        }
        out
    }

    /// Why a mailbox was exported whole, in the reader's words.
    fn full_reason(&self, reason: &str) -> &'static str {
        match reason {
            "unfinished" => self.pick(
                "backup sebelumnya belum terverifikasi",
                "its last backup was not verified",
            ),
            "reset" => self.pick(
                "dipulihkan ke akun ini atau potongan lama hilang",
                "restored into, or its earlier pieces were gone",
            ),
            "due" => self.pick("jadwal penuh terlewat", "its whole export was due"),
            _ => self.pick(
                "keadaan perubahan tidak pasti",
                "its change state was in doubt",
            ),
        }
    }

    /// The space left on the backup disk, and about how many more backups of this size fit.
    fn disk_left(&self, free: u64, size: u64) -> String {
        // Past a thousand the figure says nothing more than "plenty".
        let fits = free.checked_div(size).filter(|n| *n <= 1000);
        match (self.lang, fits) {
            (Lang::Id, None) if size > 0 => format!("\n💾 Sisa ruang disk backup: {} — cukup untuk lebih dari 1000 backup lagi sebesar ini.", bytes(self.lang, free)),
            (Lang::En, None) if size > 0 => format!("\n💾 Space left on the backup disk: {} — room for more than 1000 more backups of this size.", bytes(self.lang, free)),
            (Lang::Id, Some(n)) => format!("\n💾 Sisa ruang disk backup: {} — cukup untuk sekitar {n} backup lagi sebesar ini.", bytes(self.lang, free)),
            (Lang::En, Some(n)) => format!("\n💾 Space left on the backup disk: {} — room for about {n} more backups of this size.", bytes(self.lang, free)),
            (Lang::Id, None) => format!("\n💾 Sisa ruang disk backup: {}.", bytes(self.lang, free)),
            (Lang::En, None) => format!("\n💾 Space left on the backup disk: {}.", bytes(self.lang, free)),
        }
    }

    /// A refused server disk, with its figures.
    pub fn space_text(&self, sp: &SpaceShortfall) -> String {
        let b = |n| bytes(self.lang, n);
        let left = sp.need.map(|n| sp.free.saturating_sub(n));
        match (self.lang, sp.need, left) {
            (Lang::Id, Some(need), Some(left)) => format!(
                "Ruang disk server mail tidak cukup: ekspor perlu sekitar {}, tersedia {} di <code>{}</code> (folder <code>{}</code>); sisanya {} akan di bawah batas aman {} (MAIL_SERVER_MIN_FREE={}). Backup tidak dijalankan agar server mail tetap berfungsi.",
                b(need), b(sp.free), esc(&sp.mount), esc(&sp.dir), b(left), b(sp.floor), esc(&sp.setting)
            ),
            (Lang::Id, _, _) => format!(
                "Ruang disk server mail tinggal {} di <code>{}</code> (folder <code>{}</code>), di bawah batas aman {} (MAIL_SERVER_MIN_FREE={}). Backup tidak dijalankan agar server mail tetap berfungsi.",
                b(sp.free), esc(&sp.mount), esc(&sp.dir), b(sp.floor), esc(&sp.setting)
            ),
            (Lang::En, Some(need), Some(left)) => format!(
                "Not enough room on the mail server: the export needs about {}, {} is free on <code>{}</code> (folder <code>{}</code>); the {} left would be below the safety floor of {} (MAIL_SERVER_MIN_FREE={}). Nothing was exported, so the mail service keeps running.",
                b(need), b(sp.free), esc(&sp.mount), esc(&sp.dir), b(left), b(sp.floor), esc(&sp.setting)
            ),
            (Lang::En, _, _) => format!(
                "The mail server has only {} free on <code>{}</code> (folder <code>{}</code>), below the safety floor of {} (MAIL_SERVER_MIN_FREE={}). Nothing was exported, so the mail service keeps running.",
                b(sp.free), esc(&sp.mount), esc(&sp.dir), b(sp.floor), esc(&sp.setting)
            ),
        }
    }

    /// The one-line summary kept in the daily log (plain text).
    pub fn summary(
        &self,
        order: &Order,
        outcome: Option<&RunOutcome>,
        name_of: &dyn Fn(UserId) -> String,
    ) -> String {
        match (order.status, outcome) {
            (OrderStatus::Cancelled, _) => {
                let by = order.closed_by.map(name_of).unwrap_or_default();
                match self.lang {
                    Lang::Id => format!("Dibatalkan oleh {by}."),
                    Lang::En => format!("Cancelled by {by}."),
                }
            }
            (_, Some(RunOutcome::Completed(r))) => {
                let ok = r
                    .mailboxes
                    .iter()
                    .filter(|m| m.status == MailboxStatus::Verified)
                    .count();
                let messages: u64 = r.mailboxes.iter().filter_map(|m| m.messages).sum();
                let (n, size, folder) = (
                    r.mailboxes.len(),
                    bytes(self.lang, r.bytes_total),
                    r.folders.local.display(),
                );
                let accounts = match &r.directory {
                    Some(d) if d.status == MailboxStatus::Verified => match self.lang {
                        Lang::Id => format!(", {} akun", d.counts.accounts),
                        Lang::En => format!(", {} accounts", d.counts.accounts),
                    },
                    _ => String::new(),
                };
                let mut line = match self.lang {
                    Lang::Id => format!(
                        "{ok}/{n} mailbox terverifikasi{accounts}, {messages} pesan, {size}; folder {folder}"
                    ),
                    Lang::En => format!(
                        "{ok}/{n} mailboxes verified{accounts}, {messages} messages, {size}; folder {folder}"
                    ),
                };
                if order.status == OrderStatus::Failed {
                    if let Some(reason) = self.failure_of(order, outcome) {
                        line = format!("{line}. {reason}");
                    }
                }
                line
            }
            (_, Some(RunOutcome::Stopped(e))) => {
                let detail = match &e.space {
                    Some(sp) => super::html_to_text(&self.space_text(sp)),
                    None => e.detail.clone(),
                };
                match self.lang {
                    Lang::Id => format!(
                        "Langkah {} gagal: {}. Pesan sistem: {detail}",
                        e.step.number(),
                        self.failure_kind(e.kind)
                    ),
                    Lang::En => format!(
                        "Step {} failed: {}. System message: {detail}",
                        e.step.number(),
                        self.failure_kind(e.kind)
                    ),
                }
            }
            (_, Some(RunOutcome::Abandoned(a))) => self.abandoned(a),
            (_, None) => order.reason.clone().unwrap_or_default(),
        }
    }
}
