//! The texts of a restore asked in the chat: the request with its buttons, the decision, the
//! progress, the report, and the failure — in the reader's language, the server's words only as
//! evidence.

use super::{bytes, esc, Catalog, Lang};
use crate::domain::{DecisionRefused, RestoreStatus};
use crate::engine::restore::{RestoreError, RestoreProgress, RestoreReport};
use crate::storage::RestoreRow;

impl Catalog {
    pub fn restore_usage(&self) -> String {
        self.pick(
            "⛔ Format perintah: /restore FOLDER AKUN [AKUN_TUJUAN], misalnya /restore 25-11-2026 ani@djki.go.id. Tanpa AKUN_TUJUAN, mailbox dipulihkan ke akun itu sendiri. Akun yang sudah tidak ada di server dibuat lagi dari direktori akun backup; /restore FOLDER semua memulihkan semua akun backup itu. Permintaan yang menunggu ditarik dengan /restore batal.",
            "⛔ Usage: /restore FOLDER ACCOUNT [TARGET_ACCOUNT], e.g. /restore 25-11-2026 ani@djki.go.id. Without a target, the mailbox is restored into the account itself. An account the server no longer has is made again from the backup's account directory; /restore FOLDER all restores every account of that backup. A waiting request is withdrawn with /restore cancel.",
        )
        .into()
    }

    pub fn restore_busy(&self) -> String {
        self.pick(
            "⛔ Masih ada permintaan pemulihan yang menunggu persetujuan, atau pemulihan atau latihan pemulihan yang sedang berjalan. Tunggu sampai selesai, atau tarik permintaan yang menunggu dengan /restore batal.",
            "⛔ Another restore is waiting for approval, or a restore or restore drill is running. Wait until it ends, or withdraw the waiting request with /restore cancel.",
        )
        .into()
    }

    pub fn restore_no_engine(&self) -> String {
        self.pick(
            "⛔ Mesin backup belum dikonfigurasi (MAIL_SSH_HOST), jadi pemulihan tidak dapat dijalankan.",
            "⛔ The backup engine is not configured (MAIL_SSH_HOST), so no restore can run.",
        )
        .into()
    }

    /// Why a restore cannot be done, with the raw detail as evidence.
    pub fn restore_error(&self, e: &RestoreError) -> String {
        let code = |s: &str| format!("<code>{}</code>", esc(s));
        match (self.lang, e) {
            (Lang::Id, RestoreError::FolderNotFound(f)) => {
                format!("folder backup {} tidak ditemukan di disk backup", code(f))
            }
            (Lang::En, RestoreError::FolderNotFound(f)) => {
                format!("no backup folder {} on the backup disk", code(f))
            }
            (
                Lang::Id,
                RestoreError::NotInBackup {
                    account,
                    folder,
                    available,
                },
            ) => format!(
                "akun {} tidak ada dalam backup {}; yang ada: {}",
                code(account),
                code(folder),
                esc(available)
            ),
            (
                Lang::En,
                RestoreError::NotInBackup {
                    account,
                    folder,
                    available,
                },
            ) => format!(
                "{} is not in backup {}; it holds: {}",
                code(account),
                code(folder),
                esc(available)
            ),
            (Lang::Id, RestoreError::NoIdentity { file }) => format!(
                "arsip {} terenkripsi, dan komputer admin tidak memegang kunci pembukanya: isi BACKUP_AGE_IDENTITY di .env dengan berkas kunci (identity) lalu mulai ulang bot, atau pulihkan di terminal dengan <code>mailbox-backup-bot restore … --identity BERKAS</code>",
                code(file)
            ),
            (Lang::En, RestoreError::NoIdentity { file }) => format!(
                "the archive {} is encrypted and the admin computer holds no key to open it: set BACKUP_AGE_IDENTITY in .env to the identity file and restart the bot, or restore at the terminal with <code>mailbox-backup-bot restore … --identity FILE</code>",
                code(file)
            ),
            (Lang::Id, RestoreError::Identity { file, detail }) => format!(
                "arsip terenkripsi {} tidak dapat dibuka dengan kunci yang diberikan (kunci salah?): {}",
                code(file),
                code(detail)
            ),
            (Lang::En, RestoreError::Identity { file, detail }) => format!(
                "the encrypted archive {} cannot be opened with the identity given (the wrong key?): {}",
                code(file),
                code(detail)
            ),
            (Lang::Id, RestoreError::Corrupt { file }) => format!(
                "arsip {} tidak cocok dengan SHA-256 yang dicatat saat salinannya diverifikasi (rusak atau diganti?)",
                code(file)
            ),
            (Lang::En, RestoreError::Corrupt { file }) => format!(
                "the archive {} does not match the SHA-256 recorded when its copy was verified (damaged or replaced?)",
                code(file)
            ),
            (Lang::Id, RestoreError::Pieces(d)) => format!(
                "kotak surat tidak dapat disusun dari potongan-potongan backup-nya: {}",
                code(d)
            ),
            (Lang::En, RestoreError::Pieces(d)) => format!(
                "the mailbox cannot be assembled from the pieces of its backup: {}",
                code(d)
            ),
            (Lang::Id, RestoreError::Unreadable(d)) => {
                format!("folder backup tidak dapat dibaca: {}", code(d))
            }
            (Lang::En, RestoreError::Unreadable(d)) => {
                format!("the backup folder cannot be read: {}", code(d))
            }
            (Lang::Id, RestoreError::NotAFolderName(f)) => format!(
                "{} bukan nama folder bertanggal di disk backup; tulis namanya saja, misalnya 25-11-2026",
                code(f)
            ),
            (Lang::En, RestoreError::NotAFolderName(f)) => format!(
                "{} is not the name of a dated folder on the backup disk; type the name only, e.g. 25-11-2026",
                code(f)
            ),
            (Lang::Id, RestoreError::NotMadeByTheBot(f)) => format!(
                "folder {} bukan folder backup buatan bot (tautan simbolik, atau tanpa penanda bot)",
                code(f)
            ),
            (Lang::En, RestoreError::NotMadeByTheBot(f)) => format!(
                "the folder {} is not a backup folder made by the bot (a symlink, or without the bot's marker)",
                code(f)
            ),
            (Lang::Id, RestoreError::NotVerified { file }) => format!(
                "arsip {} tidak tercatat sebagai salinan yang terverifikasi",
                code(file)
            ),
            (Lang::En, RestoreError::NotVerified { file }) => format!(
                "the archive {} is not recorded as a verified copy",
                code(file)
            ),
            (Lang::Id, RestoreError::NotRecorded { folder, account }) => format!(
                "tidak ada perintah backup yang mencatat arsip terverifikasi {} di folder {}",
                code(account),
                code(folder)
            ),
            (Lang::En, RestoreError::NotRecorded { folder, account }) => format!(
                "no backup order recorded a verified archive of {} in folder {}",
                code(account),
                code(folder)
            ),
            (Lang::Id, RestoreError::TargetMissing(a)) => {
                format!("akun tujuan {} tidak ada di server mail", code(a))
            }
            (Lang::En, RestoreError::TargetMissing(a)) => format!(
                "the target account {} does not exist on the mail server",
                code(a)
            ),
            (Lang::Id, RestoreError::Unsupported(k)) => {
                format!("pemulihan belum tersedia untuk jenis backup {}", code(k))
            }
            (Lang::En, RestoreError::Unsupported(k)) => {
                format!("restore is not available for the {} backup kind", code(k))
            }
            (Lang::Id, RestoreError::ServerNoSpace(d)) => {
                format!("ruang disk server mail tidak cukup: {}", code(d))
            }
            (Lang::En, RestoreError::ServerNoSpace(d)) => {
                format!("not enough space on the mail server: {}", code(d))
            }
            (Lang::Id, RestoreError::Ssh(d)) => {
                format!("tidak dapat masuk ke server mail: {}", code(d))
            }
            (Lang::En, RestoreError::Ssh(d)) => {
                format!("cannot log in to the mail server: {}", code(d))
            }
            (Lang::Id, RestoreError::Server(d)) => {
                format!("perintah di server mail gagal: {}", code(d))
            }
            (Lang::En, RestoreError::Server(d)) => {
                format!("a command on the mail server failed: {}", code(d))
            }
            (Lang::Id, RestoreError::NoDirectory(f)) => format!(
                "backup {} tidak berisi direktori akun (dibuat sebelum bot menyimpannya, atau jenis servernya tidak punya); akun harus dibuat manual dulu",
                code(f)
            ),
            (Lang::En, RestoreError::NoDirectory(f)) => format!(
                "backup {} holds no account directory (made before the bot kept one, or a kind of server without one); create the account by hand first",
                code(f)
            ),
            (Lang::Id, RestoreError::NotInDirectory { account, folder }) => format!(
                "akun {} tidak ada di direktori akun backup {}",
                code(account),
                code(folder)
            ),
            (Lang::En, RestoreError::NotInDirectory { account, folder }) => format!(
                "{} is not in the account directory of backup {}",
                code(account),
                code(folder)
            ),
            (Lang::Id, RestoreError::SourceGone(p)) => format!(
                "konfigurasi server mail tidak lagi memakai berkas akun {} tempat akun itu berasal: atur Dovecot seperti semula dulu",
                code(p)
            ),
            (Lang::En, RestoreError::SourceGone(p)) => format!(
                "the mail server's configuration no longer names the account file {} the account came from: configure Dovecot as before first",
                code(p)
            ),
            (Lang::Id, RestoreError::NoDrillAccount) => "belum ada akun uji untuk latihan pemulihan: isi RESTORE_DRILL_ACCOUNT di .env dengan akun Zimbra yang dibuat khusus untuk itu".into(),
            (Lang::En, RestoreError::NoDrillAccount) => "no scratch account for the restore drill: set RESTORE_DRILL_ACCOUNT in .env to a Zimbra account made for it alone".into(),
            (Lang::Id, RestoreError::ScratchNotEmpty(a)) => format!(
                "akun uji {} berisi surat (atau sama dengan akun yang diuji): latihan hanya menulis ke akun kosong yang dibuat khusus untuk itu",
                code(a)
            ),
            (Lang::En, RestoreError::ScratchNotEmpty(a)) => format!(
                "the scratch account {} holds mail (or is the account drilled): a drill writes only into an empty account made for it",
                code(a)
            ),
        }
    }

    pub fn restore_refused_now(&self, e: &RestoreError) -> String {
        format!(
            "⛔ {}: {}.",
            self.pick(
                "Pemulihan tidak dapat diminta",
                "The restore cannot be asked for"
            ),
            self.restore_error(e)
        )
    }

    /// The request the approver decides on: what is restored from which backup (its order,
    /// date, who ran it, the archive's size and messages), a plain warning when one person's
    /// mail goes into another's mailbox, and until when it waits.
    pub fn restore_asked(
        &self,
        r: &RestoreRow,
        kasi: &str,
        kasubdit: &str,
        ran_by: Option<&str>,
        making: &[String],
    ) -> String {
        let code = |s: &str| format!("<code>{}</code>", esc(s));
        // An account the server no longer has, made again first: said plainly, with what else.
        let creates = r.creates.as_ref().map(|_| {
            let also = if making.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = making.iter().map(|m| esc(m)).collect();
                format!(" ({})", list.join(", "))
            };
            match self.lang {
                Lang::Id => format!("\n🆕 Akun {} <b>tidak ada</b> di server mail: akun itu akan <b>dibuat</b> dari direktori akun backup ini, dengan sandi lamanya{also}, lalu suratnya dipulihkan.", code(&r.account)),
                Lang::En => format!("\n🆕 Account {} <b>does not exist</b> on the mail server: it will be <b>created</b> from this backup's account directory, with its old password{also}, then its mail restored.", code(&r.account)),
            }
        }).unwrap_or_default();
        let facts = r.backup.as_ref().map(|b| {
            let when = self.ordered_on(b);
            let who = ran_by.unwrap_or("-");
            let size = bytes(self.lang, b.bytes);
            let messages = b
                .messages
                .map(|n| n.to_string())
                .unwrap_or_else(|| "?".into());
            match self.lang {
                Lang::Id => format!("\nBackup: perintah #{} tanggal {when}, dijalankan oleh {who}; arsip mailbox {size}, {messages} pesan, terverifikasi.", b.order),
                Lang::En => format!("\nBackup: order #{} of {when}, run by {who}; mailbox archive {size}, {messages} messages, verified.", b.order),
            }
        }).unwrap_or_default();
        let warning = if r.into == r.account {
            String::new()
        } else {
            match self.lang {
                Lang::Id => format!("\n⚠️ <b>Perhatian:</b> surat milik {} akan dimasukkan ke mailbox akun lain, {}. Pemilik {} akan dapat membacanya.", code(&r.account), code(&r.into), code(&r.into)),
                Lang::En => format!("\n⚠️ <b>Warning:</b> the mail of {} goes into another account's mailbox, {}. The owner of {} will be able to read it.", code(&r.account), code(&r.into), code(&r.into)),
            }
        };
        let until = r
            .expires_at
            .map(|t| match self.lang {
                Lang::Id => format!(
                    " Permintaan berlaku sampai {} {}; {} dapat menariknya dengan /restore batal.",
                    self.date(t.with_timezone(&self.tz).date_naive()),
                    self.time(t),
                    kasi
                ),
                Lang::En => format!(
                    " The request stands until {} {}; {} can withdraw it with /restore cancel.",
                    self.date(t.with_timezone(&self.tz).date_naive()),
                    self.time(t),
                    kasi
                ),
            })
            .unwrap_or_default();
        if r.account == crate::domain::EVERY_ACCOUNT {
            return self.restore_all_asked(r, kasi, kasubdit, ran_by, making, &until);
        }
        let into = code(&r.into);
        match self.lang {
            Lang::Id => format!("♻️ <b>Permintaan pemulihan #{}</b>\n{kasi} meminta pemulihan mailbox {} dari backup {} ke akun {into}.{facts}{creates}{warning}\nPemulihan hanya menambahkan pesan yang belum ada; tidak ada yang dihapus.\n{kasubdit}, mohon setujui atau tolak.{until}", r.id, code(&r.account), code(&r.folder)),
            Lang::En => format!("♻️ <b>Restore request #{}</b>\n{kasi} asks to restore mailbox {} from backup {} into account {into}.{facts}{creates}{warning}\nA restore only adds messages that are missing; nothing is deleted.\n{kasubdit}, please approve or refuse.{until}", r.id, code(&r.account), code(&r.folder)),
        }
    }

    /// The day the backup was ordered, or "-".
    fn ordered_on(&self, b: &crate::storage::BackupFacts) -> String {
        b.ordered_at
            .map(|t| self.date(t.with_timezone(&self.tz).date_naive()))
            .unwrap_or_else(|| "-".into())
    }

    /// A request to rebuild a whole backup folder: what it holds (`holds`), and that what exists
    /// is left as it is.
    fn restore_all_asked(
        &self,
        r: &RestoreRow,
        kasi: &str,
        kasubdit: &str,
        ran_by: Option<&str>,
        holds: &[String],
        until: &str,
    ) -> String {
        let folder = format!("<code>{}</code>", esc(&r.folder));
        let holds = holds.iter().map(|h| esc(h)).collect::<Vec<_>>().join(", ");
        let facts = r.backup.as_ref().map(|b| {
            let when = self.ordered_on(b);
            let who = ran_by.unwrap_or("-");
            match self.lang {
                Lang::Id => format!("\nBackup: perintah #{} tanggal {when}, dijalankan oleh {who}; direktori akun terverifikasi.", b.order),
                Lang::En => format!("\nBackup: order #{} of {when}, run by {who}; account directory verified.", b.order),
            }
        }).unwrap_or_default();
        match self.lang {
            Lang::Id => format!("♻️ <b>Permintaan pemulihan #{}</b>\n{kasi} meminta pemulihan <b>SEMUA akun</b> dari backup {folder} ({holds}).{facts}\n🆕 Akun yang tidak ada di server mail akan <b>dibuat</b> dari direktori akun backup ini, dengan sandi lamanya; akun yang sudah ada tidak diubah. Lalu surat setiap akun dipulihkan: hanya pesan yang belum ada yang ditambahkan, tidak ada yang dihapus.\n{kasubdit}, mohon setujui atau tolak.{until}", r.id),
            Lang::En => format!("♻️ <b>Restore request #{}</b>\n{kasi} asks to restore <b>EVERY account</b> from backup {folder} ({holds}).{facts}\n🆕 Accounts the mail server does not have will be <b>created</b> from this backup's account directory, with their old passwords; accounts that exist are left as they are. Then each account's mail is restored: only missing messages are added, nothing is deleted.\n{kasubdit}, please approve or refuse.{until}", r.id),
        }
    }

    /// The end of a whole folder's rebuild: accounts made, left, mail restored, and what failed.
    pub fn restore_all_done(
        &self,
        id: i64,
        folder: &str,
        s: &crate::engine::rebuild::RebuildSummary,
        kasi: &str,
    ) -> String {
        let folder = format!("<code>{}</code>", esc(folder));
        let mut out = match (self.lang, s.complete()) {
            (Lang::Id, true) => format!("♻️ <b>Pemulihan #{id} selesai</b> — {kasi}\nSemua {} akun backup {folder} ada di server: {} dibuat lagi, {} sudah ada (tidak diubah); {} mailbox dipulihkan, {} pesan ditambahkan, tidak ada yang dihapus.", s.accounts, s.created.len(), s.existed, s.mailboxes, s.messages_added),
            (Lang::En, true) => format!("♻️ <b>Restore #{id} done</b> — {kasi}\nAll {} accounts of backup {folder} are on the server: {} created again, {} already there (left as they were); {} mailboxes restored, {} messages added, nothing deleted.", s.accounts, s.created.len(), s.existed, s.mailboxes, s.messages_added),
            (Lang::Id, false) => format!("❌ <b>Pemulihan #{id} TIDAK LENGKAP</b> — {kasi}\nDari {} akun backup {folder}: {} dibuat lagi, {} sudah ada; {} mailbox dipulihkan, {} pesan ditambahkan. Yang gagal di bawah; menjalankan pemulihan lagi tidak menggandakan apa pun.", s.accounts, s.created.len(), s.existed, s.mailboxes, s.messages_added),
            (Lang::En, false) => format!("❌ <b>Restore #{id} INCOMPLETE</b> — {kasi}\nOf {} accounts of backup {folder}: {} created again, {} already there; {} mailboxes restored, {} messages added. What failed is below; running the restore again duplicates nothing.", s.accounts, s.created.len(), s.existed, s.mailboxes, s.messages_added),
        };
        let made = crate::engine::rebuild::count_by_kind(&s.also);
        if !made.is_empty() || s.filters > 0 {
            let mut parts: Vec<String> = made
                .iter()
                .map(|(kind, n)| format!("{n} × {}", self.directory_kind(kind)))
                .collect();
            if s.filters > 0 {
                parts.push(format!(
                    "{} × {}",
                    s.filters,
                    self.pick("filter surat", "mail filter")
                ));
            }
            out.push_str(&format!(
                "\n🧩 {} {}.",
                self.pick("Juga ada lagi di server:", "Also on the server again:"),
                parts.join(", ")
            ));
        }
        if !s.notes.is_empty() {
            out.push_str(&format!(
                "\n📝 {}",
                self.pick(
                    "Disesuaikan untuk server baru (ID server lama tidak dipakai):",
                    "Fitted to the new server (the old server's ids are not used):"
                )
            ));
            for note in s.notes.iter().take(5) {
                out.push_str(&format!(
                    "\n• <code>{}</code>",
                    esc(&note.chars().take(200).collect::<String>())
                ));
            }
        }
        for (what, why) in s.failed.iter().take(10) {
            out.push_str(&format!(
                "\n❌ <code>{}</code> — <code>{}</code>",
                esc(what),
                esc(&why.chars().take(200).collect::<String>())
            ));
        }
        out
    }

    /// A kind of directory object ("class of service") in the reader's language.
    fn directory_kind(&self, kind: &str) -> String {
        let id = match kind {
            "domain" => "domain",
            "class of service" => "kelas layanan (COS)",
            "default class of service of domain" => "COS bawaan domain",
            "list" => "milis",
            "list alias" => "alamat milis",
            "alias" => "alias",
            "signature" => "tanda tangan",
            "identity" => "identitas",
            "member of list" => "keanggotaan milis",
            other => other,
        };
        self.pick(id, kind).to_owned()
    }

    pub fn restore_undecidable(&self) -> String {
        self.pick(
            "⛔ Tidak ada Kasubdit selain Anda yang dapat menyetujui pemulihan ini, jadi permintaan tidak dibuat. Minta admin bot menambahkan Kasubdit lain ke KASUBDIT_IDS, atau minta Kasi lain yang mengajukan.",
            "⛔ No Kasubdit other than you can approve this restore, so no request was made. Ask the bot's admin to add another Kasubdit to KASUBDIT_IDS, or have another Kasi ask.",
        )
        .into()
    }

    pub fn restore_nothing_to_withdraw(&self) -> String {
        self.pick(
            "⛔ Tidak ada permintaan pemulihan yang menunggu persetujuan.",
            "⛔ No restore request is waiting for approval.",
        )
        .into()
    }

    pub fn restore_withdrawn(&self, r: &RestoreRow, by: &str) -> String {
        match self.lang {
            Lang::Id => format!(
                "↩️ {by} menarik permintaan pemulihan #{}. Tidak ada yang diubah.",
                r.id
            ),
            Lang::En => format!(
                "↩️ {by} withdrew restore request #{}. Nothing was changed.",
                r.id
            ),
        }
    }

    pub fn restore_expired(&self, r: &RestoreRow, kasi: &str) -> String {
        match self.lang {
            Lang::Id => format!("⌛ Permintaan pemulihan #{} berakhir karena tidak diputuskan tepat waktu. Tidak ada yang diubah. {kasi}, ajukan lagi dengan /restore bila masih diperlukan.", r.id),
            Lang::En => format!("⌛ Restore request #{} expired: nobody decided in time. Nothing was changed. {kasi}, ask again with /restore if it is still needed.", r.id),
        }
    }

    pub fn restore_buttons(&self) -> (String, String) {
        (
            self.pick("✅ Setujui", "✅ Approve").into(),
            self.pick("🚫 Tolak", "🚫 Refuse").into(),
        )
    }

    /// The answer to a press that is not taken.
    pub fn restore_decision_refused(&self, why: DecisionRefused) -> String {
        match why {
            DecisionRefused::NotKasubdit => self.pick(
                "Hanya Kasubdit yang dapat menyetujui atau menolak pemulihan.",
                "Only the Kasubdit may approve or refuse a restore.",
            ),
            DecisionRefused::OwnRequest => self.pick(
                "Permintaan Anda sendiri harus disetujui oleh orang lain.",
                "Your own request must be approved by someone else.",
            ),
            DecisionRefused::NotWaiting(RestoreStatus::Withdrawn) => self.pick(
                "Permintaan ini sudah ditarik.",
                "This request was withdrawn.",
            ),
            DecisionRefused::NotWaiting(RestoreStatus::Expired) => self.pick(
                "Permintaan ini sudah berakhir (kedaluwarsa).",
                "This request has expired.",
            ),
            DecisionRefused::NotWaiting(_) => self.pick(
                "Permintaan ini sudah diputuskan.",
                "This request has already been decided.",
            ),
            DecisionRefused::NotYours => self.pick(
                "Hanya yang mengajukan atau Kasubdit yang dapat menarik permintaan pemulihan.",
                "Only the asker or a Kasubdit may withdraw a restore request.",
            ),
        }
        .into()
    }

    pub fn restore_decided_answer(&self, approved: bool) -> String {
        if approved {
            self.pick(
                "Disetujui; pemulihan dimulai.",
                "Approved; the restore starts.",
            )
        } else {
            self.pick("Ditolak.", "Refused.")
        }
        .into()
    }

    pub fn restore_approved(&self, r: &RestoreRow, by: &str) -> String {
        match self.lang {
            Lang::Id => format!("✅ {by} menyetujui pemulihan #{}. Bot mulai memulihkan <code>{}</code> ke <code>{}</code>.", r.id, esc(&r.account), esc(&r.into)),
            Lang::En => format!("✅ {by} approved restore #{}. The bot starts restoring <code>{}</code> into <code>{}</code>.", r.id, esc(&r.account), esc(&r.into)),
        }
    }

    pub fn restore_refused(&self, r: &RestoreRow, by: &str) -> String {
        match self.lang {
            Lang::Id => format!(
                "🚫 {by} menolak permintaan pemulihan #{}. Tidak ada yang diubah.",
                r.id
            ),
            Lang::En => format!(
                "🚫 {by} refused restore request #{}. Nothing was changed.",
                r.id
            ),
        }
    }

    pub fn restore_progress(&self, id: i64, p: &RestoreProgress) -> String {
        match (self.lang, p) {
            (Lang::Id, RestoreProgress::Uploading { sent, total }) => format!(
                "⏳ Pemulihan #{id}: mengunggah arsip ke server mail, {} dari {}",
                bytes(self.lang, *sent),
                bytes(self.lang, *total)
            ),
            (Lang::En, RestoreProgress::Uploading { sent, total }) => format!(
                "⏳ Restore #{id}: uploading the archive to the mail server, {} of {}",
                bytes(self.lang, *sent),
                bytes(self.lang, *total)
            ),
            (
                Lang::Id,
                RestoreProgress::Rebuilding {
                    account,
                    done,
                    total,
                },
            ) => format!(
                "⏳ Pemulihan #{id}: akun {} dari {total}: <code>{}</code>",
                done + 1,
                esc(account)
            ),
            (
                Lang::En,
                RestoreProgress::Rebuilding {
                    account,
                    done,
                    total,
                },
            ) => format!(
                "⏳ Restore #{id}: account {} of {total}: <code>{}</code>",
                done + 1,
                esc(account)
            ),
            (
                Lang::Id,
                RestoreProgress::Importing {
                    folder,
                    done,
                    total,
                },
            ) => format!(
                "⏳ Pemulihan #{id}: memulihkan folder {} dari {total}: <code>{}</code>",
                done + 1,
                esc(folder)
            ),
            (
                Lang::En,
                RestoreProgress::Importing {
                    folder,
                    done,
                    total,
                },
            ) => format!(
                "⏳ Restore #{id}: restoring folder {} of {total}: <code>{}</code>",
                done + 1,
                esc(folder)
            ),
            (Lang::Id, RestoreProgress::Checking) => {
                format!("⏳ Pemulihan #{id}: menghitung hasil per folder")
            }
            (Lang::En, RestoreProgress::Checking) => {
                format!("⏳ Restore #{id}: counting the result per folder")
            }
        }
    }

    /// The progress message's last words.
    pub fn restore_progress_end(&self, id: i64, ok: bool) -> String {
        match (self.lang, ok) {
            (Lang::Id, true) => {
                format!("✅ Pemulihan #{id} selesai dijalankan. Lihat laporan di bawah.")
            }
            (Lang::En, true) => format!("✅ Restore #{id} ran to the end. See the report below."),
            (Lang::Id, false) => {
                format!("❌ Pemulihan #{id} GAGAL atau tidak lengkap. Lihat laporan di bawah.")
            }
            (Lang::En, false) => {
                format!("❌ Restore #{id} FAILED or is incomplete. See the report below.")
            }
        }
    }

    /// The report of a restore that ran: the count per folder and whether all is there.
    pub fn restore_done(&self, id: i64, r: &RestoreReport, kasi: &str, created: bool) -> String {
        let mut out = match (self.lang, r.complete()) {
            (Lang::Id, true) => format!("♻️ <b>Pemulihan #{id} selesai</b> — {kasi}\nMailbox <code>{}</code> dari backup <code>{}</code> ({}) ke <code>{}</code>: semua {} pesan backup ada di akun; {} ditambahkan sekarang, tidak ada yang dihapus.", esc(&r.account), esc(&r.folder), bytes(self.lang, r.bytes), esc(&r.into), r.in_backup(), r.restored()),
            (Lang::En, true) => format!("♻️ <b>Restore #{id} done</b> — {kasi}\nMailbox <code>{}</code> from backup <code>{}</code> ({}) into <code>{}</code>: all {} messages of the backup are in the account; {} added now, nothing deleted.", esc(&r.account), esc(&r.folder), bytes(self.lang, r.bytes), esc(&r.into), r.in_backup(), r.restored()),
            (Lang::Id, false) => format!("❌ <b>Pemulihan #{id} TIDAK LENGKAP</b> — {kasi}\nMailbox <code>{}</code> dari backup <code>{}</code> ke <code>{}</code>: ada pesan backup yang tidak ada di akun setelah pemulihan.", esc(&r.account), esc(&r.folder), esc(&r.into)),
            (Lang::En, false) => format!("❌ <b>Restore #{id} INCOMPLETE</b> — {kasi}\nMailbox <code>{}</code> from backup <code>{}</code> into <code>{}</code>: some messages of the backup are not in the account after the restore.", esc(&r.account), esc(&r.folder), esc(&r.into)),
        };
        if let Some((found, recorded)) = r.short_of() {
            out.push_str(&match self.lang {
                Lang::Id => format!("\n❌ Saat diverifikasi, backup mencatat <b>{recorded}</b> pesan di arsip <code>{}</code>; pemulihan hanya menemukan <b>{found}</b>. Hasil ini tidak dianggap berhasil.", esc(&r.file)),
                Lang::En => format!("\n❌ When it was verified, the backup counted <b>{recorded}</b> messages in <code>{}</code>; the restore found only <b>{found}</b>. This is not a success.", esc(&r.file)),
            });
        } else if !r.complete() {
            let missing = r.missing_after();
            out.push_str(&match self.lang {
                Lang::Id => format!(
                    "\n❌ {missing} dari {} pesan backup tidak ada di akun.",
                    r.in_backup()
                ),
                Lang::En => format!(
                    "\n❌ {missing} of the backup's {} messages are not in the account.",
                    r.in_backup()
                ),
            });
        }
        if created {
            out.push_str(&match self.lang {
                Lang::Id => format!("\n🆕 Akun <code>{}</code> dibuat lagi dari direktori akun backup, dengan sandi lamanya.", esc(&r.account)),
                Lang::En => format!("\n🆕 Account <code>{}</code> was created again from the backup's account directory, with its old password.", esc(&r.account)),
            });
        }
        out.push_str(&format!(
            "\n<code>{}</code>",
            self.pick(
                "folder · di backup · sudah ada · ditambah · ada sekarang",
                "folder · in backup · had · added · present"
            )
        ));
        for f in &r.folders {
            out.push_str(&format!(
                "\n{} {} · {} · {} · {} · {}",
                if f.present_after >= f.in_backup {
                    "✅"
                } else {
                    "❌"
                },
                esc(&f.folder),
                f.in_backup,
                f.already_there,
                f.restored,
                f.present_after
            ));
        }
        out
    }

    pub fn restore_failed(&self, id: i64, e: &RestoreError, kasi: &str) -> String {
        match self.lang {
            Lang::Id => format!("❌ <b>Pemulihan #{id} GAGAL</b> — {kasi}\n{}. Pesan yang sudah ditambahkan tetap ada; menjalankan pemulihan lagi tidak menggandakan pesan.", self.restore_error(e)),
            Lang::En => format!("❌ <b>Restore #{id} FAILED</b> — {kasi}\n{}. Messages already added stay; running the restore again duplicates nothing.", self.restore_error(e)),
        }
    }

    pub fn restore_interrupted(&self) -> RestoreError {
        RestoreError::Server(
            self.pick(
                "bot dimulai ulang saat pemulihan berjalan; jalankan /restore lagi",
                "the bot restarted during the restore; run /restore again",
            )
            .into(),
        )
    }

    /// A restore in the daily log.
    pub fn restore_log_entry(
        &self,
        r: &RestoreRow,
        name_of: &dyn Fn(crate::domain::UserId) -> String,
    ) -> String {
        let outcome = match r.status {
            RestoreStatus::Done => self.pick("selesai", "done"),
            _ => self.pick("gagal", "failed"),
        };
        let by = r.decided_by.map(name_of).unwrap_or_default();
        if r.account == crate::domain::EVERY_ACCOUNT {
            return match self.lang {
                Lang::Id => format!("<b>Pemulihan #{}</b> — {outcome}: semua akun dari <code>{}</code>; diminta {}, disetujui {}{}", r.id, esc(&r.folder), name_of(r.asked_by), by, r.ended_at.map(|t| format!(", selesai {}", self.time(t))).unwrap_or_default()),
                Lang::En => format!("<b>Restore #{}</b> — {outcome}: every account from <code>{}</code>; asked by {}, approved by {}{}", r.id, esc(&r.folder), name_of(r.asked_by), by, r.ended_at.map(|t| format!(", ended {}", self.time(t))).unwrap_or_default()),
            };
        }
        let entry = match self.lang {
            Lang::Id => format!("<b>Pemulihan #{}</b> — {outcome}: <code>{}</code> dari <code>{}</code> ke <code>{}</code>; diminta {}, disetujui {}{}", r.id, esc(&r.account), esc(&r.folder), esc(&r.into), name_of(r.asked_by), by, r.ended_at.map(|t| format!(", selesai {}", self.time(t))).unwrap_or_default()),
            Lang::En => format!("<b>Restore #{}</b> — {outcome}: <code>{}</code> from <code>{}</code> into <code>{}</code>; asked by {}, approved by {}{}", r.id, esc(&r.account), esc(&r.folder), esc(&r.into), name_of(r.asked_by), by, r.ended_at.map(|t| format!(", ended {}", self.time(t))).unwrap_or_default()),
        };
        entry + &self.restore_failure_reason(r)
    }

    /// Why a failed restore failed, for its log entry: short of the backup's record (both
    /// figures, in the reader's words), or the raw error as evidence.
    fn restore_failure_reason(&self, r: &RestoreRow) -> String {
        if r.status != RestoreStatus::Failed {
            return String::new();
        }
        let report: Option<RestoreReport> = r
            .report
            .as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        match (report.as_ref().and_then(RestoreReport::short_of), &r.error) {
            (Some((found, recorded)), _) => match self.lang {
                Lang::Id => format!(
                    "\n❌ backup mencatat {recorded} pesan, pemulihan hanya menemukan {found}"
                ),
                Lang::En => format!(
                    "\n❌ the backup recorded {recorded} messages, the restore found only {found}"
                ),
            },
            (None, Some(e)) => format!(
                "\n<code>{}</code>",
                esc(&e.chars().take(300).collect::<String>())
            ),
            (None, None) => String::new(),
        }
    }
}
