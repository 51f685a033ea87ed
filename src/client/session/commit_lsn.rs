//! Consistency tokens handed out: after a write commits, a client that
//! asked (`report_commit_lsn`, or its own `pgsplit.report_commit_lsn`)
//! gets a ParameterStatus `pgsplit.commit_lsn` with a WAL position that
//! covers the write, before the ReadyForQuery the exchange held back
//! (`Exchange::hold_commit_ready`).

use super::Session;
use crate::client::io::ClientError;
use crate::health::Need;
use crate::protocol::{backend, status};
use bytes::BytesMut;

/// The ParameterStatus that tells a client the WAL position of its write.
pub const COMMIT_LSN: &str = "pgsplit.commit_lsn";

impl Session {
    /// Whether the client is told `pgsplit.commit_lsn` after its writes:
    /// its own `pgsplit.report_commit_lsn`, else `report_commit_lsn`.
    pub(super) fn reports_commit_lsn(&self) -> bool {
        self.settings
            .report_commit_lsn
            .unwrap_or(self.current.config.report_commit_lsn)
    }

    /// The client's write committed and the ReadyForQuery after it was held
    /// back (`Exchange::held_ready`): the client gets a ParameterStatus
    /// `pgsplit.commit_lsn` with a WAL position that covers the write, then
    /// the ReadyForQuery, so the token is in its hands when its commit
    /// returns. The position is the primary's, sampled after the commit
    /// (one sample serves every write committing meanwhile); if none comes
    /// within `pool_timeout` the client gets its ReadyForQuery without it.
    pub(super) async fn report_commit_lsn(&mut self) -> Result<(), ClientError> {
        let topology = self.cluster.topology.clone();
        let ticket = match self.need {
            Need::Ticket(t) => t,
            _ => topology.commit_ticket(),
        };
        let deadline = std::time::Instant::now() + self.current.config.pool.primary.pool_timeout();
        let position = topology.commit_position(ticket, deadline).await;
        self.app.metrics.commit_lsn_report(position.is_some());
        let mut out = BytesMut::new();
        match position {
            Some(lsn) => {
                let token = crate::health::lsn::format(lsn);
                tracing::debug!(client = self.client.id, commit_lsn = %token, "write committed: client told its pgsplit.commit_lsn");
                backend::parameter_status(COMMIT_LSN, &token, &mut out);
                if self.need == Need::Ticket(ticket) {
                    self.need = Need::Lsn(lsn);
                }
            }
            None => tracing::warn!(client = self.client.id,
                "write committed but the primary's WAL position could not be had within pool_timeout: the client gets no pgsplit.commit_lsn for it"),
        }
        backend::ready_for_query(status::IDLE, &mut out);
        self.io.write(&out).await
    }
}
