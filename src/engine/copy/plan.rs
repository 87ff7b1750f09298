//! Which files travel how: big ones alone (they resume byte-exactly), small ones together in
//! bounded `tar` batches (one SSH channel per 100 KiB file costs more in round trips than bytes).

use crate::engine::manifest::ServerFile;

/// Files at least this big get a stream of their own and resume byte-exactly.
pub(super) const OWN_STREAM_FROM: u64 = 8 << 20;
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

#[cfg(test)]
mod tests {
    use super::*;

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
