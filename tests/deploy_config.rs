//! The configuration that deploy/kubernetes ships is one this pgsplit
//! accepts. scripts/k8s-validate.sh checks the manifests and that the file
//! is TOML, not pgsplit's keys: a key renamed or removed here would leave
//! every pod refusing to start.

use pgsplit::config::{AuthMethod, Config};

#[test]
fn the_kubernetes_config_parses_and_validates() {
    let text = include_str!("../deploy/kubernetes/base/config.toml");
    let config = Config::from_toml(text).expect("deploy/kubernetes/base/config.toml parses");
    config
        .validate()
        .expect("deploy/kubernetes/base/config.toml validates");
    // Every pod reads this one file: each must pick its own id, and find
    // the others through the headless Service.
    assert_eq!(config.instance_id, 0);
    assert!(config.peers.is_empty());
    assert!(config.peers_dns.is_some());
    // Passwords are why the whole file is a Secret.
    assert_ne!(config.auth, AuthMethod::Trust);
    assert!(!config.users.is_empty());
}
