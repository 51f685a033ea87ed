//! Who may use the admin console, and for what: the users in
//! `admin_users` run every command, those in `stats_users` the SHOW
//! commands only, in every auth mode (as PgBouncer does). With neither list
//! set in trust mode, where any name is taken at its word, only a client on
//! this machine (a loopback peer) gets in. Decided from plain facts, so
//! every case is a line of a table test.

use super::command::Command;
use crate::config::AuthMethod;
use std::net::SocketAddr;

/// What a console user may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every command (`admin_users`).
    All,
    /// SHOW commands only (`stats_users`).
    Show,
}

/// What the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub user: &'a str,
    pub auth: AuthMethod,
    pub admin_users: &'a [String],
    pub stats_users: &'a [String],
    /// The client connects from this machine.
    pub local_peer: bool,
}

/// Why a user was refused, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// In neither list.
    NotListed,
    /// Trust mode, no list set, and the client is not on this machine.
    NotLocal,
}

impl Denied {
    pub fn as_str(self) -> &'static str {
        match self {
            Denied::NotListed => "the user is in neither admin_users nor stats_users",
            Denied::NotLocal => {
                "trust mode with neither admin_users nor stats_users set: only clients on this machine (loopback) may use the console"
            }
        }
    }
}

/// Whether `facts.user` may use the console, and for what.
pub fn decide(facts: &Facts) -> Result<Access, Denied> {
    let listed = |list: &[String]| list.iter().any(|u| u == facts.user);
    if listed(facts.admin_users) {
        return Ok(Access::All);
    }
    if listed(facts.stats_users) {
        return Ok(Access::Show);
    }
    let no_lists = facts.admin_users.is_empty() && facts.stats_users.is_empty();
    match (facts.auth, no_lists) {
        (AuthMethod::Trust, true) if facts.local_peer => Ok(Access::All),
        (AuthMethod::Trust, true) => Err(Denied::NotLocal),
        _ => Err(Denied::NotListed),
    }
}

/// Whether `peer` is on this machine (an IPv4 or IPv6 loopback address,
/// also written as an IPv4-mapped IPv6 one).
pub fn is_local(peer: &SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

impl Access {
    /// Whether this access may run `command`.
    pub fn permits(self, command: &Command) -> bool {
        match self {
            Access::All => true,
            Access::Show => command.is_show(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AuthMethod::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn who_gets_in_and_with_what() {
        let (admins, stats, none) = (names(&["root"]), names(&["watch"]), Vec::new());
        #[rustfmt::skip]
        let table: [(&str, AuthMethod, &Vec<String>, &Vec<String>, bool, Result<Access, Denied>); 14] = [
            // user     auth         admin    stats   local  decision
            ("root",  Md5,         &admins, &stats, false, Ok(Access::All)),
            ("watch", ScramSha256, &admins, &stats, false, Ok(Access::Show)),
            ("eve",   Md5,         &admins, &stats, true,  Err(Denied::NotListed)),
            ("eve",   ScramSha256, &none,   &none,  true,  Err(Denied::NotListed)),
            ("root",  Trust,       &admins, &none,  false, Ok(Access::All)),
            ("watch", Trust,       &none,   &stats, false, Ok(Access::Show)),
            // A list set in trust mode is the whole rule, local or not.
            ("eve",   Trust,       &admins, &none,  true,  Err(Denied::NotListed)),
            ("eve",   Trust,       &none,   &stats, true,  Err(Denied::NotListed)),
            ("eve",   Trust,       &admins, &stats, false, Err(Denied::NotListed)),
            // Trust mode, no list: this machine only.
            ("eve",   Trust,       &none,   &none,  true,  Ok(Access::All)),
            ("eve",   Trust,       &none,   &none,  false, Err(Denied::NotLocal)),
            ("root",  Trust,       &none,   &none,  false, Err(Denied::NotLocal)),
            // In both lists: admin.
            ("watch", Md5,         &stats,  &stats, false, Ok(Access::All)),
            ("",      Trust,       &admins, &stats, true,  Err(Denied::NotListed)),
        ];
        for (user, auth, admin_users, stats_users, local_peer, expected) in table {
            let facts = Facts {
                user,
                auth,
                admin_users,
                stats_users,
                local_peer,
            };
            assert_eq!(decide(&facts), expected, "{facts:?}");
        }
    }

    #[test]
    fn loopback_peers_are_local() {
        for (addr, local) in [
            ("127.0.0.1:5000", true),
            ("127.8.9.10:5000", true),
            ("[::1]:5000", true),
            ("[::ffff:127.0.0.1]:5000", true),
            ("10.0.0.1:5000", false),
            ("[::ffff:10.0.0.1]:5000", false),
            ("[2001:db8::1]:5000", false),
        ] {
            assert_eq!(is_local(&addr.parse().unwrap()), local, "{addr}");
        }
    }

    #[test]
    fn stats_users_run_show_commands_only() {
        use super::super::command::parse;
        for (text, show) in [
            ("SHOW POOLS", true),
            ("show stats", true),
            ("SHOW ROUTE SELECT 1", true),
            ("", true),
            ("SHOW DATABASES", true),
            ("SHOW CLIENTS", true),
            ("RELOAD", false),
            ("PAUSE", false),
            ("PAUSE app", false),
            ("RESUME", false),
            ("RECONNECT app", false),
            ("WAIT_CLOSE", false),
            ("KILL app", false),
            ("KILL_CLIENT 3", false),
            ("DISABLE app", false),
            ("ENABLE app", false),
            ("SHUTDOWN", false),
        ] {
            let command = parse(text).unwrap();
            assert_eq!(Access::Show.permits(&command), show, "{text}");
            assert!(Access::All.permits(&command), "{text}");
        }
    }
}
