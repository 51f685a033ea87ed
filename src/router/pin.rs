//! Statements that leave state in the server session, which a pooled
//! connection would carry to the next client and which the client's next
//! transaction, on another connection, would not find. In transaction
//! pooling they pin the client to its primary connection.

use std::ops::ControlFlow;

use sqlparser::ast::{
    ContextModifier, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, ObjectName,
    Select, SelectItem, Set, SetExpr, Statement, TableFactor, Value, Visit, Visitor,
};

/// Why a client stays on one server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pin {
    /// LISTEN: notifications go to the session that listens.
    Listen,
    /// pg_advisory_lock and friends (session level, not _xact_).
    AdvisoryLock,
    /// CREATE TEMP TABLE / VIEW / SEQUENCE, SELECT INTO TEMP.
    TempObject,
    /// SQL-level PREPARE.
    Prepare,
    /// DECLARE ... WITH HOLD: the cursor outlives its transaction.
    HoldCursor,
    /// SET (session), SET ROLE, SET SESSION AUTHORIZATION, SET SESSION
    /// CHARACTERISTICS, set_config(..., false).
    SessionSetting,
}

impl Pin {
    pub const ALL: [Pin; 6] = [
        Pin::Listen,
        Pin::AdvisoryLock,
        Pin::TempObject,
        Pin::Prepare,
        Pin::HoldCursor,
        Pin::SessionSetting,
    ];

    /// A short name, for the `reason` label of `pgsplit_pins_total`.
    pub fn label(self) -> &'static str {
        match self {
            Pin::Listen => "listen",
            Pin::AdvisoryLock => "advisory_lock",
            Pin::TempObject => "temp_object",
            Pin::Prepare => "prepare",
            Pin::HoldCursor => "hold_cursor",
            Pin::SessionSetting => "session_setting",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Pin::Listen => "LISTEN",
            Pin::AdvisoryLock => "a session advisory lock",
            Pin::TempObject => "a temporary table, view or sequence",
            Pin::Prepare => "a PREPAREd statement",
            Pin::HoldCursor => "a WITH HOLD cursor",
            Pin::SessionSetting => "a session setting (SET, set_config)",
        }
    }
}

/// Session-level advisory lock functions (the _xact_ ones end with the
/// transaction and pin nothing).
const ADVISORY_LOCKS: &[&str] = &[
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// The first thing in `statements` that pins.
pub(crate) fn find(statements: &[Statement]) -> Option<Pin> {
    let mut finder = Finder;
    statements
        .iter()
        .find_map(|statement| match statement.visit(&mut finder) {
            ControlFlow::Break(pin) => Some(pin),
            ControlFlow::Continue(()) => None,
        })
}

/// A `SET [SESSION] name {TO|=} value` or `SET TIME ZONE value` alone in
/// its query: pgsplit tracks it per client (and sets it wherever the client
/// runs next) instead of pinning. Returns the setting's name, lower-case.
pub(crate) fn trackable_setting(statements: &[Statement]) -> Option<String> {
    let [Statement::Set(set)] = statements else {
        return None;
    };
    match set {
        Set::SingleAssignment {
            scope: None | Some(ContextModifier::Session),
            hivevar: false,
            variable,
            ..
        } => Some(variable.to_string().to_lowercase().replace('"', "")),
        Set::SetTimeZone { local: false, .. } => Some("timezone".to_string()),
        _ => None,
    }
}

/// `SELECT set_config('name', value, false)` alone in its query (beside
/// reads of `current_setting`, as asyncpg's type introspection sends it):
/// a session setting pgsplit tracks like a SET, instead of pinning. The
/// name must be a literal (it decides what is tracked, so such a route is
/// not shared between statements that differ in literals); the value may be
/// anything, as pgsplit reads it back once the statement has run.
pub(crate) fn trackable_set_config(statements: &[Statement]) -> Option<String> {
    let [Statement::Query(query)] = statements else {
        return None;
    };
    let SetExpr::Select(select) = &*query.body else {
        return None;
    };
    let plain = query.with.is_none()
        && query.order_by.is_none()
        && query.limit_clause.is_none()
        && query.locks.is_empty()
        && select.from.is_empty()
        && select.selection.is_none()
        && select.into.is_none()
        && select.having.is_none()
        && select.distinct.is_none();
    if !plain {
        return None;
    }
    let mut name = None;
    for item in &select.projection {
        let (SelectItem::UnnamedExpr(Expr::Function(function))
        | SelectItem::ExprWithAlias {
            expr: Expr::Function(function),
            ..
        }) = item
        else {
            return None;
        };
        match last_name(&function.name).as_deref() {
            Some("current_setting") if literal_arguments(&function.args) => {}
            Some("set_config") if name.is_none() => name = Some(set_config_name(function)?),
            _ => return None,
        }
    }
    name
}

/// The setting a `set_config('name', value, false)` call sets for the session.
fn set_config_name(function: &Function) -> Option<String> {
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [name, value, local] = list.args.as_slice() else {
        return None;
    };
    let literal = |arg: &FunctionArg| match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))) => Some(v.value.clone()),
        _ => None,
    };
    let is_simple = |arg: &FunctionArg| {
        matches!(
            arg,
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(_)))
        )
    };
    if !is_simple(value) || literal(local)? != Value::Boolean(false) {
        return None;
    }
    match literal(name)? {
        Value::SingleQuotedString(name) => Some(name.to_lowercase()),
        _ => None,
    }
}

fn literal_arguments(args: &FunctionArguments) -> bool {
    let FunctionArguments::List(list) = args else {
        return false;
    };
    list.args.iter().all(|arg| {
        matches!(
            arg,
            FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(_)))
        )
    })
}

/// Objects created in the `pg_temp` schema by name (`CREATE TABLE
/// pg_temp.t`, `CREATE TYPE pg_temp.mood`, `CREATE FUNCTION pg_temp.f`) are
/// temporary too, whatever the statement.
pub(crate) fn names_temp_schema(sql: &str) -> Option<Pin> {
    let lower = sql.to_ascii_lowercase();
    lower.contains("pg_temp").then_some(Pin::TempObject)
}

/// For text sqlparser cannot parse: a word that may create session state
/// pins, in doubt.
pub(crate) fn find_in_unparsed(sql: &str) -> Option<Pin> {
    let lower = sql.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let has = |w: &str| words.contains(&w);
    if has("listen") {
        Some(Pin::Listen)
    } else if ADVISORY_LOCKS.iter().any(|f| has(f)) {
        Some(Pin::AdvisoryLock)
    } else if has("temp") || has("temporary") || lower.contains("pg_temp") {
        Some(Pin::TempObject)
    } else if words.first() == Some(&"prepare") {
        Some(Pin::Prepare)
    } else if has("hold") {
        Some(Pin::HoldCursor)
    } else if words.first() == Some(&"set") || has("set_config") {
        Some(Pin::SessionSetting)
    } else {
        None
    }
}

struct Finder;

impl Visitor for Finder {
    type Break = Pin;

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<Pin> {
        match statement_pin(statement) {
            Some(pin) => ControlFlow::Break(pin),
            None => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Pin> {
        match &select.into {
            Some(into) if into.temporary => ControlFlow::Break(Pin::TempObject),
            _ => ControlFlow::Continue(()),
        }
    }

    /// `select * from pg_advisory_lock(1)`.
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Pin> {
        let name = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => name,
            _ => return ControlFlow::Continue(()),
        };
        match last_name(name) {
            Some(n) if ADVISORY_LOCKS.contains(&n.as_str()) => {
                ControlFlow::Break(Pin::AdvisoryLock)
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Pin> {
        match expr {
            Expr::Function(function) => match function_pin(function) {
                Some(pin) => ControlFlow::Break(pin),
                None => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        }
    }
}

fn statement_pin(statement: &Statement) -> Option<Pin> {
    match statement {
        Statement::LISTEN { .. } => Some(Pin::Listen),
        Statement::Prepare { .. } => Some(Pin::Prepare),
        Statement::Declare { stmts, .. } if stmts.iter().any(|d| d.hold == Some(true)) => {
            Some(Pin::HoldCursor)
        }
        Statement::CreateTable(table) if table.temporary => Some(Pin::TempObject),
        Statement::CreateView(view) if view.temporary => Some(Pin::TempObject),
        Statement::CreateSequence { temporary, .. } if *temporary => Some(Pin::TempObject),
        Statement::Set(set) if !is_transaction_scoped(set) => Some(Pin::SessionSetting),
        _ => None,
    }
}

/// SET LOCAL and SET TRANSACTION end with the transaction.
fn is_transaction_scoped(set: &Set) -> bool {
    match set {
        Set::SingleAssignment { scope, .. } => *scope == Some(ContextModifier::Local),
        Set::SetRole {
            context_modifier, ..
        } => *context_modifier == Some(ContextModifier::Local),
        Set::SetTimeZone { local, .. } => *local,
        Set::SetTransaction { session, .. } => !session,
        _ => false,
    }
}

fn function_pin(function: &Function) -> Option<Pin> {
    let name = last_name(&function.name)?;
    if ADVISORY_LOCKS.contains(&name.as_str()) {
        return Some(Pin::AdvisoryLock);
    }
    // set_config(name, value, is_local): only a literal true is local.
    if name == "set_config" && !third_argument_is_true(&function.args) {
        return Some(Pin::SessionSetting);
    }
    None
}

/// A function's name without schema, lower-cased (as an unquoted name folds).
fn last_name(name: &ObjectName) -> Option<String> {
    Some(name.0.last()?.as_ident()?.value.to_lowercase())
}

fn third_argument_is_true(args: &FunctionArguments) -> bool {
    let FunctionArguments::List(list) = args else {
        return false;
    };
    matches!(
        list.args.get(2),
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))))
            if matches!(v.value, Value::Boolean(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    fn pin(sql: &str) -> Option<Pin> {
        let statements =
            Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        find(&statements)
    }

    #[test]
    fn session_state_pins() {
        for (sql, expected) in [
            ("LISTEN jobs", Pin::Listen),
            ("select pg_advisory_lock(1)", Pin::AdvisoryLock),
            ("select * from pg_advisory_lock(1)", Pin::AdvisoryLock),
            (
                "select 1 where pg_try_advisory_lock(1, 2)",
                Pin::AdvisoryLock,
            ),
            ("create temp table t(x int)", Pin::TempObject),
            ("create temporary view v as select 1", Pin::TempObject),
            ("select 1 into temp t", Pin::TempObject),
            ("prepare q as select 1", Pin::Prepare),
            ("declare c cursor with hold for select 1", Pin::HoldCursor),
            ("set search_path = app", Pin::SessionSetting),
            ("set session statement_timeout = 5", Pin::SessionSetting),
            ("set role app", Pin::SessionSetting),
            ("set time zone 'UTC'", Pin::SessionSetting),
            (
                "set session characteristics as transaction read only",
                Pin::SessionSetting,
            ),
            ("select set_config('a.b', 'c', false)", Pin::SessionSetting),
            ("insert into t values (1); listen x", Pin::Listen),
        ] {
            assert_eq!(pin(sql), Some(expected), "{sql}");
        }
    }

    #[test]
    fn transaction_scoped_state_does_not_pin() {
        for sql in [
            "select 1",
            "insert into t values (1)",
            "set local search_path = app",
            "set transaction isolation level serializable",
            "select pg_advisory_xact_lock(1)",
            "select set_config('a.b', 'c', true)",
            "declare c cursor for select 1",
            "create table t(x int)",
            "unlisten *",
        ] {
            assert_eq!(pin(sql), None, "{sql}");
        }
    }

    #[test]
    fn plain_session_sets_are_trackable() {
        let parse = |sql: &str| Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        for (sql, name) in [
            ("set search_path = app", Some("search_path")),
            (
                "SET SESSION Statement_Timeout TO '5s'",
                Some("statement_timeout"),
            ),
            ("set time zone 'UTC'", Some("timezone")),
            ("set app.user_id = 7", Some("app.user_id")),
            ("set local search_path = app", None),
            ("set role app", None),
            ("set search_path = a; select 1", None),
        ] {
            assert_eq!(trackable_setting(&parse(sql)).as_deref(), name, "{sql}");
        }
    }

    #[test]
    fn objects_in_the_temp_schema_pin() {
        assert_eq!(
            names_temp_schema("CREATE TYPE pg_temp.mood AS ENUM ('ok')"),
            Some(Pin::TempObject)
        );
        assert_eq!(names_temp_schema("create table t(x int)"), None);
    }

    #[test]
    fn unparsed_text_pins_on_keywords() {
        assert_eq!(find_in_unparsed("LISTEN \"odd\"channel"), Some(Pin::Listen));
        assert_eq!(
            find_in_unparsed("create temp table t (like u including all)"),
            Some(Pin::TempObject)
        );
        assert_eq!(find_in_unparsed("vacuum t"), None);
    }
}
