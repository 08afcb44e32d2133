//! The simulated queue: first in, first out, except that jobs handed back by a draining pod go to the front, as a
//! nacked or requeued message is the next one delivered.

use std::collections::VecDeque;

/// Jobs are indices into the world's arrival-sorted jobs, so the jobs that arrived and never started are simply
/// the index range `next_fresh..arrived`; only handed-back jobs need storage.
#[derive(Debug, Default)]
pub(super) struct Queue {
    handed_back: VecDeque<usize>,
    next_fresh: usize,
    arrived: usize,
}

impl Queue {
    /// The next job in arrival order has arrived.
    pub(super) fn arrive(&mut self) {
        self.arrived += 1;
    }

    /// How many jobs have arrived so far; also the index of the next job to arrive.
    pub(super) fn arrived(&self) -> usize {
        self.arrived
    }

    pub(super) fn len(&self) -> usize {
        self.handed_back.len() + (self.arrived - self.next_fresh)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The job a free worker slot takes next.
    pub(super) fn pop(&mut self) -> Option<usize> {
        if let Some(job) = self.handed_back.pop_front() {
            return Some(job);
        }
        (self.next_fresh < self.arrived).then(|| {
            self.next_fresh += 1;
            self.next_fresh - 1
        })
    }

    /// The arrival time of the job that has waited longest, given each job's arrival time.
    pub(super) fn oldest(&self, arrival_s: impl Fn(usize) -> f64) -> Option<f64> {
        let fresh = (self.next_fresh < self.arrived).then(|| arrival_s(self.next_fresh));
        self.handed_back.iter().map(|&job| arrival_s(job)).chain(fresh).min_by(f64::total_cmp)
    }

    /// Puts jobs back at the front, keeping their given order: the first of them is served next.
    pub(super) fn hand_back(&mut self, jobs: &[usize]) {
        for &job in jobs.iter().rev() {
            self.handed_back.push_front(job);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_arrivals_in_order_and_handed_back_jobs_before_them() {
        let mut queue = Queue::default();
        for _ in 0..4 {
            queue.arrive();
        }
        assert_eq!((queue.pop(), queue.pop()), (Some(0), Some(1)));
        queue.hand_back(&[0]);
        queue.hand_back(&[1, 5]);
        assert_eq!(queue.len(), 5);
        // Job 0 arrived first and was handed back behind 1 and 5.
        assert_eq!(queue.oldest(|job| job as f64 * 10.0), Some(0.0));
        let order: Vec<usize> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(order, vec![1, 5, 0, 2, 3]);
        assert!(queue.is_empty());
        assert_eq!(queue.oldest(|job| job as f64), None);
        assert_eq!(queue.arrived(), 4);
    }
}
