//! Steps 5 and 6 overlapped, for the kinds that export mailbox by mailbox: each archive is
//! copied down as soon as its export is complete on the server, and read back as soon as it is
//! verified. Exports run `MAIL_BACKUP_JOBS` at a time (the server's load), copies
//! `MAIL_COPY_STREAMS` at a time (the link), read-backs two at a time (the admin computer).
//!
//! Step 5 keeps its own start and end (the server folder claimed, the last export closed into the
//! server's manifest); step 6 starts with the first copy. A dropped or stalled connection ends the
//! pass: the link is made again, and the next pass works out from the server's records and the
//! local folder what is left — the same way a run resumed after a restart does.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use super::archive::ReadBackError;
use super::copy::{self, copy_files, next_job, Meter};
use super::encryption::Recipients;
use super::export::{self, sh_again};
use super::kind::{MailKind, MailboxScripts, Script};
use super::link::Link;
use super::local::{free_space, remove_partials, sync_dir};
use super::manifest::{
    account_of, parse_manifest, parse_record, parse_records, ExportRecord, ServerFile,
};
use super::remote::{error_chain, Remote};
use super::server;
use super::timer::Timer;
use super::{tell, EngineError, ErrorKind, Progress, ProgressSender, RunFolders};
use crate::config::EngineSettings;
use crate::domain::SopStep;

/// Read-backs at once (each is a gunzip and a tar walk on one core).
const READ_BACKS: usize = 2;
/// While exports run, small archives start their copy together: once this many wait, or this
/// many bytes, or the first has waited this long (a big one goes at once). Each copy stream is
/// a command on the server, with a login shell's start-up each: for hundreds of small
/// mailboxes, one per archive would take the server's CPU from the exports.
const GATHER_FILES: usize = 100;
const GATHER_BYTES: u64 = 16 << 20;
const GATHER_WAIT: Duration = Duration::from_secs(5);
/// How often the loop looks at the clock (gathering, stalls, progress).
const TICK: Duration = Duration::from_millis(250);

/// What steps 5 and 6 leave for the report.
pub(super) struct Overlapped {
    /// Every archive on the server, with the server's count of its mailbox.
    pub records: Vec<ExportRecord>,
    /// Exports that failed, and mailboxes whose archive is missing: `(account, why)`.
    pub failures: Vec<(String, String)>,
    /// The read-back of each archive: its messages, or why it cannot be read.
    pub read_back: HashMap<String, Result<u64, ReadBackError>>,
    /// The account of each archive, as the server names it (a file name is only portable).
    pub accounts: HashMap<String, String>,
    pub copied: copy::Copied,
    pub copy_secs: f64,
    /// Archives that are the mailbox's last verified piece, not exported: it did not change.
    pub unchanged: HashSet<String>,
}

/// What is known of the run between passes.
struct State {
    /// `(account, archive)` of every mailbox of this run.
    jobs: Vec<(String, String)>,
    records: Vec<ExportRecord>,
    failures: Vec<(String, String)>,
    /// Archives verified locally (copied, or found) in this process.
    verified: HashSet<String>,
    read_back: HashMap<String, Result<u64, ReadBackError>>,
    /// Step 5 is closed (the server's manifest written).
    exported: bool,
    /// Step 6 has started (with the first copy).
    copy_started: bool,
    /// Time with at least one copy under way (step 6 also waits for exports: not copy time).
    copy_busy: Duration,
    copied: copy::Copied,
    unchanged: HashSet<String>,
}

impl State {
    fn pending_exports(&self) -> Vec<(String, String)> {
        if self.exported {
            return Vec::new();
        }
        self.jobs
            .iter()
            .filter(|(account, file)| {
                !self.records.iter().any(|r| r.file.name.as_str() == file)
                    && !self.failures.iter().any(|(a, _)| a == account)
            })
            .cloned()
            .collect()
    }

    /// Archives on the server not yet verified here, in export order.
    fn to_copy(&self) -> VecDeque<ServerFile> {
        self.records
            .iter()
            .filter(|r| !self.verified.contains(r.file.name.as_str()))
            .map(|r| r.file.clone())
            .collect()
    }
}

/// How a pass ended short of the end.
enum Break {
    /// The connection went: reconnect and go on.
    Link(String),
    Fatal(EngineError),
}

/// What steps 5 and 6 work with, the same through every pass and reconnect: the settings, the
/// mail store, the two folders, the step timer and where progress goes.
#[derive(Clone, Copy)]
pub(super) struct RunContext<'a> {
    pub s: &'a EngineSettings,
    pub kind: &'a dyn MailKind,
    pub scripts: &'a MailboxScripts,
    pub folders: &'a RunFolders,
    pub timer: &'a Timer,
    pub progress: &'a ProgressSender,
    /// The recipients every copy is encrypted to; `None`: stored as the server has it.
    pub seal: Option<&'a Recipients>,
}

/// Steps 5 and 6 into the claimed server folder and the local dated folder. `continuing`: an
/// earlier run of this folder was cut off; what it finished on either side is kept.
pub(super) async fn run(
    ctx: RunContext<'_>,
    link: &mut Link<'_>,
    continuing: bool,
) -> Result<Overlapped, EngineError> {
    let dir = ctx.folders.server.as_str();
    let result = overlapped(ctx, link, continuing).await;
    if let Err(e) = &result {
        // Nothing left running or temporary on the server; a refused start leaves no folder.
        // Without a session (the reconnect failed) the next run of this folder stops them.
        if let Some(remote) = link.session() {
            let _ = remote.sh(server::STOP_WRITERS, &[dir]).await;
            if !continuing && e.kind == ErrorKind::ServerNoSpace {
                let _ = remote.sh(server::RELEASE, &[dir]).await;
            }
        }
        if e.kind == ErrorKind::NoSpace {
            remove_partials(&ctx.folders.local);
        }
    }
    result
}

async fn overlapped(
    ctx: RunContext<'_>,
    link: &mut Link<'_>,
    continuing: bool,
) -> Result<Overlapped, EngineError> {
    let mut state = State {
        jobs: Vec::new(),
        records: Vec::new(),
        failures: Vec::new(),
        verified: HashSet::new(),
        read_back: HashMap::new(),
        exported: false,
        copy_started: false,
        copy_busy: Duration::ZERO,
        copied: copy::Copied::default(),
        unchanged: HashSet::new(),
    };
    if continuing {
        resume(link, ctx.folders.server.as_str(), &mut state).await?;
    }
    if !state.exported {
        export_and_copy(ctx, link, &mut state).await?;
        return finish(state, ctx.folders);
    }
    // Step 5 was finished by an earlier run: it ends now, and step 6 copies what is left.
    ctx.timer.finish(SopStep::ServerBackup, ctx.progress);
    loop {
        match pass(ctx, link.remote(), 0, 0, &mut state).await {
            Ok(()) => break,
            Err(Break::Fatal(e)) => return Err(e),
            Err(Break::Link(why)) => link.reconnect(SopStep::CopyAndReport, &why).await?,
        }
    }
    finish(state, ctx.folders)
}

/// What an earlier, cut-off run of `dir` left: its exports stopped, and either step 5's
/// manifest (step 5 finished, every mailbox archived) or the archives it finished.
async fn resume(link: &mut Link<'_>, dir: &str, state: &mut State) -> Result<(), EngineError> {
    let step5 = SopStep::ServerBackup;
    let stopped = export::stop_writers(link, dir).await?;
    if stopped > 0 {
        tracing::warn!(dir, stopped, "stopped exports an earlier run left running");
    }
    let st = sh_again(link, step5, server::READ_STATE, &[dir]).await?;
    let finished = if st.ok {
        let (manifest, failures) = export::split_state(&st.stdout);
        let listed = parse_manifest(manifest)
            .map_err(|e| EngineError::new(step5, ErrorKind::ServerCommand, e.to_string()))?;
        Some((listed, failures))
    } else {
        None
    };
    // A recorded failure is a reason to export again, never a result to repeat: a run
    // ordered again after a failed mailbox reopens step 5 for what is not archived.
    let finished = match finished {
        Some((_, failures)) if !failures.is_empty() => {
            sh_again(link, step5, server::REOPEN, &[dir]).await?;
            None
        }
        other => other,
    };
    let Some((listed, _)) = finished else {
        sh_again(link, step5, server::CLEAR_FAILURES, &[dir]).await?;
        state.records = records(link, dir, "list").await?;
        return Ok(());
    };
    // Step 5 finished before with every mailbox archived: its manifest's archives are what
    // this run copies; an archive of the manifest that is gone is named.
    state.exported = true;
    let found = records(link, dir, "list").await?;
    for f in &listed {
        match found.iter().find(|r| r.file.name == f.name) {
            Some(r) if r.file == *f => state.records.push(r.clone()),
            Some(_) => state.failures.push((
                account_of(f.name.as_str()),
                format!("{} changed on the server after step 5", f.name),
            )),
            None => state.failures.push((
                account_of(f.name.as_str()),
                format!("{} of step 5's manifest is gone from the server", f.name),
            )),
        }
    }
    Ok(())
}

/// Step 5 (still open) with step 6 beside it: the mailboxes listed and sized against the
/// server's free space, then passes until every export and copy has ended.
async fn export_and_copy(
    ctx: RunContext<'_>,
    link: &mut Link<'_>,
    state: &mut State,
) -> Result<(), EngineError> {
    let RunContext {
        s, kind, scripts, ..
    } = ctx;
    let dir = ctx.folders.server.as_str();
    // The listing, the mailboxes' size and the server's free space, side by side: each is a
    // round trip, and none needs another's answer.
    let listing = &scripts.listing;
    let sizes = &scripts.sizes;
    let outs = export::sh_together(
        link,
        SopStep::ServerBackup,
        &[
            (
                listing.script,
                listing.args.iter().map(String::as_str).collect(),
            ),
            (&sizes.script, sizes.args()),
            (server::FREE_SPACE, vec![s.server_backup_dir.as_str()]),
        ],
    )
    .await?;
    let mut accounts = export::accounts_of(kind, listing.nul, &outs[0])?;
    // A drill account (Zimbra's) holds someone else's mail while a drill runs, and nothing of
    // its own: it is not backed up.
    if kind.drills_into_an_account() {
        accounts.retain(|a| Some(a) != s.drill_account.as_ref());
    }
    state.jobs = export::name_archives(scripts.extension, accounts);
    let pending = state.pending_exports();
    let (total, largest) = export::sizes_of(&outs[1]);
    let share = |b: u64| b * pending.len() as u64 / state.jobs.len().max(1) as u64;
    let need = total.map(|t| kind.peak_bytes(share(t), largest.unwrap_or(0), s.jobs));
    let floor_kib = export::space_floor(s, &outs[2], need, ctx.progress)?;
    // Only once the room is there (a refused run leaves nothing on the server) and counted for
    // every mailbox (an unchanged one's piece is a link, it takes none).
    if let Some(unchanged) = &scripts.unchanged {
        // The mailboxes unchanged since their last verified backup are not exported.
        // A command line of a thousand mailboxes at most (an SSH request has a size limit).
        // A name with a line break or a tab cannot be matched with its markers: it is exported.
        let plain: Vec<(String, String)> = state
            .pending_exports()
            .into_iter()
            .filter(|(a, _)| !a.contains(['\n', '\t']))
            .collect();
        for batch in plain.chunks(1000) {
            let mut args: Vec<&str> = vec![dir];
            args.extend(unchanged.args.iter().map(String::as_str));
            args.extend(batch.iter().flat_map(|(a, f)| [a.as_str(), f.as_str()]));
            let out = sh_again(link, SopStep::ServerBackup, &unchanged.script, &args).await?;
            if !out.ok {
                tracing::warn!(error = %out.stderr, "the unchanged mailboxes could not be found; they are exported");
            }
            let given = String::from_utf8_lossy(&out.stdout);
            state.unchanged.extend(given.lines().map(str::to_owned));
        }
        state.records = records(link, dir, "list").await?;
    }
    let before = state.jobs.len() - state.pending_exports().len();
    loop {
        match pass(ctx, link.remote(), floor_kib, before, state).await {
            Ok(()) => return Ok(()),
            Err(Break::Fatal(e)) => return Err(e),
            Err(Break::Link(why)) => {
                link.reconnect(current_step(state), &why).await?;
                if !state.exported {
                    export::stop_writers(link, dir).await?;
                    // An export may have finished as the connection went: it is kept.
                    state.records = records(link, dir, "list").await?;
                }
            }
        }
    }
}

fn current_step(state: &State) -> SopStep {
    if state.exported {
        SopStep::CopyAndReport
    } else {
        SopStep::ServerBackup
    }
}

/// The finished archives of `dir` with their records ([`server::SUMS`] in `mode`).
async fn records(
    link: &mut Link<'_>,
    dir: &str,
    mode: &str,
) -> Result<Vec<ExportRecord>, EngineError> {
    let step = SopStep::ServerBackup;
    let out = sh_again(link, step, server::SUMS, &[dir, mode]).await?;
    if !out.ok {
        return Err(EngineError::new(
            step,
            ErrorKind::ServerCommand,
            format!("checksums on the server failed: {}", out.stderr),
        ));
    }
    parse_records(&out.stdout)
        .map_err(|e| EngineError::new(step, ErrorKind::ServerCommand, e.to_string()))
}

/// What one export ended with.
enum Ended {
    Done(ExportRecord),
    Failed(String),
    /// Stopped (or not started) at the free-space floor.
    Floor(String),
    /// The connection went away under it.
    Again(String),
}

async fn export_one(
    remote: &Remote,
    export: &Script,
    dir: &str,
    floor_kib: u64,
    full: &AtomicBool,
    account: String,
    file: String,
) -> (String, String, Ended) {
    if full.load(Ordering::SeqCst) {
        return (account, file, Ended::Floor(floor_text(dir)));
    }
    let floor = floor_kib.to_string();
    let mut args = vec![dir, file.as_str(), floor.as_str(), &export.script, &account];
    args.extend(export.args.iter().map(String::as_str));
    let ended = match remote.sh(server::EXPORT_ONE, &args).await {
        Ok(out) if out.ok => {
            let text = String::from_utf8_lossy(&out.stdout);
            match parse_record(text.lines().last().unwrap_or(""), &file) {
                Ok(record) => Ended::Done(record),
                Err(e) => Ended::Failed(e.to_string()),
            }
        }
        Ok(out) if out.code == Some(99) => {
            full.store(true, Ordering::SeqCst);
            Ended::Floor(out.stderr)
        }
        Ok(out) => {
            if remote.check().await.is_ok() {
                Ended::Failed(format!("exit {:?}: {}", out.code, out.stderr))
            } else {
                Ended::Again(out.stderr)
            }
        }
        Err(e) => Ended::Again(error_chain(&e)),
    };
    (account, file, ended)
}

fn floor_text(dir: &str) -> String {
    format!("not exported: the free space at {dir} reached the floor (MAIL_SERVER_MIN_FREE)")
}

/// One pass over one connection: the exports still to do, the copies of what is exported, the
/// read-backs of what is verified — until all is done or the connection goes.
async fn pass(
    ctx: RunContext<'_>,
    remote: &Remote,
    floor_kib: u64,
    before: usize,
    state: &mut State,
) -> Result<(), Break> {
    let progress = ctx.progress;
    let verified: Vec<ServerFile> = state
        .records
        .iter()
        .filter(|r| state.verified.contains(r.file.name.as_str()))
        .map(|r| r.file.clone())
        .collect();
    let meter = Arc::new(Meter::new(
        &[],
        verified.len(),
        verified.iter().map(|f| f.size).sum(),
        progress.clone(),
    ));
    for f in &verified {
        meter.expect(f.size);
    }
    let result = pass_on(ctx, remote, floor_kib, before, &meter, state).await;
    if result.is_err() {
        // The dropped streams' threads end as their pipes close; what they wrote is counted.
        copy::threads_done(Duration::from_secs(10)).await;
    }
    state.copied.transferred += meter.transferred();
    result?;
    let folders = ctx.folders;
    sync_dir(&folders.local)
        .map_err(|e| Break::Fatal(copy_error(folders, ErrorKind::Copy, e.to_string())))?;
    meter.tell_now();
    Ok(())
}

/// A pass's own bookkeeping, beside the futures it drives: what waits to be copied and read
/// back, how many exports have ended, and the clocks of gathering and copy time.
struct Pass<'a> {
    ctx: RunContext<'a>,
    meter: Arc<Meter>,
    total: usize,
    exports_done: usize,
    /// Exports done before this pass: the ETA's pace is this pass's own.
    before_pass: usize,
    ready: VecDeque<ServerFile>,
    ready_since: Option<Instant>,
    /// Verified and not yet read back.
    reads_waiting: VecDeque<ServerFile>,
    busy_since: Option<Instant>,
}

impl<'a> Pass<'a> {
    fn new(
        ctx: RunContext<'a>,
        meter: &Arc<Meter>,
        before: usize,
        pending: usize,
        state: &State,
    ) -> Self {
        let total = state.jobs.len();
        let exports_done = total - pending;
        let ready = state.to_copy();
        for f in &ready {
            meter.expect(f.size);
        }
        let before_pass = before.max(exports_done);
        if pending > 0 {
            meter.exports(exports_done, total, before_pass);
        }
        // What was verified in an earlier pass and not yet read back.
        let reads_waiting = state
            .records
            .iter()
            .filter(|r| {
                state.verified.contains(r.file.name.as_str())
                    && !state.read_back.contains_key(r.file.name.as_str())
            })
            .map(|r| r.file.clone())
            .collect();
        Pass {
            ctx,
            meter: meter.clone(),
            total,
            exports_done,
            before_pass,
            ready,
            ready_since: None,
            reads_waiting,
            busy_since: None,
        }
    }

    /// Small archives wait a moment for company while exports still run: one stream per
    /// archive costs a round trip each on the server's session.
    fn gathering(&self, exports_open: bool) -> bool {
        exports_open
            && self.ready.len() < GATHER_FILES
            && self.ready.iter().map(|f| f.size).sum::<u64>() < GATHER_BYTES
            && self
                .ready
                .iter()
                .all(|f| f.size < super::copy::OWN_STREAM_FROM)
            && self.ready_since.is_some_and(|t| t.elapsed() < GATHER_WAIT)
    }

    /// The next copy job; the first opens step 6.
    fn next_copy(&mut self, state: &mut State) -> Vec<ServerFile> {
        let job = next_job(&mut self.ready);
        if !state.copy_started {
            state.copy_started = true;
            self.ctx
                .timer
                .start(SopStep::CopyAndReport, self.ctx.progress);
        }
        // Waiting for an export was not a stall: the clock starts with the job.
        self.meter.alive();
        job
    }

    /// Copy time is counted while a copy is under way.
    fn count_copy_time(&mut self, state: &mut State, copies_idle: bool) {
        match (self.busy_since, copies_idle) {
            (None, false) => self.busy_since = Some(Instant::now()),
            (Some(t), true) => {
                state.copy_busy += t.elapsed();
                self.busy_since = None;
            }
            _ => {}
        }
    }

    fn nothing_left(&self, exports_open: bool) -> bool {
        !exports_open && self.ready.is_empty() && self.reads_waiting.is_empty()
    }

    /// One export ended: its archive waits for a copy, or its failure is recorded on the server
    /// at once, so a resumed run knows it failed.
    async fn export_ended(
        &mut self,
        remote: &Remote,
        state: &mut State,
        account: String,
        ended: Ended,
    ) -> Result<(), Break> {
        let dir = self.ctx.folders.server.as_str();
        let failed = match ended {
            Ended::Done(record) => {
                self.meter.expect(record.file.size);
                self.ready_since.get_or_insert_with(Instant::now);
                self.ready.push_back(record.file.clone());
                state.records.push(record);
                None
            }
            Ended::Floor(e) => Some(if e.is_empty() { floor_text(dir) } else { e }),
            Ended::Failed(e) => Some(e),
            Ended::Again(why) => return Err(Break::Link(why)),
        };
        self.exports_done += 1;
        self.meter
            .exports(self.exports_done, self.total, self.before_pass);
        let ok = failed.is_none();
        let (done, total) = (self.exports_done, self.total);
        tell(
            self.ctx.progress,
            Progress::Exported {
                done,
                total,
                current: account.clone(),
                ok,
            },
        );
        if let Some(error) = failed {
            match remote
                .sh(server::RECORD_FAILURE, &[dir, &account, &error])
                .await
            {
                Ok(out) if out.ok => {}
                Ok(out) => return Err(Break::Link(out.stderr)),
                Err(e) => return Err(Break::Link(error_chain(&e))),
            }
            state.failures.push((account, error));
            self.meter.alive();
        }
        Ok(())
    }

    fn read_ended(&self, state: &mut State, file: ServerFile, read: Result<u64, ReadBackError>) {
        state.read_back.insert(file.name.to_string(), read);
        let (done, total) = (state.read_back.len(), state.records.len());
        tell(self.ctx.progress, Progress::ReadBack { done, total });
    }

    /// Once a second: the progress told, and a copy that has had no byte for the stall time
    /// ends the pass (the link is made again).
    fn look(&self, copying: bool) -> Option<Break> {
        self.meter.tell_now();
        let idle = self.meter.idle();
        (copying && idle >= Duration::from_secs(self.ctx.s.stall_secs))
            .then(|| Break::Link(format!("no byte arrived for {} s", idle.as_secs())))
    }

    fn copied(&mut self, state: &mut State, job: Vec<ServerFile>, reused: u64) {
        state.copied.reused += reused;
        for f in job {
            state.verified.insert(f.name.to_string());
            self.reads_waiting.push_back(f);
        }
    }
}

async fn copy_job(
    ctx: RunContext<'_>,
    remote: &Remote,
    job: Vec<ServerFile>,
    meter: Arc<Meter>,
) -> (Vec<ServerFile>, Result<u64, EngineError>) {
    let result = copy_files(remote, ctx.folders, job.clone(), &meter, ctx.seal).await;
    (job, result)
}

async fn read_job(
    ctx: RunContext<'_>,
    file: ServerFile,
) -> (ServerFile, Result<u64, ReadBackError>) {
    let (folder, name) = (ctx.folders.local.clone(), file.name.to_string());
    let encrypted = ctx.seal.is_some();
    let read = tokio::task::spawn_blocking(move || {
        super::archive::read_back_stored(&folder, &name, encrypted)
    })
    .await
    .map_err(ReadBackError::Stopped)
    .and_then(|r| r);
    (file, read)
}

async fn pass_on(
    ctx: RunContext<'_>,
    remote: &Remote,
    floor_kib: u64,
    before: usize,
    meter: &Arc<Meter>,
    state: &mut State,
) -> Result<(), Break> {
    let RunContext { s, folders, .. } = ctx;
    let dir = folders.server.as_str();
    let pending = state.pending_exports();
    let mut pass = Pass::new(ctx, meter, before, pending.len(), state);
    let full = AtomicBool::new(false);
    let full = &full;
    let mut exports = futures::stream::iter(pending.into_iter().map(|(account, file)| {
        export_one(
            remote,
            &ctx.scripts.export,
            dir,
            floor_kib,
            full,
            account,
            file,
        )
    }))
    .buffer_unordered(s.jobs);
    let mut exports_open = !state.exported;
    let mut copies = FuturesUnordered::new();
    let mut reads = FuturesUnordered::new();
    let mut tick = tokio::time::interval(TICK);
    let mut ticks = 0u32;
    let result = loop {
        // Start what can start: copies while streams are free, read-backs likewise.
        let gather = pass.gathering(exports_open);
        while copies.len() < s.copy_streams && !pass.ready.is_empty() && !gather {
            let job = pass.next_copy(state);
            copies.push(copy_job(ctx, remote, job, meter.clone()));
        }
        if pass.ready.is_empty() {
            pass.ready_since = None;
        }
        while reads.len() < READ_BACKS {
            let Some(file) = pass.reads_waiting.pop_front() else {
                break;
            };
            reads.push(read_job(ctx, file));
        }
        pass.count_copy_time(state, copies.is_empty());
        if pass.nothing_left(exports_open) && copies.is_empty() && reads.is_empty() {
            break Ok(());
        }
        let exports_running = exports_open;
        tokio::select! {
            ended = exports.next(), if exports_running => {
                let Some((account, _file, ended)) = ended else {
                    // Every export has ended: step 5 closes with the server's manifest.
                    exports_open = false;
                    if let Err(e) = close_step5(remote, dir, state, ctx.timer, ctx.progress).await {
                        break Err(e);
                    }
                    // The copies were not watched meanwhile: that was not their stall.
                    meter.alive();
                    continue;
                };
                if let Err(e) = pass.export_ended(remote, state, account, ended).await {
                    break Err(e);
                }
            }
            Some((job, result)) = copies.next(), if !copies.is_empty() => {
                match result {
                    Ok(reused) => pass.copied(state, job, reused),
                    Err(e) => break Err(copy_failure(remote, folders, e).await),
                }
            }
            Some((file, read)) = reads.next(), if !reads.is_empty() => {
                pass.read_ended(state, file, read);
            }
            _ = tick.tick() => {
                ticks += 1;
                if !ticks.is_multiple_of(4) {
                    continue;
                }
                if let Some(stalled) = pass.look(!copies.is_empty()) {
                    break Err(stalled);
                }
            }
        }
    };
    pass.count_copy_time(state, true);
    result
}

/// Step 5's end: the server's manifest and `SHA256SUMS` from the records, the export's working
/// files gone.
async fn close_step5(
    remote: &Remote,
    dir: &str,
    state: &mut State,
    timer: &Timer,
    progress: &ProgressSender,
) -> Result<(), Break> {
    let out = match remote.sh(server::SUMS, &[dir, "close"]).await {
        Ok(out) if out.ok => out,
        Ok(out) => {
            if remote.check().await.is_ok() {
                return Err(Break::Fatal(EngineError::new(
                    SopStep::ServerBackup,
                    ErrorKind::ServerCommand,
                    format!("checksums on the server failed: {}", out.stderr),
                )));
            }
            return Err(Break::Link(out.stderr));
        }
        Err(e) => return Err(Break::Link(error_chain(&e))),
    };
    let records = parse_records(&out.stdout).map_err(|e| {
        Break::Fatal(EngineError::new(
            SopStep::ServerBackup,
            ErrorKind::ServerCommand,
            e.to_string(),
        ))
    })?;
    // The server's list is the truth; a record from the export keeps the count it carried.
    for r in &records {
        if let Some(old) = state.records.iter().find(|o| o.file.name == r.file.name) {
            if old.file != r.file {
                return Err(Break::Fatal(EngineError::new(
                    SopStep::ServerBackup,
                    ErrorKind::ServerCommand,
                    format!("{} changed on the server after its export", r.file.name),
                )));
            }
        }
    }
    let known: HashSet<String> = state
        .records
        .iter()
        .map(|r| r.file.name.to_string())
        .collect();
    for r in records {
        if !known.contains(r.file.name.as_str()) {
            state.records.push(r);
        }
    }
    state.exported = true;
    timer.finish(SopStep::ServerBackup, progress);
    Ok(())
}

fn copy_error(folders: &RunFolders, kind: ErrorKind, detail: String) -> EngineError {
    EngineError {
        folders: Some(folders.clone()),
        ..EngineError::new(SopStep::CopyAndReport, kind, detail)
    }
}

/// A failed copy job: the connection's fault (reconnect), or the run's end — a full local disk
/// frees its partial copies first.
async fn copy_failure(remote: &Remote, folders: &RunFolders, e: EngineError) -> Break {
    if e.kind == ErrorKind::Stalled || remote.check().await.is_err() {
        return Break::Link(e.detail);
    }
    copy::threads_done(Duration::from_secs(10)).await;
    let full =
        e.kind == ErrorKind::NoSpace || free_space(&folders.local).is_ok_and(|f| f < (1 << 20));
    if full {
        remove_partials(&folders.local);
        return Break::Fatal(EngineError {
            kind: ErrorKind::NoSpace,
            ..e
        });
    }
    Break::Fatal(e)
}

/// Every mailbox accounted for: an export that ended well left its archive.
fn finish(mut state: State, folders: &RunFolders) -> Result<Overlapped, EngineError> {
    // A failure recorded for an export that then succeeded (its reply was lost, it ran again)
    // is not a failure: the archive is there and verified like any other.
    let archived: HashSet<String> = state
        .jobs
        .iter()
        .filter(|(_, file)| state.records.iter().any(|r| r.file.name.as_str() == file))
        .map(|(account, _)| account.clone())
        .collect();
    state
        .failures
        .retain(|(account, _)| !archived.contains(account));
    for (account, file) in &state.jobs {
        let listed = state.records.iter().any(|r| r.file.name.as_str() == file);
        if !listed && !state.failures.iter().any(|(a, _)| a == account) {
            state.failures.push((
                account.clone(),
                format!("no archive {file} on the server after its export"),
            ));
        }
    }
    if state.records.is_empty() && state.failures.is_empty() {
        return Err(EngineError {
            folders: Some(folders.clone()),
            ..EngineError::new(
                SopStep::ServerBackup,
                ErrorKind::NoMailboxes,
                format!("no archive was written in {}", folders.server),
            )
        });
    }
    Ok(Overlapped {
        accounts: state
            .jobs
            .iter()
            .map(|(account, file)| (file.clone(), account.clone()))
            .collect(),
        records: state.records,
        failures: state.failures,
        read_back: state.read_back,
        copied: state.copied,
        copy_secs: state.copy_busy.as_secs_f64(),
        unchanged: state.unchanged,
    })
}
