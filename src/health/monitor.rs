//! The health monitor: one task per server, with its own tokio-postgres
//! connection (apart from the client pools so a full pool never delays a
//! check; held directly, not in a bb8 pool, whose `get` reports a refused
//! connection only as a timeout once `health.timeout` has passed; TLS as
//! `server_tls_sslmode` says, through tokio-postgres-rustls with pgsplit's
//! rustls configuration). Every `health.interval` it checks the server; a
//! server goes down or comes back after `health.threshold` checks in a
//! row agree. Between checks, a read waiting for a replica to catch up (or
//! for a sample of the primary's position) asks for an extra position check.

use super::lsn::{self, Lsn};
use super::{ServerState, Topology};
use crate::config::Config;
use crate::role::Role;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, SimpleQueryMessage};
use tokio_postgres_rustls::MakeRustlsConnect;

/// One round trip: the role, the position (replayed on a standby, the
/// insert position on a primary, which is past every commit acknowledged),
/// and a standby's replay delay, 0 when it has replayed all it received
/// (an idle primary is not lag).
/// On a primary also the insert position's offset in its WAL segment (of
/// the same reading), to recognise a position just past a segment's long
/// page header.
const CHECK: &str = "SELECT r, (CASE WHEN r THEN pg_last_wal_replay_lsn() ELSE l END)::text, \
    (CASE WHEN r AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() \
     THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) ELSE 0 END)::float8, \
    (CASE WHEN r THEN NULL ELSE (pg_walfile_name_offset(l)).file_offset END) \
    FROM (SELECT pg_is_in_recovery() AS r) AS role, \
    LATERAL (SELECT CASE WHEN role.r THEN NULL ELSE pg_current_wal_insert_lsn() END AS l) AS insert";

/// After an extra check of a replica that found no progress, the next
/// waits this long, so reads waiting on a paused replica do not flood it.
const IDLE_POLL_GAP: Duration = Duration::from_millis(1);

/// The monitor tasks; dropping this stops them.
pub struct Monitors(Vec<JoinHandle<()>>);

impl Drop for Monitors {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

pub fn spawn_monitors(
    topology: Arc<Topology>,
    config: &Config,
    tls: Option<&crate::tls::ServerTls>,
) -> Monitors {
    let handles = topology
        .servers
        .iter()
        .map(|server| {
            let monitor = Monitor::new(topology.clone(), server.clone(), config, tls);
            tokio::spawn(monitor.run())
        })
        .collect();
    Monitors(handles)
}

/// What one check saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Observed {
    Down,
    Primary,
    Standby,
}

#[derive(Debug, Clone, Copy)]
struct Check {
    in_recovery: bool,
    position: Lsn,
    lag_seconds: f64,
    /// A primary's insert position's offset in its WAL segment.
    segment_offset: Option<u64>,
}

/// Consecutive observations that differ from the current state.
#[derive(Debug)]
struct Tally {
    state: Observed,
    candidate: Observed,
    streak: u32,
}

impl Tally {
    /// Counts `seen`; returns true when the state changes to it. A server
    /// that answers and reports the other role has that role at once: a
    /// single answer of `pg_is_in_recovery()` is proof (writes must not go
    /// to a demoted primary for `threshold` more checks), while going down
    /// or coming back takes `threshold` agreeing checks, as one failed
    /// check may be a blip.
    fn observe(&mut self, seen: Observed, threshold: u32) -> bool {
        if seen == self.state {
            self.streak = 0;
            return false;
        }
        if seen != Observed::Down && self.state != Observed::Down {
            self.state = seen;
            self.streak = 0;
            return true;
        }
        if seen == self.candidate {
            self.streak += 1;
        } else {
            self.candidate = seen;
            self.streak = 1;
        }
        if self.streak >= threshold {
            self.state = seen;
            self.streak = 0;
            return true;
        }
        false
    }
}

/// What woke a monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Its interval: a check that counts toward `threshold`.
    Scheduled,
    /// A read waits for a replica's position: recorded, not judged.
    Poll,
    /// A re-check (`Topology::recheck`): judged at once.
    Urgent,
}

struct Monitor {
    topology: Arc<Topology>,
    server: Arc<ServerState>,
    login: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    /// The monitor's connection, opened again after it fails.
    conn: Option<Client>,
    interval: Duration,
    timeout: Duration,
    threshold: u32,
    tally: Tally,
}

impl Monitor {
    fn new(
        topology: Arc<Topology>,
        server: Arc<ServerState>,
        config: &Config,
        tls: Option<&crate::tls::ServerTls>,
    ) -> Monitor {
        let (user, password, database) = config.health_login();
        let (host, port) = server
            .addr
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.parse().unwrap_or(5432)))
            .unwrap_or_else(|| (server.addr.to_string(), 5432));
        let mut pg = tokio_postgres::Config::new();
        pg.host(&host)
            .port(port)
            .user(&user)
            .dbname(&database)
            .application_name("pgsplit health monitor")
            .connect_timeout(config.health.timeout());
        if let Some(password) = &password {
            pg.password(password);
        }
        // Certificates are checked (or not) by the rustls configuration;
        // tokio-postgres only needs to know whether TLS is optional.
        let (ssl_mode, rustls) = match tls {
            Some(tls) if tls.mode.requires_tls() => (SslMode::Require, tls.client_config()),
            Some(tls) => (SslMode::Prefer, tls.client_config()),
            None => (
                SslMode::Disable,
                crate::tls::ServerTls::unused_client_config(),
            ),
        };
        pg.ssl_mode(ssl_mode);
        let state = match server.configured {
            Role::Primary => Observed::Primary,
            Role::Replica => Observed::Standby,
        };
        Monitor {
            topology,
            server,
            login: pg,
            tls: MakeRustlsConnect::new(rustls),
            conn: None,
            interval: config.health.interval(),
            timeout: config.health.timeout(),
            threshold: config.health.threshold,
            tally: Tally {
                state,
                candidate: state,
                streak: 0,
            },
        }
    }

    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = tokio::select! {
                _ = tick.tick() => Wake::Scheduled,
                _ = self.server.poll.notified() => Wake::Poll,
                _ = self.server.urgent.notified() => Wake::Urgent,
            };
            let scheduled = wake != Wake::Poll;
            let before = self.server.position();
            let covered = self.topology.tickets.load(Ordering::Acquire);
            let result = self.check().await;
            if let Ok(check) = &result {
                self.record(check, covered);
            }
            match wake {
                Wake::Scheduled => self.judge(&result, self.threshold),
                Wake::Urgent => {
                    // Fencing needs a change of role, or the writer's loss,
                    // seen at once; a replica that fails one check of a
                    // re-check round is not down for that (reads would
                    // lose it just as the primary went away).
                    let threshold = match (&result, self.server.is_writer()) {
                        (Err(_), false) => self.threshold,
                        _ => 1,
                    };
                    self.judge(&result, threshold);
                    self.topology.rechecked();
                }
                Wake::Poll if self.server.is_writer() => {
                    self.topology
                        .position_samples
                        .fetch_add(1, Ordering::Relaxed);
                }
                Wake::Poll => {}
            }
            self.topology.progressed();
            // The writer's extra checks are position samples that reads
            // wait for (one serves every read that came meanwhile): each
            // is needed whether or not the position moved.
            if !scheduled && !self.server.is_writer() && self.server.position() == before {
                tokio::time::sleep(IDLE_POLL_GAP).await;
            }
        }
    }

    async fn check(&mut self) -> Result<Check, CheckError> {
        let result = match tokio::time::timeout(self.timeout, self.query()).await {
            Ok(result) => result,
            Err(_) => Err(CheckError::Server(format!(
                "no answer within {} s",
                self.timeout.as_secs_f64()
            ))),
        };
        if result.is_err() {
            // Whatever state the connection is in, the next check starts
            // on a new one.
            self.conn = None;
        }
        result
    }

    async fn query(&mut self) -> Result<Check, CheckError> {
        let conn = match self.conn.take().filter(|c| !c.is_closed()) {
            Some(conn) => self.conn.insert(conn),
            None => {
                let (client, connection) = self
                    .login
                    .connect(self.tls.clone())
                    .await
                    .map_err(|e| CheckError::of(&e))?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                self.conn.insert(client)
            }
        };
        let rows = conn
            .simple_query(CHECK)
            .await
            .map_err(|e| CheckError::of(&e))?;
        parse(&rows).map_err(CheckError::Server)
    }

    fn record(&self, check: &Check, covered: u64) {
        if check.in_recovery {
            self.topology
                .replica_position(&self.server, check.position, check.lag_seconds);
        } else {
            let position = lsn::normalize_insert_position(check.position, check.segment_offset);
            self.topology
                .primary_position(&self.server, position, covered);
        }
    }

    /// Feeds a check to the tally; applies a change of state. A check
    /// pgsplit could not make for want of file descriptors says nothing of
    /// the server: it is not counted.
    fn judge(&mut self, result: &Result<Check, CheckError>, threshold: u32) {
        if let Err(error @ CheckError::OutOfFiles(_)) = result {
            tracing::debug!(server = %self.server.addr, %error, "health check not made: not counted");
            return;
        }
        let seen = match result {
            Err(_) => Observed::Down,
            Ok(c) if c.in_recovery => Observed::Standby,
            Ok(_) => Observed::Primary,
        };
        if let Err(error) = result {
            self.server.check_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(server = %self.server.addr, %error, "health check failed");
        }
        if !self.tally.observe(seen, threshold) {
            return;
        }
        let server = &self.server;
        server.up.store(seen != Observed::Down, Ordering::Relaxed);
        if seen != Observed::Down {
            server
                .in_recovery
                .store(seen == Observed::Standby, Ordering::Relaxed);
        }
        match (seen, result) {
            (Observed::Down, Err(error)) => tracing::warn!(server = %server.addr, %error,
                checks = threshold, "server is down: no new statements go to it"),
            (Observed::Standby, _) => tracing::info!(server = %server.addr,
                position = %lsn::format(server.position()), "server is up as a replica: it serves reads"),
            _ => {
                tracing::info!(server = %server.addr, "server is up and reports it is a primary (not in recovery)")
            }
        }
        self.topology.elect();
    }
}

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
enum CheckError {
    /// The server did not answer, or not as it should.
    #[error("{0}")]
    Server(String),
    /// pgsplit could not make the check: it is out of file descriptors.
    /// Says nothing about the server (`judge` does not count it).
    #[error("pgsplit is out of file descriptors: {0}")]
    OutOfFiles(String),
}

impl CheckError {
    fn of(error: &(dyn std::error::Error + 'static)) -> CheckError {
        match crate::fd_limit::caused_by_exhaustion(error) {
            true => CheckError::OutOfFiles(error.to_string()),
            false => CheckError::Server(error.to_string()),
        }
    }
}

fn parse(rows: &[SimpleQueryMessage]) -> Result<Check, String> {
    let row = rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or("health check returned no row")?;
    let in_recovery = row.get(0) == Some("t");
    let position = row.get(1).and_then(lsn::parse).unwrap_or(0);
    let lag_seconds = row.get(2).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let segment_offset = row.get(3).and_then(|s| s.parse().ok());
    Ok(Check {
        in_recovery,
        position,
        lag_seconds,
        segment_offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_after_threshold_agreeing_checks() {
        let mut tally = Tally {
            state: Observed::Standby,
            candidate: Observed::Standby,
            streak: 0,
        };
        assert!(!tally.observe(Observed::Down, 3));
        assert!(!tally.observe(Observed::Down, 3));
        // One good check in between starts the count again.
        assert!(!tally.observe(Observed::Standby, 3));
        assert!(!tally.observe(Observed::Down, 3));
        assert!(!tally.observe(Observed::Down, 3));
        assert!(tally.observe(Observed::Down, 3));
        assert_eq!(tally.state, Observed::Down);
        // A mixed streak (down, then promoted) counts per observation.
        assert!(!tally.observe(Observed::Primary, 2));
        assert!(tally.observe(Observed::Primary, 2));
    }

    #[test]
    fn a_server_that_answers_with_the_other_role_has_it_at_once() {
        let mut tally = Tally {
            state: Observed::Primary,
            candidate: Observed::Primary,
            streak: 0,
        };
        // Demoted: one answer is proof.
        assert!(tally.observe(Observed::Standby, 3));
        assert_eq!(tally.state, Observed::Standby);
        // Promoted: likewise.
        assert!(tally.observe(Observed::Primary, 3));
        // Going down still takes the threshold.
        assert!(!tally.observe(Observed::Down, 3));
        assert_eq!(tally.state, Observed::Primary);
    }
}
