//! The keys that bound what clients may take: how many may connect, how
//! long they may take to log in or sit idle, how long a statement may run,
//! how many server connections a database or a user may have, and how a
//! client's socket notices a peer that vanished. PgBouncer's names and
//! meanings, so its users find them; documented in `config.toml.example`.

use super::{invalid, Config, ConfigError};
use std::time::Duration;

/// `max_client_conn` when the file does not say: well above what any one
/// application's pools open, so a proxy put in front of a working setup
/// does not start refusing it (PgBouncer's 100 would), and low enough to
/// bound pgsplit's memory (a few KiB per idle client, see README) and its
/// file descriptors.
pub(super) const DEFAULT_MAX_CLIENT_CONN: usize = 10_000;

/// Linux's largest TCP_KEEPIDLE and TCP_KEEPINTVL (seconds) and TCP_KEEPCNT.
const MAX_KEEPALIVE_SECONDS: u32 = 32_767;
const MAX_KEEPALIVE_PROBES: u32 = 127;

/// TCP keepalive on a client socket; `None` fields keep the system's
/// default (`sysctl net.ipv4.tcp_keepalive_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keepalive {
    pub idle: Option<Duration>,
    pub interval: Option<Duration>,
    pub probes: Option<u32>,
}

/// The options set on every accepted client socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientSocket {
    /// `None`: keepalive off (`tcp_keepalive = false`).
    pub keepalive: Option<Keepalive>,
    /// TCP_USER_TIMEOUT; `None`: the system's default.
    pub user_timeout: Option<Duration>,
}

/// Seconds as a duration, `None` for 0 (off).
fn seconds(value: f64) -> Option<Duration> {
    (value > 0.0).then(|| Duration::from_secs_f64(value))
}

impl Config {
    /// How long a client has from its connection to the end of its login
    /// (startup packet, authentication, greeting); `None`: no limit.
    pub fn client_login_timeout(&self) -> Option<Duration> {
        seconds(self.client_login_timeout)
    }

    /// How long a client may send nothing while it has no statement
    /// running and no server transaction open; `None`: no limit.
    pub fn client_idle_timeout(&self) -> Option<Duration> {
        seconds(self.client_idle_timeout)
    }

    /// How long a statement may run before pgsplit cancels it; `None`: no
    /// limit.
    pub fn query_timeout(&self) -> Option<Duration> {
        seconds(self.query_timeout)
    }

    /// The socket options for client connections.
    pub fn client_socket(&self) -> ClientSocket {
        let nonzero = |s: u32| (s > 0).then(|| Duration::from_secs(u64::from(s)));
        ClientSocket {
            keepalive: self.tcp_keepalive.then(|| Keepalive {
                idle: nonzero(self.tcp_keepidle),
                interval: nonzero(self.tcp_keepintvl),
                probes: (self.tcp_keepcnt > 0).then_some(self.tcp_keepcnt),
            }),
            user_timeout: (self.tcp_user_timeout > 0)
                .then(|| Duration::from_millis(self.tcp_user_timeout)),
        }
    }

    pub(super) fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.max_client_conn == 0 {
            return Err(invalid("max_client_conn", "must be at least 1"));
        }
        for (name, value) in [
            ("client_login_timeout", self.client_login_timeout),
            ("client_idle_timeout", self.client_idle_timeout),
            ("query_timeout", self.query_timeout),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(invalid(
                    name,
                    "must be 0 (off) or a positive number of seconds",
                ));
            }
        }
        for (name, value) in [
            ("tcp_keepidle", self.tcp_keepidle),
            ("tcp_keepintvl", self.tcp_keepintvl),
        ] {
            if value > MAX_KEEPALIVE_SECONDS {
                return Err(invalid(
                    name,
                    format!("must be 0 (the system's default) to {MAX_KEEPALIVE_SECONDS} seconds"),
                ));
            }
        }
        if self.tcp_keepcnt > MAX_KEEPALIVE_PROBES {
            return Err(invalid(
                "tcp_keepcnt",
                format!("must be 0 (the system's default) to {MAX_KEEPALIVE_PROBES} probes"),
            ));
        }
        if self.tcp_user_timeout > i32::MAX as u64 {
            return Err(invalid(
                "tcp_user_timeout",
                format!(
                    "must be 0 (the system's default) to {} milliseconds",
                    i32::MAX
                ),
            ));
        }
        for (i, user) in self.stats_users.iter().enumerate() {
            if user.is_empty() {
                return Err(invalid(&format!("stats_users[{i}]"), "must not be empty"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::valid_for_tests as valid;

    #[test]
    fn defaults_are_pgbouncers_where_it_has_one() {
        let c = valid();
        c.validate().unwrap();
        assert_eq!(c.max_client_conn, 10_000);
        assert_eq!(c.client_login_timeout(), Some(Duration::from_secs(60)));
        assert_eq!(c.client_idle_timeout(), None);
        assert_eq!(c.query_timeout(), None);
        assert_eq!(
            c.client_socket(),
            ClientSocket {
                keepalive: Some(Keepalive::default()),
                user_timeout: None
            }
        );
    }

    #[test]
    fn keepalive_settings_map_to_socket_options() {
        let c = Config {
            tcp_keepidle: 30,
            tcp_keepintvl: 5,
            tcp_keepcnt: 4,
            tcp_user_timeout: 45_000,
            ..valid()
        };
        assert_eq!(
            c.client_socket(),
            ClientSocket {
                keepalive: Some(Keepalive {
                    idle: Some(Duration::from_secs(30)),
                    interval: Some(Duration::from_secs(5)),
                    probes: Some(4),
                }),
                user_timeout: Some(Duration::from_secs(45)),
            }
        );
        let off = Config {
            tcp_keepalive: false,
            ..c
        };
        assert_eq!(off.client_socket().keepalive, None);
    }

    #[test]
    fn bad_limits_name_their_key() {
        let cases: [(&str, fn(&mut Config)); 8] = [
            ("max_client_conn", |c| c.max_client_conn = 0),
            ("client_login_timeout", |c| c.client_login_timeout = -1.0),
            ("client_idle_timeout", |c| c.client_idle_timeout = f64::NAN),
            ("query_timeout", |c| c.query_timeout = f64::INFINITY),
            ("tcp_keepidle", |c| c.tcp_keepidle = 40_000),
            ("tcp_keepcnt", |c| c.tcp_keepcnt = 128),
            ("tcp_user_timeout", |c| c.tcp_user_timeout = u64::MAX),
            ("stats_users[0]", |c| c.stats_users = vec![String::new()]),
        ];
        for (key, spoil) in cases {
            let mut c = valid();
            spoil(&mut c);
            let error = c.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn keys_parse_from_toml() {
        let c = Config::from_toml(
            "primary = \"h:1\"\nmax_client_conn = 50\nmax_db_connections = 4\n\
             max_user_connections = 3\nquery_timeout = 2.5\ntcp_keepalive = false\n\
             stats_users = [\"watcher\"]\n",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.max_client_conn, 50);
        assert_eq!((c.max_db_connections, c.max_user_connections), (4, 3));
        assert_eq!(c.query_timeout(), Some(Duration::from_millis(2500)));
        assert_eq!(c.client_socket().keepalive, None);
        assert_eq!(c.stats_users, ["watcher"]);
    }
}
