//! The keys read once at start-up: the listening sockets, the runtime's
//! threads, the log format, and the instance id in every cancel key
//! handed out. A reload keeps their running values (and says so), so that
//! the configuration in force, which SHOW CONFIG lists, is what runs.

use super::Config;

/// Keys a reload cannot change.
pub const RESTART_KEYS: [&str; 7] = [
    "listen",
    "reuse_port",
    "peer_listen",
    "metrics_listen",
    "worker_threads",
    "log_format",
    "instance_id",
];

impl Config {
    /// Puts `running`'s values back into the keys a reload cannot change;
    /// returns the keys whose new value was set aside.
    pub fn keep_restart_keys(&mut self, running: &Config) -> Vec<&'static str> {
        let mut kept = Vec::new();
        macro_rules! keep {
            ($($key:ident),*) => {$(
                if self.$key != running.$key {
                    self.$key = running.$key.clone();
                    kept.push(stringify!($key));
                }
            )*};
        }
        keep!(
            listen,
            reuse_port,
            peer_listen,
            metrics_listen,
            worker_threads,
            log_format,
            instance_id
        );
        kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_what_needs_a_restart_and_takes_the_rest() {
        let running = Config::default();
        let mut next = Config {
            listen: "127.0.0.1:7777".into(),
            instance_id: 9,
            max_client_conn: 5,
            ..Config::default()
        };
        assert_eq!(next.keep_restart_keys(&running), ["listen", "instance_id"]);
        assert_eq!(next.listen, running.listen);
        assert_eq!(next.instance_id, running.instance_id);
        assert_eq!(next.max_client_conn, 5);
        for key in RESTART_KEYS {
            assert!(
                toml::Value::try_from(&running).unwrap().get(key).is_some()
                    || ["metrics_listen", "peer_listen"].contains(&key),
                "{key}"
            );
        }
    }
}
