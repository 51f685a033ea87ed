//! The other pgsplit instances of a fleet. A CancelRequest arrives on a
//! new TCP connection, which a load balancer sends to any instance; the
//! key says which instance's client it is (`cancel::instance_of`), and an
//! instance that does not know the key forwards it: to the `[[peers]]`
//! entry with that id, else to every address `peers_dns` resolves to. A
//! forwarded request carries its own code (`FORWARDED_CANCEL`), so a peer
//! cancels only its own clients' statements and never forwards it again.

use crate::app::App;
use crate::cancel::instance_of;
use crate::config::Config;
use crate::metrics::CancelOutcome;
use crate::protocol::startup::FORWARDED_CANCEL;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a forward may take, connection and the peer's own cancel
/// included (a server answers a cancel at once; a peer that hangs must not
/// keep the client waiting for good).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Handles a CancelRequest: this instance's client's, or a peer's.
pub async fn cancel(app: &App, pid: i32, secret: i32, forwarded: bool) {
    let tls = app.current().tls.servers.clone();
    if app.cancels.cancel(pid, secret, tls.as_deref()).await {
        let outcome = match forwarded {
            true => CancelOutcome::FromPeer,
            false => CancelOutcome::Local,
        };
        app.metrics.cancel_request(outcome);
        return;
    }
    if forwarded {
        app.metrics.cancel_request(CancelOutcome::PeerMiss);
        tracing::debug!(
            pid,
            "a peer's cancel request for a key not this instance's ignored"
        );
        return;
    }
    let targets = peers_for(&app.config(), pid).await;
    if targets.is_empty() {
        app.metrics.cancel_request(CancelOutcome::Unknown);
        tracing::debug!(pid, forwarded, "cancel request with an unknown key ignored");
        return;
    }
    app.metrics.cancel_request(CancelOutcome::Forwarded);
    tracing::info!(instance = instance_of(pid), peers = %targets.join(", "), "cancel request for another instance's client: forwarded");
    let forwards = targets.iter().map(|addr| forward(addr, pid, secret));
    for (addr, result) in targets
        .iter()
        .zip(futures::future::join_all(forwards).await)
    {
        if let Err(error) = result {
            tracing::warn!(peer = %addr, %error, "could not forward a cancel request to a peer");
        }
    }
}

/// Where a cancel for key `pid` may be served: the peer with its instance
/// id, else every instance the fleet's DNS name resolves to.
async fn peers_for(config: &Config, pid: i32) -> Vec<String> {
    let id = instance_of(pid);
    if let Some(peer) = config.peers.iter().find(|p| p.id == id) {
        return vec![peer.address.clone()];
    }
    let Some(name) = &config.peers_dns else {
        return Vec::new();
    };
    match tokio::net::lookup_host(name.as_str()).await {
        Ok(addrs) => addrs.map(|a| a.to_string()).collect(),
        Err(error) => {
            tracing::warn!(peers_dns = %name, %error, "cannot resolve the fleet's peers");
            Vec::new()
        }
    }
}

/// Sends the forwarded request and waits for the peer to close: it closes
/// once the server has closed its cancel connection (`cancel.rs`), and the
/// client's own wait for that is what keeps a late cancel off its next
/// statement.
async fn forward(addr: &str, pid: i32, secret: i32) -> std::io::Result<()> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(&forwarded_packet(pid, secret)).await?;
        let mut buf = [0u8; 64];
        while stream.read(&mut buf).await? > 0 {}
        Ok(())
    };
    tokio::time::timeout(FORWARD_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

fn forwarded_packet(pid: i32, secret: i32) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[..4].copy_from_slice(&16u32.to_be_bytes());
    packet[4..8].copy_from_slice(&FORWARDED_CANCEL.to_be_bytes());
    packet[8..12].copy_from_slice(&pid.to_be_bytes());
    packet[12..].copy_from_slice(&secret.to_be_bytes());
    packet
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Peer;
    use crate::protocol::startup::{parse, StartupPacket};

    #[test]
    fn a_forwarded_packet_parses_as_one() {
        assert_eq!(
            parse(&forwarded_packet(7 << 23 | 5, -3)).unwrap(),
            StartupPacket::Cancel {
                pid: 7 << 23 | 5,
                secret: -3,
                forwarded: true
            }
        );
    }

    #[tokio::test]
    async fn a_key_goes_to_its_instance_else_to_every_peer_by_dns() {
        let mut config = Config {
            instance_id: 1,
            peers: vec![Peer {
                id: 2,
                address: "10.0.0.2:6432".into(),
            }],
            ..Config::default()
        };
        assert_eq!(peers_for(&config, 2 << 23 | 9).await, ["10.0.0.2:6432"]);
        assert!(peers_for(&config, 3 << 23 | 9).await.is_empty());
        config.peers_dns = Some("127.0.0.1:6999".into());
        assert_eq!(peers_for(&config, 3 << 23 | 9).await, ["127.0.0.1:6999"]);
    }
}
