//! What a function call means for routing, decided from its name.
//!
//! Order matters and goes from cheap and certain to the catalog:
//! 1. configured `write_functions` and the built-in write list (primary);
//! 2. functions whose answer differs on a standby (primary, introspection);
//! 3. configured `read_only_functions`, volatile built-ins known to be
//!    side-effect free, and common immutable/stable built-ins (no catalog trip);
//! 4. everything else is looked up in the primary's catalog by the caller.
//!
//! The built-in lists only apply to unqualified or `pg_catalog.` names: a
//! `myschema.count()` is the user's own function and could do anything.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use super::RouterConfig;

/// Functions that write, take locks, change session state or fail on a
/// standby. Matched on the lower-cased name, whatever the schema.
const WRITE: &[&str] = &[
    "nextval",
    "setval",
    "currval",
    "lastval",
    "set_config",
    "setseed",
    "pg_notify",
    "txid_current",
    "txid_current_if_assigned",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "loread",
    "lowrite",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_switch_xlog",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_promote",
    "pg_export_snapshot",
    "pg_import_system_collations",
    "pg_current_wal_lsn",
    "pg_current_wal_insert_lsn",
    "pg_current_wal_flush_lsn",
    "pg_current_xlog_location",
    "pg_current_xlog_insert_location",
    "pg_current_xlog_flush_location",
    "pg_drop_replication_slot",
    "pg_replication_slot_advance",
    "pg_sync_replication_slots",
    "pg_logical_emit_message",
    "pg_log_standby_snapshot",
    "pg_log_backend_memory_contexts",
    "pg_stat_statements_reset",
    "pg_truncate_visibility_map",
    "brin_summarize_new_values",
    "brin_summarize_range",
    "brin_desummarize_range",
    "gin_clean_pending_list",
];

/// Families of write functions, matched by prefix.
const WRITE_PREFIXES: &[&str] = &[
    "pg_advisory_",
    "pg_try_advisory_",
    "lo_",
    "dblink",
    "pg_backup_",
    "pg_create_", // restore points and replication slots
    "pg_copy_",   // replication slots
    "pg_replication_origin_",
    "pg_logical_slot_",
    "pg_stat_reset",
    "pg_wal_replay_",
    "pg_file_", // adminpack
];

/// Functions whose answer on a standby would give the proxy away: the proxy
/// must look like one read-write primary.
const INTROSPECTION: &[&str] = &[
    "pg_is_in_recovery",
    "pg_is_wal_replay_paused",
    "pg_get_wal_replay_pause_state",
    "pg_last_wal_receive_lsn",
    "pg_last_wal_replay_lsn",
    "pg_last_xact_replay_timestamp",
    "pg_last_xlog_receive_location",
    "pg_last_xlog_replay_location",
];

/// Settings whose value differs on a standby (SHOW and current_setting()).
/// Views of cluster-wide state that a standby lacks or lags on: prepared
/// transactions (two-phase commit recovery must see them all), sessions,
/// locks, replication. Queries reading them go to the primary.
pub(crate) const PRIMARY_STATE_VIEWS: &[&str] = &[
    "pg_prepared_xacts",
    "pg_stat_activity",
    "pg_locks",
    "pg_stat_replication",
    "pg_replication_slots",
    "pg_stat_replication_slots",
    "pg_stat_subscription",
    "pg_stat_progress_vacuum",
    "pg_stat_progress_create_index",
    "pg_stat_progress_cluster",
    "pg_stat_progress_analyze",
    "pg_stat_progress_copy",
    "pg_stat_progress_basebackup",
];

/// Whether a relation name (schema `pg_catalog` or none) is one of those.
pub(crate) fn is_primary_state_view(name: &ObjectName) -> bool {
    split(name)
        .is_some_and(|n| in_catalog_schema(&n) && PRIMARY_STATE_VIEWS.contains(&n.name.as_str()))
}

pub(crate) const INTROSPECTION_SETTINGS: &[&str] = &[
    "transaction_read_only",
    "default_transaction_read_only",
    "in_hot_standby",
];

/// Read-only, but answering for the transaction they run in: its start
/// time, its snapshot. Inside a transaction they run where it runs.
const TRANSACTION_STATE: &[&str] = &[
    "now",
    "transaction_timestamp",
    "current_timestamp",
    "current_time",
    "current_date",
    "localtime",
    "localtimestamp",
    "txid_current_snapshot",
    "pg_current_snapshot",
];

/// Volatile in pg_proc but without side effects that matter to routing.
const READ_ONLY_VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "gen_random_uuid",
    "uuidv4",
    "uuidv7",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
];

/// Common immutable or stable built-ins (which PostgreSQL does not allow to
/// write), listed so the usual query needs no catalog trip.
#[rustfmt::skip]
const KNOWN_SAFE: &[&str] = &[
    // aggregates and window functions
    "count", "sum", "min", "max", "avg", "every", "bool_and", "bool_or", "array_agg",
    "string_agg", "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "stddev",
    "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp", "percentile_cont",
    "percentile_disc", "mode", "row_number", "rank", "dense_rank", "percent_rank", "cume_dist",
    "ntile", "lag", "lead", "first_value", "last_value", "nth_value",
    // conditionals and comparison
    "coalesce", "nullif", "greatest", "least", "num_nulls", "num_nonnulls",
    // strings
    "lower", "upper", "initcap", "length", "char_length", "character_length", "octet_length",
    "bit_length", "concat", "concat_ws", "substr", "substring", "replace", "translate", "trim",
    "btrim", "ltrim", "rtrim", "lpad", "rpad", "left", "right", "reverse", "repeat", "position",
    "strpos", "split_part", "starts_with", "format", "md5", "sha224", "sha256", "sha384",
    "sha512", "encode", "decode", "ascii", "chr", "quote_ident", "quote_literal",
    "quote_nullable", "regexp_replace", "regexp_match", "regexp_matches", "regexp_like",
    "regexp_count", "regexp_instr", "regexp_substr", "regexp_split_to_array",
    "regexp_split_to_table", "string_to_array", "string_to_table", "array_to_string", "to_hex",
    "unistr", "normalize",
    // numbers
    "abs", "round", "trunc", "floor", "ceil", "ceiling", "mod", "sign", "sqrt", "cbrt", "power",
    "pow", "exp", "ln", "log", "log10", "pi", "degrees", "radians", "div", "width_bucket",
    "gcd", "lcm", "scale", "to_number", "to_char",
    // dates and times (those of the transaction's start: TRANSACTION_STATE)
    "date_trunc", "date_part", "date_bin", "extract", "age", "to_date",
    "to_timestamp", "make_date", "make_time", "make_timestamp", "make_timestamptz",
    "make_interval", "justify_days", "justify_hours", "justify_interval", "isfinite",
    // arrays, sets and json
    "array_length", "array_lower", "array_upper", "array_ndims", "array_dims", "cardinality",
    "array_position", "array_positions", "array_remove", "array_replace", "array_append",
    "array_prepend", "array_cat", "unnest", "generate_series", "generate_subscripts", "to_json",
    "to_jsonb", "row_to_json", "array_to_json", "json_build_object", "jsonb_build_object",
    "json_build_array", "jsonb_build_array", "json_object", "jsonb_object", "json_array_length",
    "jsonb_array_length", "json_array_elements", "jsonb_array_elements",
    "json_array_elements_text", "jsonb_array_elements_text", "json_each", "jsonb_each",
    "json_each_text", "jsonb_each_text", "json_object_keys", "jsonb_object_keys",
    "json_extract_path", "jsonb_extract_path", "json_extract_path_text",
    "jsonb_extract_path_text", "jsonb_set", "jsonb_insert", "jsonb_strip_nulls",
    "json_strip_nulls", "jsonb_pretty", "json_typeof", "jsonb_typeof", "jsonb_path_query",
    "jsonb_path_exists", "jsonb_path_match", "json_populate_record", "jsonb_populate_record",
    "json_to_record", "jsonb_to_record", "json_to_recordset", "jsonb_to_recordset",
    // session and server information
    "pg_backend_pid", "inet_server_port", "inet_server_addr", "inet_client_port",
    "inet_client_addr", "current_setting", "version", "current_user", "session_user",
    "current_role", "user", "current_schema", "current_schemas", "current_database",
    "current_catalog", "pg_postmaster_start_time", "pg_conf_load_time",
    // catalog helpers
    "pg_typeof", "format_type", "to_regclass", "to_regtype", "to_regproc", "obj_description",
    "col_description", "pg_get_expr", "pg_get_indexdef", "pg_get_constraintdef",
    "pg_get_viewdef", "pg_get_functiondef", "pg_get_userbyid", "pg_table_is_visible",
    "pg_encoding_to_char", "has_table_privilege", "has_schema_privilege",
    "has_database_privilege", "has_column_privilege", "has_function_privilege", "pg_has_role",
    "pg_relation_size", "pg_table_size", "pg_indexes_size", "pg_total_relation_size",
    "pg_database_size", "pg_size_pretty", "pg_get_serial_sequence",
];

/// How a call of one function affects the route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Call {
    /// Writes or has effects: primary.
    Write(String),
    /// Answers differently on a standby: primary.
    Introspection,
    /// No catalog trip needed: safe on a replica.
    ReadOnly,
    /// Safe on a replica, but reads the transaction's own state.
    TransactionState(String),
    /// Ask the catalog about this name (folded as PostgreSQL stores it).
    Lookup(String),
}

/// A function name split into an optional schema and the name, both folded as
/// PostgreSQL folds them (unquoted: lower-case; quoted: as written).
struct Name {
    schema: Option<String>,
    name: String,
}

pub(crate) fn classify_call(name: &ObjectName, config: &RouterConfig) -> Call {
    let Some(name) = split(name) else {
        return Call::Write(name.to_string());
    };
    let lower = name.name.to_lowercase();
    if is_configured_write(&name, &lower, config) || is_builtin_write(&lower) {
        return Call::Write(lower);
    }
    if INTROSPECTION.contains(&lower.as_str()) {
        return Call::Introspection;
    }
    if in_catalog_schema(&name) && TRANSACTION_STATE.contains(&name.name.as_str()) {
        return Call::TransactionState(name.name);
    }
    if is_configured_read_only(&name, config) || is_builtin_read_only(&name) {
        return Call::ReadOnly;
    }
    Call::Lookup(name.name)
}

/// Whether a call is `current_setting()`, whose argument decides the route.
pub(crate) fn is_current_setting(name: &ObjectName) -> bool {
    split(name).is_some_and(|n| in_catalog_schema(&n) && n.name == "current_setting")
}

fn split(name: &ObjectName) -> Option<Name> {
    let mut idents = name.0.iter().map(ObjectNamePart::as_ident);
    let last = idents.next_back()??;
    let schema = match idents.next_back() {
        Some(part) => Some(fold(part?)),
        None => None,
    };
    Some(Name {
        schema,
        name: fold(last),
    })
}

fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn in_catalog_schema(name: &Name) -> bool {
    matches!(name.schema.as_deref(), None | Some("pg_catalog"))
}

fn is_builtin_write(lower: &str) -> bool {
    WRITE.contains(&lower) || WRITE_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Matched generously: `s.f` in the config also catches an unqualified `f()`,
/// which the search path may resolve to `s.f`.
fn is_configured_write(name: &Name, lower: &str, config: &RouterConfig) -> bool {
    config
        .write_functions
        .iter()
        .any(|entry| entry_name(entry) == lower || entry_name(entry) == name.name)
}

/// Matched strictly: `s.f` only catches `s.f()`, a bare `f` any schema's `f`.
fn is_configured_read_only(name: &Name, config: &RouterConfig) -> bool {
    config.read_only_functions.iter().any(|entry| {
        let (schema, function) = match entry.rsplit_once('.') {
            Some((schema, function)) => (Some(schema), function),
            None => (None, entry.as_str()),
        };
        function == name.name && schema.is_none_or(|s| name.schema.as_deref() == Some(s))
    })
}

fn entry_name(entry: &str) -> &str {
    entry.rsplit_once('.').map_or(entry, |(_, f)| f)
}

/// A quoted `"Count"` is not `count`: folded names are compared, and the lists
/// are lower-case.
fn is_builtin_read_only(name: &Name) -> bool {
    in_catalog_schema(name)
        && (READ_ONLY_VOLATILE.contains(&name.name.as_str())
            || KNOWN_SAFE.contains(&name.name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::ast::Ident;

    fn object(parts: &[&str]) -> ObjectName {
        ObjectName::from(parts.iter().map(|p| Ident::new(*p)).collect::<Vec<_>>())
    }

    #[test]
    fn lists_are_lower_case() {
        for list in [
            WRITE,
            WRITE_PREFIXES,
            INTROSPECTION,
            READ_ONLY_VOLATILE,
            KNOWN_SAFE,
            TRANSACTION_STATE,
        ] {
            for name in list {
                assert_eq!(*name, name.to_lowercase());
            }
        }
    }

    #[test]
    fn user_schema_shadows_builtin_safe_list() {
        let config = RouterConfig::default();
        assert_eq!(
            classify_call(&object(&["myschema", "count"]), &config),
            Call::Lookup("count".into())
        );
        assert_eq!(
            classify_call(&object(&["pg_catalog", "count"]), &config),
            Call::ReadOnly
        );
        assert_eq!(
            classify_call(&object(&["myschema", "nextval"]), &config),
            Call::Write("nextval".into())
        );
    }
}
