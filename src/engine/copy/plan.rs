//! Which files travel how: big ones alone (they resume byte-exactly), small ones together in
//! bounded `tar` batches (one SSH channel per 100 KiB file costs more in round trips than bytes).

use crate::engine::manifest::ServerFile;

/// Files at least this big get a stream of their own and resume byte-exactly.
pub(crate) const OWN_STREAM_FROM: u64 = 8 << 20;
/// Limits of one `tar` stream of small files (the file names travel on its command line).
pub(super) const BATCH_FILES: usize = 400;
pub(super) const BATCH_BYTES: u64 = 64 << 20;

pub(super) enum Job {
    Whole(ServerFile),
    Batch(Vec<ServerFile>),
}

/// Big files alone, small ones in batches; the biggest work first so the streams end together.
pub(super) fn plan(mut todo: Vec<ServerFile>) -> Vec<Job> {
    todo.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let mut jobs = Vec::new();
    let mut batch: Vec<ServerFile> = Vec::new();
    let mut batch_bytes = 0;
    for file in todo {
        if file.size >= OWN_STREAM_FROM {
            jobs.push(Job::Whole(file));
            continue;
        }
        if batch.len() == BATCH_FILES || batch_bytes + file.size > BATCH_BYTES {
            jobs.push(Job::Batch(std::mem::take(&mut batch)));
            batch_bytes = 0;
        }
        batch_bytes += file.size;
        batch.push(file);
    }
    if !batch.is_empty() {
        jobs.push(Job::Batch(batch));
    }
    jobs
}

/// The next copy job from the archives ready to go (steps 5 and 6 overlapped): the first big
/// one alone, or the small ones in front of it up to a batch's limits. Big ones stay in order.
pub(crate) fn next_job(ready: &mut std::collections::VecDeque<ServerFile>) -> Vec<ServerFile> {
    match ready.front() {
        None => Vec::new(),
        Some(f) if f.size >= OWN_STREAM_FROM => ready.pop_front().into_iter().collect(),
        Some(_) => {
            let mut job = Vec::new();
            let mut bytes = 0;
            let mut keep = std::collections::VecDeque::new();
            while let Some(f) = ready.pop_front() {
                if f.size >= OWN_STREAM_FROM {
                    keep.push_back(f);
                } else if job.len() == BATCH_FILES || bytes + f.size > BATCH_BYTES {
                    ready.push_front(f);
                    break;
                } else {
                    bytes += f.size;
                    job.push(f);
                }
            }
            while let Some(f) = keep.pop_back() {
                ready.push_front(f);
            }
            job
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_archives_leave_as_one_big_one_or_a_bounded_batch_of_small_ones() {
        let mut ready: std::collections::VecDeque<ServerFile> =
            [file("a", 10), file("big", OWN_STREAM_FROM), file("b", 10)]
                .into_iter()
                .collect();
        let names =
            |j: Vec<ServerFile>| -> Vec<String> { j.iter().map(|f| f.name.to_string()).collect() };
        assert_eq!(names(next_job(&mut ready)), vec!["a", "b"]);
        assert_eq!(names(next_job(&mut ready)), vec!["big"]);
        assert!(next_job(&mut ready).is_empty());
        let mut many: std::collections::VecDeque<ServerFile> = (0..BATCH_FILES + 3)
            .map(|i| file(&format!("m{i}"), 1))
            .collect();
        assert_eq!(next_job(&mut many).len(), BATCH_FILES);
        assert_eq!(next_job(&mut many).len(), 3);
    }

    fn file(name: &str, size: u64) -> ServerFile {
        ServerFile {
            sha256: "0".repeat(64),
            size,
            name: crate::engine::manifest::ServerName::parse(name).expect("a plain name"),
        }
    }

    #[test]
    fn big_files_stream_alone_and_small_ones_share_bounded_batches() {
        let mut todo = vec![
            file("big.tar.gz", 1 << 30),
            file("mid.tar.gz", OWN_STREAM_FROM),
        ];
        todo.extend((0..BATCH_FILES + 10).map(|i| file(&format!("m{i}.tar.gz"), 100 << 10)));
        let jobs = plan(todo);
        let shape: Vec<(bool, usize)> = jobs
            .iter()
            .map(|j| match j {
                Job::Whole(_) => (true, 1),
                Job::Batch(b) => (false, b.len()),
            })
            .collect();
        assert_eq!(
            shape,
            vec![(true, 1), (true, 1), (false, BATCH_FILES), (false, 10)]
        );
        let bytes = plan((0..9).map(|i| file(&format!("s{i}"), 15 << 19)).collect());
        let sizes: Vec<usize> = bytes
            .iter()
            .map(|j| match j {
                Job::Batch(b) => b.len(),
                Job::Whole(_) => 1,
            })
            .collect();
        // 7.5 MiB each: eight fill 60 MiB, the ninth would pass BATCH_BYTES.
        assert_eq!(sizes, vec![8, 1]);
    }
}
