//! The whole chain at scale, through the bot binary: 300 mailboxes (Maildirs written straight on
//! disk, exported over the shared sshd) must still give a bounded number of group messages, a
//! report that fits in one Telegram message, and one per-mailbox CSV document.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bot_api_stub::SentMessage;
use mailbox_backup_bot::engine::files::sha256_of;

use crate::support::*;

const MAILBOXES: usize = 300;
/// Telegram's limit on a message's text, in UTF-16 code units after entity parsing.
const TELEGRAM_LIMIT: usize = 4096;
/// Telegram's limit on a document's caption.
const CAPTION_LIMIT: usize = 1024;
const REPORT_WAIT: Duration = Duration::from_secs(240);

/// Writes `count` mailboxes `p001`… under `root`, each a Maildir of 1–4 read messages in `cur/`
/// and, for some, one unread in `new/`. Returns name → number of messages.
fn write_maildirs(root: &Path, count: usize) -> BTreeMap<String, u64> {
    let mut written = BTreeMap::new();
    for i in 1..=count {
        let name = format!("p{i:03}");
        let cur = root.join(&name).join("cur");
        let new = root.join(&name).join("new");
        std::fs::create_dir_all(&cur).expect("cur");
        std::fs::create_dir_all(&new).expect("new");
        std::fs::create_dir_all(root.join(&name).join("tmp")).expect("tmp");
        let in_cur = 1 + (i % 4);
        let in_new = usize::from(i % 7 == 0);
        for k in 0..in_cur {
            // Bodies of different lengths, so "the largest" means something.
            let body = "isi pesan\r\n".repeat(1 + (i * 13 + k * 7) % 50);
            let msg =
                format!("From: kasi@djki.go.id\r\nTo: {name}@djki.go.id\r\nSubject: {name} {k}\r\n\r\n{body}");
            std::fs::write(cur.join(format!("{k}.msg:2,S")), msg).expect("message");
        }
        for k in 0..in_new {
            let msg = format!("Subject: {name} baru {k}\r\n\r\nbelum dibaca\r\n");
            std::fs::write(new.join(format!("{}.msg", 100 + k)), msg).expect("message");
        }
        written.insert(name, (in_cur + in_new) as u64);
    }
    written
}

/// The only dated folder under `root`.
fn dated_folder(root: &Path) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("the local root")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(found.len(), 1, "one dated folder: {found:?}");
    found.into_iter().next().expect("checked")
}

/// A message's texts (now and before each edit) as a person reads them.
fn readable_texts(m: &SentMessage) -> Vec<String> {
    let html = m
        .parse_mode
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("html"));
    std::iter::once(&m.text)
        .chain(&m.edits)
        .map(|t| {
            if html {
                mailbox_backup_bot::messages::html_to_text(t)
            } else {
                t.clone()
            }
        })
        .collect()
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

#[tokio::test]
async fn a_run_of_300_mailboxes_posts_a_bounded_number_of_messages_a_report_under_4096_and_one_document(
) {
    let began = Instant::now();
    let (team, stub, db, mut env) = scene("id").await.parts();
    let dir = test_dir("scale300");
    let root = dir.join("maildirs");
    let written = write_maildirs(&root, MAILBOXES);
    assert_eq!(written.len(), MAILBOXES);
    use_engine(&mut env, &dir);
    set(&mut env, "MAIL_BACKUP_KIND", "maildir");
    set(&mut env, "MAILDIR_ROOT", &root.to_string_lossy());
    let _bot = BotProcess::start(&env);
    let g = &team.group;

    // 1–2: the Kasubdit orders, the Kasi directs Budi with the button.
    stub.say(g, &team.kasubdit, "/order_backup backup mingguan");
    let order = expect_text(&stub, g, 0, "Perintah backup mailbox #1").await;
    assert!(mentions(&order.text, &team.kasi), "{}", order.text);
    let button = order
        .button_data()
        .into_iter()
        .find(|d| d.ends_with(&team.jfu.id.to_string()))
        .expect("Budi's button");
    stub.press(g, &team.kasi, order.message_id, &button)
        .expect("press");
    let directed = expect_text(&stub, g, 0, "mendisposisikan perintah #1").await;
    assert!(mentions(&directed.text, &team.jfu), "{}", directed.text);

    // 3–6: Budi starts; the bot runs the machine steps.
    let start_id = stub.say(g, &team.jfu, "/start");
    let started = Instant::now();
    let report = match stub
        .wait_for_text(g.id, 0, "Laporan backup #1", REPORT_WAIT)
        .await
    {
        Ok(m) => m,
        Err(e) => {
            print_chat(&stub, &team);
            panic!("{e}");
        }
    };
    let document = match stub
        .wait_for(g.id, WAIT, |msgs| msgs.iter().any(|m| m.document.is_some()))
        .await
    {
        Ok(msgs) => msgs
            .into_iter()
            .find(|m| m.document.is_some())
            .expect("checked"),
        Err(_) => {
            print_chat(&stub, &team);
            panic!("no document after the report");
        }
    };
    let run_secs = started.elapsed().as_secs_f64();
    eprintln!("{MAILBOXES} mailboxes: /start to the report's document in {run_secs:.1} s");
    assert!(
        document.message_id > report.message_id,
        "the document follows the report"
    );

    // The message bound: from /start to the document, the bot posted start, one progress
    // message (edited in place), the report and the document.
    let during_run: Vec<SentMessage> = stub
        .messages(g.id)
        .into_iter()
        .filter(|m| m.message_id > start_id && m.message_id <= document.message_id)
        .collect();
    let listing = |msgs: &[SentMessage]| {
        msgs.iter()
            .map(|m| {
                let t = m.plain_text();
                format!(
                    "  #{} ({} edits) {}",
                    m.message_id,
                    m.edits.len(),
                    t.chars().take(100).collect::<String>()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        during_run.len() <= 6,
        "at most 6 messages from /start to the document, got {}:\n{}",
        during_run.len(),
        listing(&during_run)
    );
    let progress: Vec<&SentMessage> = during_run
        .iter()
        .filter(|m| m.disable_notification && !m.edits.is_empty())
        .collect();
    assert_eq!(
        progress.len(),
        1,
        "one progress message, edited in place:\n{}",
        listing(&during_run)
    );
    assert!(
        progress[0]
            .edits
            .iter()
            .chain([&progress[0].text])
            .any(|e| e.contains("Langkah")),
        "{:?}",
        progress[0]
    );
    assert_eq!(
        progress[0].text,
        "✅ Backup selesai: semua mailbox tersalin dan terverifikasi. Lihat laporan di bawah.",
        "the progress message ends with the outcome"
    );

    // The report: one message (not split), under Telegram's limit, with the total of 300.
    let reports: Vec<&SentMessage> = during_run
        .iter()
        .filter(|m| m.text.contains("Laporan backup"))
        .collect();
    assert_eq!(reports.len(), 1, "one report:\n{}", listing(&during_run));
    assert!(
        during_run
            .iter()
            .all(|m| m.message_id <= report.message_id || m.message_id == document.message_id),
        "nothing between the report and its document (a split report):\n{}",
        listing(&during_run)
    );
    let report_text = report.plain_text();
    let report_len = utf16_len(&report_text);
    eprintln!(
        "the report: {report_len} UTF-16 units as read ({} bytes of HTML)",
        report.text.len()
    );
    assert!(
        report_len <= TELEGRAM_LIMIT,
        "the report is {report_len} UTF-16 units, over {TELEGRAM_LIMIT}:\n{report_text}"
    );
    assert!(
        report_text.contains(&format!("Total: {MAILBOXES} mailbox")),
        "{report_text}"
    );
    assert!(
        report_text.contains("Terbesar:")
            && report_text.contains(&format!(
                "dan {} mailbox lain: rinciannya di berkas CSV",
                MAILBOXES - 5
            )),
        "the largest five by name, the rest in the CSV: {report_text}"
    );
    let named = written
        .keys()
        .filter(|n| report_text.contains(&format!("{n} — ")))
        .count();
    assert_eq!(named, 5, "five mailboxes named: {report_text}");
    assert!(
        report_text.contains("Tabel SOP") && report_text.contains("/receive"),
        "the whole report, to its end, in the one message: {report_text}"
    );
    assert!(mentions(&report.text, &team.kasi), "{}", report.text);

    // The document: one per-mailbox CSV with a row per mailbox.
    let documents: Vec<&SentMessage> = during_run.iter().filter(|m| m.document.is_some()).collect();
    assert_eq!(documents.len(), 1, "{}", listing(&during_run));
    let csv = document.document.clone().expect("checked");
    assert!(csv.file_name.ends_with("-per-mailbox.csv"), "{csv:?}");
    if let Some(caption) = &csv.caption {
        assert!(utf16_len(caption) <= CAPTION_LIMIT, "{caption}");
    }
    let listed = csv.text.clone().expect("the CSV is text");
    let mut lines = listed.lines();
    assert_eq!(
        lines.next(),
        Some("akun,berkas,ukuran_byte,sha256,jumlah_pesan,jumlah_pesan_server,akun_di_direktori,hasil,keterangan")
    );
    let rows: Vec<Vec<&str>> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), MAILBOXES, "one row per mailbox");

    // On disk: 300 archives in the local dated folder, SHA256SUMS checks out, and the CSV's
    // SHA-256 of each is the local archive's.
    let local = dated_folder(&dir.join("local"));
    assert!(
        report_text.contains(&*local.to_string_lossy()),
        "the report names the folder"
    );
    let archives: BTreeMap<String, PathBuf> = std::fs::read_dir(&local)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar.gz") && !n.starts_with('.'))
        .map(|n| (n.clone(), local.join(&n)))
        .collect();
    assert_eq!(archives.len(), MAILBOXES, "one archive per mailbox");
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "--strict", "SHA256SUMS"])
        .current_dir(&local)
        .status()
        .expect("sha256sum");
    assert!(check.success(), "SHA256SUMS checks out");
    let sums: BTreeMap<String, String> = std::fs::read_to_string(local.join("SHA256SUMS"))
        .expect("SHA256SUMS")
        .lines()
        .filter_map(|l| {
            let (sha, name) = l.split_once("  ")?;
            Some((name.to_owned(), sha.to_owned()))
        })
        .collect();
    assert_eq!(sums.len(), MAILBOXES, "SHA256SUMS lists every archive");
    let mut seen = BTreeMap::new();
    for f in &rows {
        assert_eq!(f.len(), 9, "{f:?}");
        let (account, file, size, sha, messages, server) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        let expected = written
            .get(account)
            .unwrap_or_else(|| panic!("a mailbox that was written: {f:?}"));
        assert_eq!(f[6], "", "the Maildir kind keeps no directory: {f:?}");
        assert_eq!(f[7], "terverifikasi", "{f:?}");
        assert_eq!(f[8], "", "no remark on a verified mailbox: {f:?}");
        assert_eq!(
            messages,
            expected.to_string(),
            "messages in {account}: {f:?}"
        );
        assert_eq!(
            server,
            expected.to_string(),
            "the server's count of {account}: {f:?}"
        );
        let path = archives
            .get(file)
            .unwrap_or_else(|| panic!("{file} is in {}", local.display()));
        assert_eq!(
            size,
            std::fs::metadata(path).expect("archive").len().to_string(),
            "{f:?}"
        );
        assert_eq!(sums.get(file).map(String::as_str), Some(sha), "{f:?}");
        assert_eq!(sha256_of(path).expect("readable").0, sha, "{f:?}");
        assert!(seen.insert(account, ()).is_none(), "{account} listed twice");
    }
    assert_eq!(seen.len(), MAILBOXES, "every mailbox has its row");

    // 7–8: the Kasi receives; the relay replies to the report; the bot logs it.
    stub.say(g, &team.kasi, "/receive");
    let relayed = expect_text(&stub, g, 0, "menerima laporan backup #1").await;
    assert!(mentions(&relayed.text, &team.kasubdit), "{}", relayed.text);
    assert_eq!(
        relayed.reply_to,
        Some(report.message_id),
        "the relay replies to the report instead of repeating it"
    );
    expect_text(&stub, g, 0, "dicatat di log kegiatan harian").await;
    assert_eq!(status_of_last_order(&db).await, "logged");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM daily_log WHERE outcome = 'logged'"
        )
        .await,
        1
    );

    // The whole chain's messages in the group: order, direction, start, progress, report,
    // document, receipt, logged (8 today), and none over Telegram's limit.
    let all = stub.messages(g.id);
    eprintln!(
        "the group: {} bot messages, {} edits of them",
        all.len(),
        all.iter().map(|m| m.edits.len()).sum::<usize>()
    );
    assert!(
        all.len() <= 10,
        "at most ~10 bot messages for the whole chain, got {}:\n{}",
        all.len(),
        listing(&all)
    );
    for m in &all {
        for text in readable_texts(m) {
            assert!(
                utf16_len(&text) <= TELEGRAM_LIMIT,
                "message #{} is {} UTF-16 units: {text}",
                m.message_id,
                utf16_len(&text)
            );
        }
    }
    print_chat(&stub, &team);
    eprintln!("the test took {:.1} s", began.elapsed().as_secs_f64());
}
