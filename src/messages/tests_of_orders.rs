//! The SOP table, the report, the progress end and the summary of completed, failed and
//! cancelled orders, in both languages, as the chat shows them.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};

use super::*;
use crate::domain::{place_order, Event, OrderId, Roster, UserId};
use crate::engine::{EngineError, ErrorKind};
use crate::run_outcome::RunOutcome;

const KASUBDIT: UserId = UserId(10);
const KASI: UserId = UserId(20);
const JFU: UserId = UserId(30);

fn roster() -> Roster {
    Roster {
        kasubdit: [KASUBDIT].into(),
        kasi: [KASI].into(),
        jfu: [JFU].into(),
    }
}

fn name(u: UserId) -> String {
    match u {
        KASUBDIT => "Pak Harun".into(),
        KASI => "Bu Sari".into(),
        JFU => "Budi".into(),
        _ => u.to_string(),
    }
}

/// 24-11-2026 08:00:00 WIB plus `m` minutes.
fn at(m: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 1, 0, 0)
        .single()
        .expect("valid")
        + TimeDelta::minutes(m)
}

fn apply(o: &Order, e: Event, m: i64) -> Order {
    o.apply(&roster(), e, at(m)).expect("allowed").0
}

fn ordered() -> Order {
    let (new, _) = place_order(&roster(), KASUBDIT, None, None, at(0)).expect("order");
    Order::from_new(OrderId(1), new)
}

fn started() -> Order {
    let o = apply(&ordered(), Event::Direct { by: KASI, jfu: JFU }, 2);
    apply(&o, Event::Start { by: JFU }, 3)
}

fn machine(o: &Order, step: SopStep, from: i64, to: i64) -> Order {
    let o = apply(o, Event::StepStarted { step, at: at(from) }, from);
    apply(&o, Event::StepFinished { step, at: at(to) }, to)
}

fn completed() -> Order {
    let mut o = machine(&started(), SopStep::CreateFolder, 3, 3);
    o = machine(&o, SopStep::RemoteLogin, 3, 4);
    o = machine(&o, SopStep::ServerBackup, 4, 30);
    o = machine(&o, SopStep::CopyAndReport, 30, 200);
    o = apply(&o, Event::Reported, 200);
    o = apply(&o, Event::Receive { by: KASI }, 203);
    apply(&o, Event::Log, 203)
}

fn failed_login() -> Order {
    let o = machine(&started(), SopStep::CreateFolder, 3, 3);
    let o = apply(
        &o,
        Event::StepStarted {
            step: SopStep::RemoteLogin,
            at: at(3),
        },
        3,
    );
    let c = Catalog::new(Lang::Id, chrono_tz::Asia::Jakarta);
    apply(
        &o,
        Event::Failed {
            step: Some(SopStep::RemoteLogin),
            reason: c.failure_reason(&login_refused()),
        },
        4,
    )
}

fn login_refused() -> EngineError {
    EngineError {
        step: SopStep::RemoteLogin,
        kind: ErrorKind::KeyRefused,
        detail: "Permission denied (publickey).".into(),
        folders: None,
        space: None,
    }
}

fn cancelled_before_direction() -> Order {
    apply(
        &ordered(),
        Event::Cancel {
            by: KASUBDIT,
            reason: Some("salah kirim".into()),
        },
        1,
    )
}

fn id() -> Catalog {
    Catalog::new(Lang::Id, chrono_tz::Asia::Jakarta)
}

fn en() -> Catalog {
    Catalog::new(Lang::En, chrono_tz::Asia::Jakarta)
}

fn table(c: &Catalog, o: &Order, now: i64) -> Vec<String> {
    c.sop_table(o, o.reason.as_deref(), at(now), &name)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_table_of_a_completed_order_judges_every_step() {
    let t = table(&id(), &completed(), 300);
    assert_eq!(t.len(), 8, "{t:#?}");
    assert_eq!(
        t[0],
        "✅ 1. Memerintahkan backup email DJKI — Pak Harun, 08:00:00 WIB, 0 detik (standar 5 menit: sesuai)"
    );
    assert_eq!(
        t[5],
        "⚠️ 6. Menyalin backup dan melapor ke Kasi — Budi, 08:30:00 WIB, 2 jam 50 menit (standar 2 jam: melebihi)"
    );
    assert_eq!(
        t[7],
        "✅ 8. Mencatat di log kegiatan harian — bot, 11:23:00 WIB, 0 detik (standar 10 menit: sesuai)"
    );
    let t = table(&en(), &completed(), 300);
    assert_eq!(
        t[1],
        "✅ 2. Direct a JFU — Bu Sari, 08:00:00 WIB, 2 min (standard 5 min: within)"
    );
}

#[test]
fn the_table_of_a_failed_order_shows_the_failure_and_nothing_after_it() {
    let t = table(&id(), &failed_login(), 300);
    assert_eq!(t.len(), 4, "steps 5-8 never happened: {t:#?}");
    assert_eq!(
        t[3],
        "❌ 4. Remote login ke server email — Budi, 08:03:00 WIB, gagal setelah 1 menit: kunci SSH ditolak server"
    );
    assert!(t.iter().all(|l| !l.contains("baku")), "{t:#?}");
    let o = failed_login();
    let t = table(&en(), &o, 300);
    assert!(
        t[3].starts_with(
            "❌ 4. Remote login to the mail server — Budi, 08:03:00 WIB, failed after 1 min: "
        ),
        "{t:#?}"
    );
    assert!(!t[3].contains("within") && !t[3].contains("over"));
}

#[test]
fn the_table_of_a_cancelled_order_shows_no_direction_that_nobody_gave() {
    let t = table(&id(), &cancelled_before_direction(), 300);
    assert_eq!(
        t,
        vec![
            "✅ 1. Memerintahkan backup email DJKI — Pak Harun, 08:00:00 WIB, 0 detik (standar 5 menit: sesuai)",
            "➖ 2. Mendisposisikan kepada JFU — tidak dilaksanakan (perintah dibatalkan)",
        ]
    );
    let t = table(&en(), &cancelled_before_direction(), 300);
    assert_eq!(
        t[1],
        "➖ 2. Direct a JFU — did not happen (order cancelled)"
    );
    // A run cancelled in step 5: stopped, not done.
    let o = machine(&started(), SopStep::CreateFolder, 3, 3);
    let o = machine(&o, SopStep::RemoteLogin, 3, 4);
    let o = apply(
        &o,
        Event::StepStarted {
            step: SopStep::ServerBackup,
            at: at(4),
        },
        4,
    );
    let o = apply(
        &o,
        Event::Cancel {
            by: KASI,
            reason: None,
        },
        9,
    );
    let t = table(&id(), &o, 300);
    assert_eq!(
        t[4],
        "⏹ 5. Menjalankan backup mailbox di server — Budi, 08:04:00 WIB, dihentikan setelah 5 menit (perintah dibatalkan)"
    );
    let t = table(&en(), &o, 300);
    assert_eq!(
        t[4],
        "⏹ 5. Run the mailbox backup on the server — Budi, 08:04:00 WIB, stopped after 5 min (order cancelled)"
    );
}

#[test]
fn an_open_step_says_whom_it_waits_for_and_gives_no_verdict() {
    let t = table(&id(), &ordered(), 7);
    assert_eq!(
        t[1],
        "⏳ 2. Mendisposisikan kepada JFU — menunggu Kasi Portal Web (/direct), sejak 08:00:00 WIB, 7 menit berjalan (standar 5 menit)"
    );
    let t = table(&en(), &started(), 4);
    assert_eq!(
        t[2],
        "⏳ 3. Create the dated backup folder — the bot is doing it for Budi, since 08:02:00 WIB, 2 min so far (standard 10 min)"
    );
    let o = apply(&ordered(), Event::Direct { by: KASI, jfu: JFU }, 2);
    let t = table(&id(), &o, 3);
    assert!(t[2].contains("menunggu Budi (/start)"), "{t:#?}");
    for l in table(&id(), &ordered(), 7) {
        if l.starts_with('⏳') {
            assert!(!l.contains("sesuai") && !l.contains("melebihi"), "{l}");
        }
    }
}

#[test]
fn the_failure_report_names_the_failed_step_and_quotes_the_server() {
    let o = failed_login();
    let outcome = RunOutcome::Stopped(login_refused());
    let text = id().report(&o, Some(&outcome), "@sari", false, at(5), &name);
    assert!(
        text.starts_with("🚨 <b>Backup GAGAL #1</b> — @sari"),
        "{text}"
    );
    assert!(
        text.contains(
            "❌ Langkah 4: kunci SSH ditolak server\n<code>Permission denied (publickey).</code>"
        ),
        "{text}"
    );
    assert!(
        text.contains("Tidak ada berkas terverifikasi yang disimpan."),
        "{text}"
    );
    assert!(
        text.contains("gagal setelah 1 menit: kunci SSH ditolak server"),
        "{text}"
    );
    let summary = id().summary(&o, Some(&outcome), &name);
    assert_eq!(
        summary,
        "Langkah 4 gagal: kunci SSH ditolak server. Pesan sistem: Permission denied (publickey)."
    );
    let summary = en().summary(&o, Some(&outcome), &name);
    assert!(
        summary.starts_with("Step 4 failed: the SSH key was refused."),
        "{summary}"
    );
}

#[test]
fn the_log_of_a_cancelled_order_says_who_cancelled_and_why() {
    let o = cancelled_before_direction();
    let summary = id().summary(&o, None, &name);
    assert_eq!(summary, "Dibatalkan oleh Pak Harun.");
    let entry = id().log_entry(&o, None, at(1), &summary, &name);
    assert!(entry.contains("Alasan: salah kirim"), "{entry}");
    assert!(entry.contains("dicatat 08:01:00 WIB"), "{entry}");
    assert!(
        !entry.contains("Bu Sari") && !entry.contains("Kasi Portal Web"),
        "{entry}"
    );
}

#[test]
fn the_progress_message_ends_with_the_real_outcome() {
    let end = |c: &Catalog, e| {
        c.progress(&RunView {
            end: Some(e),
            ..RunView::default()
        })
    };
    assert_eq!(
        end(&id(), RunEnd::Failed(SopStep::RemoteLogin)),
        "❌ Backup GAGAL pada langkah 4 (Remote login ke server email). Lihat laporan di bawah."
    );
    assert!(end(&id(), RunEnd::Completed).starts_with("✅ Backup selesai"));
    assert!(end(&id(), RunEnd::Cancelled).starts_with("⏹ Backup dibatalkan"));
    assert!(end(&id(), RunEnd::Interrupted).contains("bot dimatikan"));
    assert!(end(&en(), RunEnd::Failed(SopStep::CopyAndReport))
        .starts_with("❌ Backup FAILED in step 6"));
    assert!(end(&en(), RunEnd::Interrupted).contains("resumes"));
    for e in [
        RunEnd::Failed(SopStep::CreateFolder),
        RunEnd::Cancelled,
        RunEnd::Interrupted,
    ] {
        assert!(!end(&id(), e).contains("selesai"), "{e:?}");
    }
}

#[test]
fn the_progress_reads_sizes_rates_and_time_left_in_the_readers_units() {
    let v = RunView {
        running: vec![SopStep::CopyAndReport],
        copy: Some((1, 3, 3 << 19, 3 << 20, 1536.0 * 1024.0, Some(600))),
        ..RunView::default()
    };
    let text = id().progress(&v);
    assert!(text.contains("Langkah 6: Menyalin backup"), "{text}");
    assert!(text.contains("1,5 MB / 3,0 MB"), "{text}");
    assert!(
        text.contains("Kecepatan: 1,5 MB/detik, perkiraan sisa waktu: 10 menit"),
        "{text}"
    );
    let text = en().progress(&v);
    assert!(text.contains("Rate: 1.5 MB/s, time left: 10 min"), "{text}");
}

#[test]
fn steps_5_and_6_side_by_side_show_both_and_the_whole_runs_time_left() {
    let v = RunView {
        running: vec![SopStep::ServerBackup, SopStep::CopyAndReport],
        exported: Some((40, 300)),
        copy: Some((12, 40, 3 << 20, 10 << 20, 1536.0 * 1024.0, Some(600))),
        ..RunView::default()
    };
    let text = id().progress(&v);
    assert!(
        text.contains(
            "▶️ Langkah 5: Menjalankan backup mailbox di server\n▶️ Langkah 6: Menyalin backup"
        ),
        "{text}"
    );
    assert!(text.contains("Mailbox diekspor: 40/300"), "{text}");
    assert!(
        text.contains("Berkas terverifikasi: 12 dari 40 yang sudah diekspor"),
        "{text}"
    );
    assert!(
        text.contains("perkiraan sisa waktu (ekspor dan salin): 10 menit"),
        "{text}"
    );
    let text = en().progress(&v);
    assert!(
        text.contains("Files verified: 12 of the 40 exported so far"),
        "{text}"
    );
}

#[test]
fn finished_steps_are_told_in_the_progress_message_against_the_standard_time() {
    let v = RunView {
        running: vec![SopStep::ServerBackup],
        finished: vec![
            (SopStep::CreateFolder, TimeDelta::minutes(1)),
            (SopStep::RemoteLogin, TimeDelta::minutes(13)),
        ],
        ..RunView::default()
    };
    let text = id().progress(&v);
    assert!(
        text.contains(
            "✅ Langkah 3: Membuat folder backup bertanggal — 1 menit (standar 10 menit)"
        ),
        "{text}"
    );
    assert!(
        text.contains("⚠️ Langkah 4: Remote login ke server email — 13 menit (standar 10 menit)"),
        "{text}"
    );
    assert!(
        text.contains("Langkah 5: Menjalankan backup mailbox di server"),
        "{text}"
    );
    let text = en().progress(&v);
    assert!(
        text.contains("✅ Step 3: Create the dated backup folder — 1 min (standard 10 min)"),
        "{text}"
    );
}

#[test]
fn the_status_between_two_machine_steps_says_so_and_judges_no_step() {
    let o = machine(&started(), SopStep::CreateFolder, 3, 3);
    let text = id().status(&o, at(4), Some("Budi".into()), &name);
    assert!(
        text.starts_with("📊 <b>Perintah #1</b> — sedang berjalan\nBot berpindah ke langkah berikutnya\nDipegang oleh: Budi\nWaktu berjalan: 4 menit / 20 menit (waktu standar langkah yang sudah dicapai)"),
        "{text}"
    );
}

/// A run of `n` mailboxes, every `fail_every`-th one failed (0: none).
fn many_mailboxes(n: usize, fail_every: usize) -> crate::engine::BackupReport {
    use crate::engine::{BackupReport, MailboxResult, MailboxStatus, RunFolders};
    let mailboxes: Vec<MailboxResult> = (0..n)
        .map(|i| MailboxResult {
            account: format!("pegawai.nomor.{i:05}@djki.go.id"),
            file: format!("pegawai.nomor.{i:05}@djki.go.id.tar.gz"),
            size: 1_000_000 + i as u64 * 997,
            sha256: "ab".repeat(32),
            messages: Some(100 + i as u64),
            server_messages: Some(crate::engine::manifest::ServerCount {
                before: 100 + i as u64,
                after: 100 + i as u64,
            }),
            piece: None,
            status: if fail_every > 0 && i % fail_every == 0 {
                MailboxStatus::Failed {
                    error: "doveadm backup: mailbox locked by another process, giving up after 30 seconds".into(),
                }
            } else {
                MailboxStatus::Verified
            },
        })
        .collect();
    BackupReport {
        directory: None,
        folders: RunFolders {
            local: "/media/backup/24-11-2026".into(),
            server: "/var/backups/mailbox/24-11-2026".into(),
        },
        bytes_total: mailboxes.iter().map(|m| m.size).sum(),
        bytes_copied: mailboxes.iter().map(|m| m.size).sum(),
        mailboxes,
        steps: vec![],
        copy_secs: 600.0,
        reconnects: 2,
        server_folders_removed: vec!["23-11-2026".into()],
        bytes_reused: 0,
        local_folders_removed: vec![],
        disk_free: Some(900_000_000_000),
        encrypted_to: 0,
        incremental: None,
    }
}

#[test]
fn a_report_of_5000_mailboxes_fits_one_telegram_message_and_names_its_failures() {
    let copied = {
        let mut o = machine(&started(), SopStep::CreateFolder, 3, 3);
        o = machine(&o, SopStep::RemoteLogin, 3, 4);
        o = machine(&o, SopStep::ServerBackup, 4, 30);
        machine(&o, SopStep::CopyAndReport, 30, 200)
    };
    let reported = apply(&copied, Event::Reported, 200);
    for c in [id(), en()] {
        let all = many_mailboxes(5000, 0);
        let text = c.report(
            &reported,
            Some(&RunOutcome::Completed(all.clone())),
            "@sari",
            false,
            at(201),
            &name,
        );
        assert!(
            text.encode_utf16().count() < 4096,
            "{} units",
            text.encode_utf16().count()
        );
        // The largest few by name, the rest pointed to the document.
        assert!(text.contains("pegawai.nomor.04999@djki.go.id"), "{text}");
        assert!(text.contains("4995"), "{text}");
        let csv = c.mailboxes_csv(&all);
        assert_eq!(csv.lines().count(), 5001);

        let some_failed = many_mailboxes(5000, 7);
        let failed = apply(
            &copied,
            Event::Failed {
                step: Some(SopStep::CopyAndReport),
                reason: c.mailboxes_failed(&["x".into()], 5000),
            },
            201,
        );
        let text = c.report(
            &failed,
            Some(&RunOutcome::Completed(some_failed)),
            "@sari",
            true,
            at(202),
            &name,
        );
        assert!(
            text.encode_utf16().count() < 4096,
            "{} units:\n{text}",
            text.encode_utf16().count()
        );
        assert!(
            text.contains("pegawai.nomor.00000@djki.go.id"),
            "the first failure by name"
        );
        assert!(text.contains("4285"), "the verified ones counted: {text}");
    }
}

#[test]
fn the_mailbox_csv_shows_formulas_as_text_and_names_without_html() {
    let mut r = many_mailboxes(3, 2);
    r.mailboxes[0].account = "=1+1@djki.go.id".into();
    r.mailboxes[0].status = crate::engine::MailboxStatus::Failed {
        error: "-rw-r--r-- & <refused>".into(),
    };
    r.mailboxes[1].account = "@SUM(A1)@djki.go.id".into();
    let csv = id().mailboxes_csv(&r);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 3);
    for cell in rows.iter().flat_map(|r| r.iter()) {
        assert!(
            !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
            "{cell:?}"
        );
        assert!(
            !cell.contains("&amp;") && !cell.contains("&lt;"),
            "{cell:?}"
        );
    }
    assert_eq!(&rows[0][0], "'=1+1@djki.go.id");
    assert_eq!(&rows[0][8], "'-rw-r--r-- & <refused>");
    assert_eq!(&rows[1][0], "'@SUM(A1)@djki.go.id");
}

fn with_directory(status: crate::engine::MailboxStatus) -> crate::engine::BackupReport {
    use crate::engine::directory::{DirectoryCounts, DirectoryResult};
    let mut r = many_mailboxes(2, 0);
    let names: Vec<String> = vec![r.mailboxes[0].account.clone()];
    r.directory = Some(Box::new(DirectoryResult {
        file: "directory.tar.gz".into(),
        size: 900,
        sha256: "d".repeat(64),
        counts: DirectoryCounts {
            accounts: 1,
            passwords: 1,
            filters: 2,
            names,
            not_captured: vec!["userdb sql /etc/dovecot/dovecot-sql.conf.ext".into()],
            ..Default::default()
        },
        status,
    }));
    r
}

#[test]
fn the_report_counts_the_accounts_beside_the_mailboxes_and_names_what_was_not_captured() {
    let r = with_directory(crate::engine::MailboxStatus::Verified);
    let line = id().directory_line(&r);
    assert!(
        line.contains("Direktori akun: 1 akun, 1 dengan sandi, 2 filter surat"),
        "{line}"
    );
    assert!(
        line.contains("userdb sql /etc/dovecot/dovecot-sql.conf.ext"),
        "{line}"
    );
    let csv = id().mailboxes_csv(&r);
    let rows: Vec<csv::StringRecord> = csv::Reader::from_reader(csv.as_bytes())
        .records()
        .map(|r| r.expect("row"))
        .collect();
    assert_eq!(rows.len(), 3, "two mailboxes and the directory: {csv}");
    assert_eq!((&rows[0][6], &rows[1][6]), ("ya", "tidak"));
    assert_eq!(&rows[2][0], "(direktori akun)");
    assert_eq!(&rows[2][1], "directory.tar.gz");
    assert_eq!(&rows[2][6], "1");
    assert!(r.all_verified());
    // A kind without a directory says so.
    let plain = many_mailboxes(2, 0);
    assert!(en().directory_line(&plain).contains("mail only"));
}

#[test]
fn a_failed_directory_fails_the_backup_and_says_why_even_with_every_mailbox_verified() {
    let r = with_directory(crate::engine::MailboxStatus::Failed {
        error: "doveconf: Permission denied".into(),
    });
    assert!(!r.all_verified());
    let mut o = completed();
    o.status = crate::domain::OrderStatus::Failed;
    let why = en()
        .failure_of(&o, Some(&RunOutcome::Completed(r.clone())))
        .expect("a reason");
    assert_eq!(why, "the account directory failed");
    let line = en().directory_line(&r);
    assert!(
        line.contains("❌ The account directory failed: <code>doveconf: Permission denied</code>"),
        "{line}"
    );
}

/// A restore that found fewer messages than the backup recorded reads as failed with both
/// figures in the report, its log entry and the chat's report; a whole one says nothing more.
#[test]
fn a_restore_short_of_the_record_says_so_in_the_report_and_the_log() {
    use crate::domain::{RestoreStatus, UserId};
    use crate::engine::restore::{FolderCount, RestoreReport};
    let report = RestoreReport {
        folder: "07-12-2026".into(),
        account: "budi.santoso@djki.go.id".into(),
        into: "restore@djki.go.id".into(),
        file: "budi.santoso@djki.go.id.tar.gz".into(),
        bytes: 6_400_000,
        folders: vec![FolderCount {
            folder: "INBOX".into(),
            in_backup: 0,
            already_there: 0,
            restored: 0,
            present_after: 0,
        }],
        recorded: Some(6),
    };
    let done = id().restore_done(3, &report, "Agus", false);
    assert!(done.contains("TIDAK LENGKAP"), "{done}");
    assert!(
        done.contains("mencatat <b>6</b> pesan") && done.contains("hanya menemukan <b>0</b>"),
        "{done}"
    );
    let row = crate::storage::RestoreRow {
        id: 3,
        folder: report.folder.clone(),
        account: report.account.clone(),
        into: report.into.clone(),
        status: RestoreStatus::Failed,
        asked_by: UserId(1),
        asked_at: at(0),
        decided_by: Some(UserId(2)),
        decided_at: Some(at(60)),
        ended_at: Some(at(120)),
        report: serde_json::to_value(&report).ok(),
        error: report.why_incomplete(),
        backup: None,
        expires_at: None,
        creates: None,
    };
    let logged = en().restore_log_entry(&row, &name);
    assert!(
        logged.contains("failed")
            && logged.contains("recorded 6 messages, the restore found only 0"),
        "{logged}"
    );
    let whole = RestoreReport {
        folders: vec![FolderCount {
            folder: "INBOX".into(),
            in_backup: 6,
            already_there: 0,
            restored: 6,
            present_after: 6,
        }],
        ..report
    };
    let ok = id().restore_done(4, &whole, "Agus", false);
    assert!(ok.contains("selesai") && !ok.contains("❌"), "{ok}");
}

#[test]
fn a_rebuild_report_counts_what_the_server_has_by_kind_and_says_what_was_fitted_to_the_new_server()
{
    let s = crate::engine::rebuild::RebuildSummary {
        accounts: 3,
        created: vec!["ani@djki.go.id".into(), "bagian/umum@djki.go.id".into()],
        existed: 1,
        mailboxes: 3,
        messages_added: 12,
        filters: 2,
        also: vec![
            "alias ani.s@djki.go.id".into(),
            "class of service pegawai".into(),
            "class of service pimpinan".into(),
            "default class of service of domain djki.go.id (pegawai)".into(),
            "list semua@djki.go.id".into(),
            "list alias seluruh.pegawai@djki.go.id".into(),
        ],
        notes: vec!["class of service pegawai: its mail-host pool (zimbraMailHostPool) mapped by server name to this server's id for mail.djki.go.id".into()],
        failed: vec![(
            "list semua@djki.go.id".into(),
            "member(s) mitra@example.org are not in it".into(),
        )],
    };
    let text = id().restore_all_done(7, "07-12-2026", &s, "Kasi");
    assert!(text.contains("TIDAK LENGKAP"), "{text}");
    assert!(
        text.contains("🧩 Juga ada lagi di server: 1 × alias, 2 × kelas layanan (COS), 1 × COS bawaan domain, 1 × milis, 1 × alamat milis, 2 × filter surat."),
        "{text}"
    );
    assert!(
        text.contains("📝 Disesuaikan untuk server baru") && text.contains("zimbraMailHostPool"),
        "{text}"
    );
    assert!(
        text.contains("❌ <code>list semua@djki.go.id</code> — <code>member(s) mitra@example.org are not in it</code>"),
        "{text}"
    );
    let text = en().restore_all_done(7, "07-12-2026", &s, "Kasi");
    assert!(
        text.contains("Also on the server again: 1 × alias, 2 × class of service, 1 × default class of service of domain, 1 × list, 1 × list alias, 2 × mail filter."),
        "{text}"
    );
}
