//! The walk over a query's whole tree, subqueries and CTEs included, looking
//! for anything that makes it unsafe on a replica.
//!
//! sqlparser parses `WITH x AS (INSERT ...) SELECT ...` as a `Query`, and
//! puts row locks and `INTO` on whichever subquery carries them, so checking
//! only the top level is not enough: the visitor sees every node.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Query, Select, Statement,
    TableFactor, Value, Visit, Visitor,
};

use super::functions::{self, Call, INTROSPECTION_SETTINGS};
use super::{Reason, RouterConfig};

/// What the walk learnt besides a definite "primary".
#[derive(Debug, Default)]
pub(crate) struct Findings {
    /// Functions the catalog must be asked about (or was: the route then
    /// depends on the catalog).
    pub lookups: Vec<String>,
    /// The decision read a literal's value, so statements that differ only in
    /// literals may route differently.
    pub literal_sensitive: bool,
    /// A function it calls reads the transaction's own state (`now()`).
    pub transaction_state: Option<String>,
}

/// Walks `query`; `Break(reason)` means it must go to the primary.
pub(crate) fn walk_query(
    query: &Query,
    config: &RouterConfig,
    findings: &mut Findings,
) -> ControlFlow<Reason> {
    query.visit(&mut Walker { config, findings })
}

struct Walker<'a> {
    config: &'a RouterConfig,
    findings: &'a mut Findings,
}

impl Visitor for Walker<'_> {
    type Break = Reason;

    /// Statements nested in a query are INSERT/UPDATE/DELETE/MERGE in a CTE.
    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Reason> {
        match statement {
            Statement::Query(_) => ControlFlow::Continue(()),
            _ => ControlFlow::Break(Reason::DataModifyingCte),
        }
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Reason> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(Reason::Locking);
        }
        // FOR XML/JSON/BROWSE, SETTINGS, FORMAT and pipe operators are other
        // dialects' syntax: not something we can vouch for.
        if query.for_clause.is_some()
            || query.settings.is_some()
            || query.format_clause.is_some()
            || !query.pipe_operators.is_empty()
        {
            return ControlFlow::Break(Reason::Write);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Reason> {
        match select.into {
            Some(_) => ControlFlow::Break(Reason::SelectInto),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Reason> {
        match expr {
            Expr::Function(function) => self.check_function(function),
            _ => ControlFlow::Continue(()),
        }
    }

    /// Functions in FROM: `from pg_advisory_lock(1)`, `from generate_series(1, 3)`.
    /// Their arguments are expressions and get visited on their own.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Reason> {
        match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => self.check_call(name),
            TableFactor::Table { name, .. } if functions::is_primary_state_view(name) => {
                ControlFlow::Break(Reason::Introspection)
            }
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::TableFunction { .. }
            | TableFactor::UNNEST { .. }
            | TableFactor::JsonTable { .. }
            | TableFactor::XmlTable { .. }
            | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            _ => ControlFlow::Break(Reason::Write),
        }
    }
}

impl Walker<'_> {
    fn check_function(&mut self, function: &Function) -> ControlFlow<Reason> {
        if functions::is_current_setting(&function.name) {
            return self.check_current_setting(&function.args);
        }
        self.check_call(&function.name)
    }

    fn check_call(&mut self, name: &sqlparser::ast::ObjectName) -> ControlFlow<Reason> {
        match functions::classify_call(name, self.config) {
            Call::Write(name) => ControlFlow::Break(Reason::WriteFunction(name)),
            Call::Introspection => ControlFlow::Break(Reason::Introspection),
            Call::ReadOnly => ControlFlow::Continue(()),
            Call::TransactionState(name) => {
                self.findings.transaction_state.get_or_insert(name);
                ControlFlow::Continue(())
            }
            Call::Lookup(name) => {
                if !self.findings.lookups.contains(&name) {
                    self.findings.lookups.push(name);
                }
                ControlFlow::Continue(())
            }
        }
    }

    /// `current_setting('transaction_read_only')` is SHOW in disguise. A
    /// setting name that is not a plain literal could be anything.
    fn check_current_setting(&mut self, args: &FunctionArguments) -> ControlFlow<Reason> {
        let Some(setting) = first_string_argument(args) else {
            return ControlFlow::Break(Reason::Introspection);
        };
        self.findings.literal_sensitive = true;
        if INTROSPECTION_SETTINGS.contains(&setting.to_lowercase().as_str()) {
            return ControlFlow::Break(Reason::Introspection);
        }
        ControlFlow::Continue(())
    }
}

fn first_string_argument(args: &FunctionArguments) -> Option<&str> {
    let FunctionArguments::List(list) = args else {
        return None;
    };
    match list.args.first()? {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(value))) => match &value.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}
