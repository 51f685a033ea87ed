//! The application state every session shares: one `Arc<App>`, no globals,
//! so tests run many proxies side by side.

use crate::cancel::Cancels;
use crate::catalog::Catalog;
use crate::client::auth::Credentials;
use crate::config::Config;
use crate::health::Topology;
use crate::pool::Pools;
use crate::router::{ReadOnlyTransactions, Router, RouterConfig};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

pub struct App {
    pub config: Arc<Config>,
    pub topology: Arc<Topology>,
    pub pools: Pools,
    pub router: Router,
    pub catalog: Catalog,
    pub cancels: Cancels,
    pub credentials: Credentials,
    /// Clients pinned to one server connection by session state.
    pub pinned_clients: AtomicUsize,
}

impl App {
    pub fn new(config: Config) -> Arc<App> {
        let config = Arc::new(config);
        let topology = Topology::new(&config);
        Arc::new(App {
            pools: Pools::new(config.clone(), topology.clone()),
            topology,
            router: Router::new(router_config(&config)),
            catalog: Catalog::default(),
            cancels: Cancels::default(),
            credentials: Credentials::new(&config.users),
            pinned_clients: AtomicUsize::new(0),
            config,
        })
    }
}

fn router_config(config: &Config) -> RouterConfig {
    RouterConfig {
        read_only_functions: lower(&config.read_only_functions),
        write_functions: lower(&config.write_functions),
        read_only_transactions: match config.read_only_transactions {
            crate::config::ReadOnlyTransactions::Primary => ReadOnlyTransactions::Primary,
            crate::config::ReadOnlyTransactions::Replica => ReadOnlyTransactions::Replica,
        },
        cache_size: config.routing_cache_size,
    }
}

fn lower(names: &[String]) -> Vec<String> {
    names.iter().map(|n| n.to_lowercase()).collect()
}
