mod support;
use std::time::{Duration, Instant};
use support::cluster::Cluster;
use support::proxy::*;
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore() {
    for pre_ping in [false, true] {
        let c = Cluster::start();
        c.psql(c.primary_port(), "create table t(x int)"); c.wait_replica_caught_up();
        let mut config = proxy_config(&c);
        config.replica_ban_time = 0.5;
        config.pool.replica.pool_pre_ping = pre_ping;
        let p = Proxy::start(config);
        let client = connect(p.port()).await;
        client.simple_query("select inet_server_port() from t").await.unwrap();
        c.stop_replica();
        for i in 0..5 {
            let t = Instant::now();
            let r = client.simple_query("select inet_server_port()").await;
            eprintln!("pre_ping={pre_ping} read {i}: {:?} in {:?}", r.map(|m| m.len()).map_err(|e| (e.code().cloned(), message_of(&e))), t.elapsed());
        }
        let t = Instant::now();
        let r = support::proxy::try_connect(&format!("host=127.0.0.1 port={} user=postgres dbname=postgres", p.port())).await;
        match r { Ok(c2) => { let r = c2.simple_query("select inet_server_port()").await; eprintln!("fresh: {:?} {:?}", r.map(|m| m.len()).map_err(|e| message_of(&e)), t.elapsed()); } Err(e) => eprintln!("fresh connect err {e}") }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
