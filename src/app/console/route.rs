//! SHOW ROUTE: where a statement would run for a client of a database,
//! in each transaction context, as the router decides it.

use crate::admin::RouteRow;
use crate::app::App;
use crate::catalog::DatabaseFunctions;
use crate::pool::ClusterPools;
use crate::router::decision::{decide, Facts, Lazy, Transaction};
use crate::router::{Classification, Isolation};

impl App {
    pub(super) async fn route_rows(
        &self,
        database: Option<&str>,
        sql: &str,
    ) -> Result<Vec<RouteRow>, String> {
        let current = self.current();
        let config = &current.config;
        let database = database
            .map(str::to_string)
            .or_else(|| config.databases.first().cloned())
            .unwrap_or_else(|| "postgres".into());
        let cluster = current.pools.of_database(&database);
        if cluster.is_none()
            && !config.databases.is_empty()
            && !config.databases.contains(&database)
        {
            return Err(format!(
                "database \"{database}\" is not configured and no client has used it"
            ));
        }
        let functions = self.catalog.database(&database);
        let route = match current.router.classify(sql, &*functions) {
            Classification::Routed(route) => route,
            Classification::NeedsCatalog(names) => {
                match look_up(cluster.as_deref(), &functions, &names).await {
                    Ok(()) => match current.router.classify(sql, &*functions) {
                        Classification::Routed(route) => route,
                        Classification::NeedsCatalog(_) => {
                            return Ok(vec![unknown_functions(&names)])
                        }
                    },
                    Err(why) => {
                        tracing::debug!(%why, "SHOW ROUTE: functions not looked up");
                        return Ok(vec![unknown_functions(&names)]);
                    }
                }
            }
        };
        let default_isolation = cluster.as_ref().and_then(|c| c.default_isolation());
        let facts = Facts {
            transaction_reads: config.transaction_reads,
            read_only_transactions: config.read_only_transactions,
            default_isolation,
            default_read_only: cluster.as_ref().is_some_and(|c| c.default_read_only()),
            primary_only: default_isolation == Some(Isolation::Serializable),
            ..Facts::default()
        };
        let lazy = Transaction::Lazy(Lazy {
            ran: true,
            ..Lazy::default()
        });
        let contexts = [
            ("outside a transaction", Transaction::None),
            ("in a transaction that has only read", lazy),
            ("in a transaction open on the primary", Transaction::Open),
        ];
        Ok(contexts
            .into_iter()
            .map(|(context, transaction)| {
                let decision = decide(
                    &route,
                    &Facts {
                        transaction,
                        ..facts
                    },
                );
                RouteRow {
                    context,
                    destination: decision.place.describe(),
                    reason: decision.why.as_str(),
                    description: decision.describe(&route),
                }
            })
            .collect())
    }
}

/// Asks the primary, through the pools of a client of that database,
/// about functions the catalog does not know yet. With no such pools
/// (nobody used the database), there is no login to ask with.
async fn look_up(
    cluster: Option<&ClusterPools>,
    functions: &DatabaseFunctions,
    names: &[String],
) -> Result<(), String> {
    let cluster = cluster.ok_or("no client has used the database yet")?;
    let mut conn = cluster
        .checkout_primary()
        .await
        .map_err(|e| e.to_string())?;
    functions
        .look_up(names, &mut conn)
        .await
        .map_err(|e| e.to_string())
}

/// The answer when the catalog could not be asked.
fn unknown_functions(names: &[String]) -> RouteRow {
    RouteRow {
        context: "any",
        destination: "primary or replica",
        reason: "function",
        description: format!(
            "calls {}, not looked up in the primary's catalog yet: a volatile function sends it to the primary",
            names.join(", ")
        ),
    }
}
