//! The classifier: statement text in, route (or a catalog question) out.
//!
//! Cheap checks first (empty, hint), then the parse, then each statement by
//! kind. Only SELECT/VALUES/TABLE queries, SHOW, EXPLAIN (without ANALYZE)
//! of those, and COPY ... TO STDOUT can reach a replica; every other kind of statement is the
//! primary's, which is what the final `_` arm of [`check_statement`] says.

use std::ops::ControlFlow;

use sqlparser::ast::{CopySource, CopyTarget, Expr, Ident, Statement, UtilityOption, Value};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::command::{self, Command};
use super::functions::INTROSPECTION_SETTINGS;
use super::pin;
use super::transaction::{self, Control};
use super::walk::{walk_query, Findings};
use super::{hint, Classification, Destination, FunctionCatalog, Reason, Route, RouterConfig};

/// A classification and whether it may be cached.
pub(crate) struct Outcome {
    pub classification: Classification,
    /// False when the route depends on more than the statement's structure:
    /// on a literal's value (statements differing only in literals may route
    /// differently), or on the function catalog, which belongs to one
    /// database while the cache is shared by all of them (and a function may
    /// be redefined).
    pub cacheable: bool,
}

/// What one statement allows, before the catalog is consulted.
enum Verdict {
    Primary(Reason),
    ReadOnly,
}

pub(crate) fn classify(sql: &str, config: &RouterConfig, catalog: &dyn FunctionCatalog) -> Outcome {
    let mut findings = Findings::default();
    let mut classification = decide(sql, config, catalog, &mut findings);
    if let Classification::Routed(route) = &mut classification {
        route.command = command::command(sql).map(Box::new);
        route.lists_statements = command::lists_statements(sql);
        // A database named by a string literal (`TEMPLATE 'x'`) would be
        // shared by statements differing only in literals.
        if matches!(route.command.as_deref(), Some(Command::Database(_))) {
            findings.literal_sensitive = true;
        }
    }
    Outcome {
        classification,
        cacheable: !findings.literal_sensitive && findings.lookups.is_empty(),
    }
}

fn decide(
    sql: &str,
    config: &RouterConfig,
    catalog: &dyn FunctionCatalog,
    findings: &mut Findings,
) -> Classification {
    if sql.trim().is_empty() {
        return routed(Destination::Primary, Reason::Empty);
    }
    if let Some(destination) = hint::find(sql) {
        return routed(destination, Reason::Hint);
    }
    let statements = match Parser::parse_sql(&PostgreSqlDialect {}, sql) {
        Ok(statements) => statements,
        Err(error) => {
            if let Some(options) = transaction::begin_with_deferrable(sql) {
                let begin = Reason::Transaction(Control::Begin(options));
                return routed(Destination::Primary, begin);
            }
            tracing::debug!(%error, "statement not parsed; routing to the primary");
            let reason = pin::find_in_unparsed(sql).map_or(Reason::ParseFailure, Reason::Pins);
            return routed(Destination::Primary, reason);
        }
    };
    match combine(&statements, config, findings) {
        // Only what goes to the primary can pin: a read-only statement
        // leaves no session state.
        Verdict::Primary(reason) => routed(
            Destination::Primary,
            session_effect(&statements, sql, reason, findings),
        ),
        Verdict::ReadOnly => consult_catalog(findings, catalog),
    }
}

/// A primary statement's reason, refined by what it leaves in the session:
/// a plain SET pgsplit tracks, or state that pins the client.
fn session_effect(
    statements: &[Statement],
    sql: &str,
    reason: Reason,
    findings: &mut Findings,
) -> Reason {
    if let Some(name) = pin::trackable_setting(statements) {
        return Reason::Setting(name);
    }
    if let Some(name) = pin::trackable_set_config(statements) {
        // The setting's name is a literal.
        findings.literal_sensitive = true;
        return Reason::Setting(name);
    }
    pin::find(statements)
        .or_else(|| pin::names_temp_schema(sql))
        .map_or(reason, Reason::Pins)
}

fn routed(destination: Destination, reason: Reason) -> Classification {
    Classification::Routed(Route::new(destination, reason))
}

/// A multi-statement string is as strict as its strictest part.
/// Transaction control is only read for what it is alone in its query:
/// what follows a BEGIN in the same string would otherwise be judged
/// without knowing the transaction.
fn combine(statements: &[Statement], config: &RouterConfig, findings: &mut Findings) -> Verdict {
    if statements.is_empty() {
        // Only comments or semicolons.
        return Verdict::Primary(Reason::Empty);
    }
    let alone = statements.len() == 1;
    for statement in statements {
        match check_statement(statement, config, findings) {
            Verdict::ReadOnly => {}
            Verdict::Primary(Reason::Transaction(_)) if !alone => {
                return Verdict::Primary(Reason::Transaction(Control::Other))
            }
            primary => return primary,
        }
    }
    Verdict::ReadOnly
}

fn check_statement(
    statement: &Statement,
    config: &RouterConfig,
    findings: &mut Findings,
) -> Verdict {
    match statement {
        Statement::Query(query) => from_walk(walk_query(query, config, findings)),
        Statement::Explain {
            analyze,
            options,
            statement,
            ..
        } => {
            if *analyze || options.as_deref().is_some_and(has_analyze_option) {
                return Verdict::Primary(Reason::ExplainAnalyze);
            }
            match statement.as_ref() {
                Statement::Query(query) => from_walk(walk_query(query, config, findings)),
                _ => Verdict::Primary(Reason::Write),
            }
        }
        Statement::ShowVariable { variable } => check_show(variable),
        // COPY ... TO STDOUT only reads: a table, or a query checked as any.
        Statement::Copy {
            source,
            to: true,
            target: CopyTarget::Stdout,
            ..
        } => match source {
            CopySource::Query(query) => from_walk(walk_query(query, config, findings)),
            CopySource::Table { .. } => Verdict::ReadOnly,
        },
        statement => match transaction::control(statement) {
            Some(control) => Verdict::Primary(Reason::Transaction(control)),
            None => Verdict::Primary(Reason::Write),
        },
    }
}

fn from_walk(walk: ControlFlow<Reason>) -> Verdict {
    match walk {
        ControlFlow::Break(reason) => Verdict::Primary(reason),
        ControlFlow::Continue(()) => Verdict::ReadOnly,
    }
}

/// `EXPLAIN (ANALYZE)` and `(ANALYZE true|on|1)` run the statement. Only an
/// explicit false/off counts as "not analysing"; any other value is treated as
/// analysing, so the route never depends on a literal here.
fn has_analyze_option(options: &[UtilityOption]) -> bool {
    options
        .iter()
        .filter(|option| option.name.value.eq_ignore_ascii_case("analyze"))
        .any(|option| !is_false(option.arg.as_ref()))
}

fn is_false(arg: Option<&Expr>) -> bool {
    match arg {
        Some(Expr::Value(value)) => matches!(value.value, Value::Boolean(false)),
        Some(Expr::Identifier(ident)) => {
            ident.value.eq_ignore_ascii_case("off") || ident.value.eq_ignore_ascii_case("false")
        }
        _ => false,
    }
}

/// SHOW is read-only, but a standby answers some settings differently, and
/// clients ask them precisely to find a read-write server.
fn check_show(variable: &[Ident]) -> Verdict {
    let asks_read_only = match variable {
        [name] => INTROSPECTION_SETTINGS.contains(&name.value.to_lowercase().as_str()),
        _ => false,
    };
    match asks_read_only {
        true => Verdict::Primary(Reason::Introspection),
        false => Verdict::ReadOnly,
    }
}

/// The statement is read-only if every function it calls is. A volatile one
/// settles it (primary); unknown ones are returned as a question.
fn consult_catalog(findings: &Findings, catalog: &dyn FunctionCatalog) -> Classification {
    let mut unknown = Vec::new();
    for name in &findings.lookups {
        match catalog.is_volatile(name) {
            Some(true) => return routed(Destination::Primary, Reason::WriteFunction(name.clone())),
            Some(false) => {}
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Classification::NeedsCatalog(unknown);
    }
    match &findings.transaction_state {
        Some(name) => routed(Destination::Replica, Reason::TransactionState(name.clone())),
        None => routed(Destination::Replica, Reason::ReadOnly),
    }
}
