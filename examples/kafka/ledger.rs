//! The Kafka worker's offset ledger: per assigned partition, the jobs received and not yet committed.
//!
//! Jobs run concurrently and finish out of order, but a Kafka commit says "everything before this offset is done".
//! So only the end of each partition's finished prefix may be stored for commit, and a finished job stays here,
//! with its body, until a commit covers it: its `done` line is printed then, not before. The ledger's keys are
//! also the worker's assignment, which it pauses and resumes with its intake.

use std::collections::BTreeMap;

use queue_scaler::drain::JobHandle;

enum Entry {
    Running(JobHandle),
    Finished(String),
}

/// A partition's finished prefix: the offset to commit and the bodies of the jobs it covers.
pub struct Prefix {
    pub next: i64,
    pub bodies: Vec<String>,
}

/// Per assigned partition: offsets received and not yet committed.
#[derive(Default)]
pub struct Ledger {
    partitions: BTreeMap<i32, BTreeMap<i64, Entry>>,
    /// Whether the assigned partitions are paused now (intake stopped).
    pub paused: bool,
}

impl Ledger {
    /// The partitions assigned now.
    pub fn assigned(&self) -> impl Iterator<Item = i32> + '_ {
        self.partitions.keys().copied()
    }

    pub fn assign(&mut self, partition: i32) {
        self.partitions.entry(partition).or_default();
    }

    /// Records a job started; false if its partition is no longer assigned here (revoked since it was fetched).
    pub fn track(&mut self, partition: i32, offset: i64, job: JobHandle) -> bool {
        let Some(pending) = self.partitions.get_mut(&partition) else { return false };
        pending.insert(offset, Entry::Running(job));
        true
    }

    /// Marks a job finished; returns the end of its partition's finished prefix, to store for the next commit,
    /// or `None` if the partition was revoked or rewound since (its next run is committed instead).
    pub fn finish(&mut self, partition: i32, offset: i64, body: String) -> Option<i64> {
        let pending = self.partitions.get_mut(&partition)?;
        *pending.get_mut(&offset)? = Entry::Finished(body);
        let mut next = None;
        for (&offset, entry) in pending.iter() {
            match entry {
                Entry::Finished(_) => next = Some(offset + 1),
                Entry::Running(_) => break,
            }
        }
        next
    }

    /// A commit of `partition` up to `next` succeeded: forgets the finished jobs it covers and returns their
    /// bodies.
    pub fn committed(&mut self, partition: i32, next: i64) -> Vec<String> {
        let Some(pending) = self.partitions.get_mut(&partition) else { return Vec::new() };
        let later = pending.split_off(&next);
        let covered = std::mem::replace(pending, later);
        let mut bodies = Vec::new();
        for (offset, entry) in covered {
            match entry {
                Entry::Finished(body) => bodies.push(body),
                // Never below a stored offset; kept rather than lost if it ever were.
                running @ Entry::Running(_) => drop(pending.insert(offset, running)),
            }
        }
        bodies
    }

    /// Forgets a revoked partition: its next owner resumes from the committed offset. Returns its finished prefix,
    /// to commit now, and the jobs still running there, to hand back.
    pub fn revoke(&mut self, partition: i32) -> (Option<Prefix>, Vec<JobHandle>) {
        let entries = self.partitions.remove(&partition).unwrap_or_default();
        let mut prefix = Prefix { next: 0, bodies: Vec::new() };
        let mut running = Vec::new();
        for (offset, entry) in entries {
            match entry {
                Entry::Finished(body) if running.is_empty() => {
                    prefix.next = offset + 1;
                    prefix.bodies.push(body);
                }
                // Finished past a running job: not committed, the next owner does it again.
                Entry::Finished(_) => {}
                Entry::Running(job) => running.push(job),
            }
        }
        ((!prefix.bodies.is_empty()).then_some(prefix), running)
    }

    /// Forgets `offset` and everything after it in its partition, which the consumer fetches again; returns the
    /// jobs still running there, to hand back. `None` if the offset is no longer held (its partition was revoked).
    pub fn rewind(&mut self, partition: i32, offset: i64) -> Option<Vec<JobHandle>> {
        let pending = self.partitions.get_mut(&partition)?;
        pending.contains_key(&offset).then(|| {
            pending
                .split_off(&offset)
                .into_values()
                .filter_map(|entry| match entry {
                    Entry::Running(job) => Some(job),
                    Entry::Finished(_) => None,
                })
                .collect()
        })
    }
}
