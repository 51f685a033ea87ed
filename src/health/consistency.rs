//! Read-your-writes by WAL position.
//!
//! Every write pgsplit sees commit on the primary takes a ticket (a counter,
//! no round trip). A read that must see those writes needs the primary's
//! position sampled *after* its ticket: the insert position then is past
//! the commit record. The sample is taken lazily, by the writer's monitor,
//! only when such a read asks for one, so writes cost nothing, and one
//! sample serves every read waiting at the time. A replica whose replayed
//! position has reached the sample has the write.

use super::lsn::Lsn;
use super::{ServerState, Topology};
use crate::config::Consistency;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long reads skip waiting after a wait ran out.
const FUTILE_WAIT_BACKOFF: Duration = Duration::from_secs(1);

/// What a client's next read must see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Need {
    /// Nothing: it has not written (or consistency is eventual).
    #[default]
    Any,
    /// Its writes up to this ticket; the position is not sampled yet.
    Ticket(u64),
    /// Everything up to this WAL position.
    Lsn(Lsn),
}

impl Topology {
    /// `consistency = "cluster"`: a read arrived, and must see the writer's
    /// position as of now, whoever wrote: a ticket that only a position
    /// sample started after this moment covers. Every read that arrives
    /// while a sample is in flight is covered by the next one, so the
    /// primary answers one query per round trip, not one per read.
    pub fn read_arrived(&self) -> Need {
        Need::Ticket(self.tickets.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// A write committed on the writer; returns the client's new need.
    pub fn committed(&self) -> Need {
        Need::Ticket(self.commit_ticket())
    }

    /// The ticket of a write that committed on the writer.
    pub fn commit_ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A WAL position that covers a write that took `ticket`, once the
    /// writer's position has been sampled after it, whatever the
    /// consistency mode: the `pgsplit.commit_lsn` a client is told.
    /// Waits for that sample until `deadline`; `None` if it did not come
    /// (or there is no writer to sample).
    pub async fn commit_position(&self, ticket: u64, deadline: Instant) -> Option<Lsn> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a sample cannot slip past.
            notified.as_mut().enable();
            if self.sample_covered.load(Ordering::Acquire) >= ticket {
                return Some(self.sample_lsn.load(Ordering::Acquire));
            }
            self.writer()?.request_poll();
            tokio::time::timeout_at(deadline.into(), notified)
                .await
                .ok()?;
        }
    }

    /// The position a replica must have replayed to serve a read now, or
    /// `None` while it is not known (a sample is due). `session` is the
    /// client's own need, resolved in place once its sample is in.
    pub fn required(&self, session: &mut Need) -> Option<Lsn> {
        let need = match self.consistency {
            Consistency::Eventual => return Some(0),
            // Cluster: `session` is the read's own ticket (`read_arrived`).
            Consistency::Session | Consistency::Cluster => *session,
            Consistency::Global => match self.tickets.load(Ordering::Acquire) {
                0 => Need::Any,
                t => Need::Ticket(t),
            },
        };
        let lsn = match need {
            Need::Any => return Some(0),
            Need::Lsn(lsn) => return Some(lsn),
            Need::Ticket(t) => self.sampled_after(t)?,
        };
        if matches!(
            self.consistency,
            Consistency::Session | Consistency::Cluster
        ) {
            *session = Need::Lsn(lsn);
        }
        Some(lsn)
    }

    /// The writer's position sampled after ticket `t`. With no writer there
    /// is nothing left to sample: the last sample is the best there is.
    fn sampled_after(&self, t: u64) -> Option<Lsn> {
        if self.sample_covered.load(Ordering::Acquire) >= t || self.writer().is_none() {
            Some(self.sample_lsn.load(Ordering::Acquire))
        } else {
            None
        }
    }

    /// Asks for what `required` lacks (a sample from the writer, or fresh
    /// replay positions from the replicas behind) and waits until a check
    /// reports back. False when `deadline` passed first.
    pub async fn wait_for_progress(&self, required: Option<Lsn>, deadline: Instant) -> bool {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        // Registered before asking, so the answer cannot slip past.
        notified.as_mut().enable();
        // The replicas are asked at once, also while the sample is due: by
        // the time it is in, they have likely replayed the write too.
        if required.is_none() {
            if let Some(writer) = self.writer() {
                writer.request_poll();
            }
        }
        self.servers
            .iter()
            .filter(|s| s.serves_reads() && required.is_none_or(|lsn| s.position() < lsn))
            .for_each(|s| s.request_poll());
        tokio::time::timeout_at(deadline.into(), notified)
            .await
            .is_ok()
    }

    /// Whether reads should skip waiting for replicas: a recent wait ran
    /// out, so replicas are too far behind (or commits reach them late,
    /// as with synchronous_commit = off) and waiting would only add
    /// `max_wait_for_replica` to every read after a write.
    pub fn waits_futile(&self) -> bool {
        (self.epoch.elapsed().as_millis() as u64) < self.skip_waits_until_ms.load(Ordering::Relaxed)
    }

    /// A wait ran out: reads go straight to the primary for a while.
    pub fn wait_ran_out(&self) {
        let until = (self.epoch.elapsed() + FUTILE_WAIT_BACKOFF).as_millis() as u64;
        let before = self.skip_waits_until_ms.swap(until, Ordering::Relaxed);
        if before < until.saturating_sub(FUTILE_WAIT_BACKOFF.as_millis() as u64) {
            tracing::info!(backoff_seconds = FUTILE_WAIT_BACKOFF.as_secs_f64(),
                "no replica caught up within max_wait_for_replica: reads that need a fresher replica go to the primary without waiting for a while");
        }
    }

    /// Wakes reads waiting in `wait_for_progress`.
    pub(super) fn progressed(&self) {
        self.changed.notify_waiters();
    }
}

impl ServerState {
    /// Whether this server can serve a read that must see `required`.
    pub fn has_replayed(&self, required: Lsn) -> bool {
        required == 0 || self.position() >= required
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn topology(consistency: Consistency) -> std::sync::Arc<Topology> {
        Topology::new(&Config {
            primary: Some("p:1".into()),
            replicas: vec!["r:1".into()],
            consistency,
            ..Config::default()
        })
    }

    #[test]
    fn session_need_resolves_to_a_sample_taken_after_the_write() {
        let t = topology(Consistency::Session);
        let mut need = Need::Any;
        assert_eq!(t.required(&mut need), Some(0));
        need = t.committed();
        // A sample covering no tickets does not count.
        t.primary_position(&t.servers[0], 100, 0);
        assert_eq!(t.required(&mut need), None);
        t.primary_position(&t.servers[0], 200, 1);
        assert_eq!(t.required(&mut need), Some(200));
        assert_eq!(need, Need::Lsn(200));
        // Later samples do not make an old need stricter.
        t.primary_position(&t.servers[0], 900, 1);
        assert_eq!(t.required(&mut need), Some(200));
    }

    #[test]
    fn global_need_follows_every_client_write() {
        let t = topology(Consistency::Global);
        let mut other = Need::Any;
        assert_eq!(t.required(&mut other), Some(0));
        t.committed();
        assert_eq!(t.required(&mut other), None);
        t.primary_position(&t.servers[0], 300, 1);
        assert_eq!(t.required(&mut other), Some(300));
    }

    #[test]
    fn cluster_reads_need_a_sample_taken_after_they_arrived() {
        let t = topology(Consistency::Cluster);
        // A write nobody told pgsplit about: only the primary's position
        // says it happened.
        t.primary_position(&t.servers[0], 500, 0);
        let mut read = t.read_arrived();
        assert_eq!(
            t.required(&mut read),
            None,
            "a sample from before the read does not count"
        );
        t.primary_position(&t.servers[0], 700, 1);
        assert_eq!(t.required(&mut read), Some(700));
        // Two reads in flight share the next sample.
        let (mut a, mut b) = (t.read_arrived(), t.read_arrived());
        t.primary_position(&t.servers[0], 800, 3);
        assert_eq!(
            (t.required(&mut a), t.required(&mut b)),
            (Some(800), Some(800))
        );
    }

    #[test]
    fn eventual_needs_nothing() {
        let t = topology(Consistency::Eventual);
        let mut need = t.committed();
        assert_eq!(t.required(&mut need), Some(0));
    }
}
