//! TEMPORARY stand-in for the router, replaced by src/router/.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination { Primary, Replica }
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason { ReadOnly, Write, Transaction, ParseFailure, Empty, WriteFunction(String) }
impl Reason { pub fn describe(&self) -> String { format!("{self:?}") } }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route { pub destination: Destination, pub reason: Reason }
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyTransactions { #[default] Primary, Replica }
#[derive(Debug, Clone, Default)]
pub struct RouterConfig {
    pub read_only_functions: Vec<String>,
    pub write_functions: Vec<String>,
    pub read_only_transactions: ReadOnlyTransactions,
    pub cache_size: usize,
}
pub trait FunctionCatalog { fn is_volatile(&self, name: &str) -> Option<bool>; }
pub enum Classification { Routed(Route), NeedsCatalog(Vec<String>) }
pub struct Router { _c: RouterConfig }
impl Router {
    pub fn new(config: RouterConfig) -> Router { Router { _c: config } }
    pub fn classify(&self, sql: &str, _catalog: &dyn FunctionCatalog) -> Classification {
        let s = sql.trim_start().to_ascii_lowercase();
        let d = if s.starts_with("select") && !s.contains("nextval") { Destination::Replica } else { Destination::Primary };
        Classification::Routed(Route { destination: d, reason: Reason::ReadOnly })
    }
    pub fn cache_stats(&self) -> (u64, u64) { (0, 0) }
}
