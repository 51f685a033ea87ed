//! Request validation with FastAPI's error shape: every problem is one
//! `{"loc": [...], "msg": "...", "type": "..."}` entry, all problems of a
//! request are reported together, and the response is 422.
//!
//! Bodies are checked from a `serde_json::Value` rather than derived with
//! serde, so a missing or mistyped field gets its own entry with its
//! location (serde stops at the first error and names no field).

use crate::money::Cents;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Longest name and email accepted (the columns are text; this keeps junk out).
const MAX_TEXT: usize = 320;
/// Default and largest page size of GET /users (FastAPI tutorial's default).
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// One validation problem, as FastAPI reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    pub loc: Vec<Value>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Every problem found in one request; empty means valid.
pub type Problems = Vec<FieldError>;

fn problem(loc: Vec<Value>, msg: impl Into<String>, kind: &'static str) -> FieldError {
    FieldError {
        loc,
        msg: msg.into(),
        kind,
    }
}

/// Where a value sits: `loc(&["body", "email"])` style paths built from a
/// prefix (which may hold a list index) and a field name.
fn at(prefix: &[Value], field: &str) -> Vec<Value> {
    let mut loc = prefix.to_vec();
    loc.push(Value::from(field));
    loc
}

/// A new user, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    pub balance: Cents,
}

/// The fields a PUT changes; `None` keeps the current value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub balance: Option<Cents>,
}

/// Parses a request body as JSON; FastAPI answers bad JSON with 422 too.
pub fn json_body(body: &[u8]) -> Result<Value, Problems> {
    serde_json::from_slice(body).map_err(|e| {
        vec![problem(
            vec![Value::from("body"), Value::from(e.column())],
            format!("JSON decode error: {e}"),
            "json_invalid",
        )]
    })
}

/// POST /users body.
pub fn new_user(body: &Value) -> Result<NewUser, Problems> {
    let mut problems = Vec::new();
    let user = new_user_at(body, &[Value::from("body")], &mut problems);
    match user {
        Some(user) if problems.is_empty() => Ok(user),
        _ => Err(problems),
    }
}

/// POST /users/batch body: a list of users; any bad item fails the batch.
pub fn new_users(body: &Value) -> Result<Vec<NewUser>, Problems> {
    let Some(items) = body.as_array() else {
        return Err(vec![problem(
            vec![Value::from("body")],
            "Input should be a valid list",
            "list_type",
        )]);
    };
    let mut problems = Vec::new();
    let users: Vec<Option<NewUser>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| new_user_at(item, &[Value::from("body"), Value::from(i)], &mut problems))
        .collect();
    if problems.is_empty() {
        Ok(users.into_iter().flatten().collect())
    } else {
        Err(problems)
    }
}

fn new_user_at(value: &Value, loc: &[Value], problems: &mut Problems) -> Option<NewUser> {
    let obj = object(value, loc, problems)?;
    let name =
        required(obj, loc, "name", problems).and_then(|v| text(v, &at(loc, "name"), problems));
    let email =
        required(obj, loc, "email", problems).and_then(|v| email(v, &at(loc, "email"), problems));
    let balance = match obj.get("balance") {
        None | Some(Value::Null) => Some(Cents(0)),
        Some(v) => balance(v, &at(loc, "balance"), problems),
    };
    Some(NewUser {
        name: name?,
        email: email?,
        balance: balance?,
    })
}

/// PUT /users/{id} body: any subset of name, email, balance.
pub fn user_changes(body: &Value) -> Result<UserChanges, Problems> {
    let loc = [Value::from("body")];
    let mut problems = Vec::new();
    let Some(obj) = object(body, &loc, &mut problems) else {
        return Err(problems);
    };
    let field = |name: &str| obj.get(name).filter(|v| !v.is_null());
    let changes = UserChanges {
        name: field("name").and_then(|v| text(v, &at(&loc, "name"), &mut problems)),
        email: field("email").and_then(|v| email(v, &at(&loc, "email"), &mut problems)),
        balance: field("balance").and_then(|v| balance(v, &at(&loc, "balance"), &mut problems)),
    };
    if problems.is_empty() {
        Ok(changes)
    } else {
        Err(problems)
    }
}

fn object<'a>(
    value: &'a Value,
    loc: &[Value],
    problems: &mut Problems,
) -> Option<&'a Map<String, Value>> {
    let obj = value.as_object();
    if obj.is_none() {
        problems.push(problem(
            loc.to_vec(),
            "Input should be a valid dictionary or object to extract fields from",
            "model_attributes_type",
        ));
    }
    obj
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    loc: &[Value],
    field: &str,
    problems: &mut Problems,
) -> Option<&'a Value> {
    let value = obj.get(field).filter(|v| !v.is_null());
    if value.is_none() {
        problems.push(problem(at(loc, field), "Field required", "missing"));
    }
    value
}

fn text(value: &Value, loc: &[Value], problems: &mut Problems) -> Option<String> {
    let Some(s) = value.as_str() else {
        problems.push(problem(
            loc.to_vec(),
            "Input should be a valid string",
            "string_type",
        ));
        return None;
    };
    let s = s.trim();
    if s.is_empty() {
        problems.push(problem(
            loc.to_vec(),
            "String should have at least 1 character",
            "string_too_short",
        ));
        return None;
    }
    if s.chars().count() > MAX_TEXT {
        problems.push(problem(
            loc.to_vec(),
            format!("String should have at most {MAX_TEXT} characters"),
            "string_too_long",
        ));
        return None;
    }
    Some(s.to_string())
}

fn email(value: &Value, loc: &[Value], problems: &mut Problems) -> Option<String> {
    let s = text(value, loc, problems)?;
    // Deliberately loose (one @, something on each side, a dot in the
    // domain, no spaces): the demo needs to refuse typos, not implement RFC 5322.
    let valid = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        problems.push(problem(
            loc.to_vec(),
            "value is not a valid email address: it must look like name@example.com",
            "value_error",
        ));
        return None;
    }
    Some(s)
}

fn balance(value: &Value, loc: &[Value], problems: &mut Problems) -> Option<Cents> {
    let Some(n) = value.as_f64().filter(|_| value.is_number()) else {
        problems.push(problem(
            loc.to_vec(),
            "Input should be a valid number",
            "float_type",
        ));
        return None;
    };
    match Cents::from_f64(n) {
        Ok(c) if c.0 < 0 => {
            problems.push(problem(
                loc.to_vec(),
                "Input should be greater than or equal to 0",
                "greater_than_equal",
            ));
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(problem(loc.to_vec(), e.to_string(), e.kind()));
            None
        }
    }
}

/// A path segment that must be a user id.
pub fn user_id(raw: &str) -> Result<i64, Problems> {
    raw.parse().map_err(|_| {
        vec![problem(
            vec![Value::from("path"), Value::from("user_id")],
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
        )]
    })
}

/// GET /users paging: `skip` (default 0) and `limit` (default 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub skip: i64,
    pub limit: i64,
}

pub fn page(query: &HashMap<String, String>) -> Result<Page, Problems> {
    let mut problems = Vec::new();
    let skip = query_int(query, "skip", Some(0), &mut problems);
    let limit = query_int(query, "limit", Some(DEFAULT_LIMIT), &mut problems);
    let loc = |f: &str| vec![Value::from("query"), Value::from(f)];
    if skip.is_some_and(|s| s < 0) {
        problems.push(problem(
            loc("skip"),
            "Input should be greater than or equal to 0",
            "greater_than_equal",
        ));
    }
    if limit.is_some_and(|l| !(0..=MAX_LIMIT).contains(&l)) {
        problems.push(problem(
            loc("limit"),
            format!("Input should be between 0 and {MAX_LIMIT}"),
            "less_than_equal",
        ));
    }
    match (skip, limit) {
        (Some(skip), Some(limit)) if problems.is_empty() => Ok(Page { skip, limit }),
        _ => Err(problems),
    }
}

/// POST /transfer parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferRequest {
    pub from: i64,
    pub to: i64,
    pub amount: Cents,
}

pub fn transfer(query: &HashMap<String, String>) -> Result<TransferRequest, Problems> {
    let mut problems = Vec::new();
    let from = query_int(query, "from_user_id", None, &mut problems);
    let to = query_int(query, "to_user_id", None, &mut problems);
    let amount = amount(query, &mut problems);
    match (from, to, amount) {
        (Some(from), Some(to), Some(amount)) if problems.is_empty() => {
            Ok(TransferRequest { from, to, amount })
        }
        _ => Err(problems),
    }
}

fn amount(query: &HashMap<String, String>, problems: &mut Problems) -> Option<Cents> {
    let loc = vec![Value::from("query"), Value::from("amount")];
    let Some(raw) = query.get("amount") else {
        problems.push(problem(loc, "Field required", "missing"));
        return None;
    };
    match Cents::parse(raw) {
        Ok(c) if c.0 <= 0 => {
            problems.push(problem(
                loc,
                "Input should be greater than 0",
                "greater_than",
            ));
            None
        }
        Ok(c) => Some(c),
        Err(e) => {
            let msg = match e {
                crate::money::AmountError::NotANumber => {
                    "Input should be a valid number, unable to parse string as a number".to_string()
                }
                other => other.to_string(),
            };
            problems.push(problem(loc, msg, e.kind()));
            None
        }
    }
}

/// An integer query parameter; `default` None makes it required.
fn query_int(
    query: &HashMap<String, String>,
    name: &str,
    default: Option<i64>,
    problems: &mut Problems,
) -> Option<i64> {
    let loc = vec![Value::from("query"), Value::from(name)];
    match query.get(name) {
        None => {
            if default.is_none() {
                problems.push(problem(loc, "Field required", "missing"));
            }
            default
        }
        Some(raw) => match raw.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(problem(
                    loc,
                    "Input should be a valid integer, unable to parse string as an integer",
                    "int_parsing",
                ));
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(p: &Problems) -> Vec<(String, &'static str)> {
        p.iter()
            .map(|e| (serde_json::to_string(&e.loc).unwrap(), e.kind))
            .collect()
    }

    #[test]
    fn a_new_user_needs_name_and_email() {
        let ok = new_user(&json!({"name": " Alice ", "email": "alice@example.com"})).unwrap();
        assert_eq!((ok.name.as_str(), ok.balance), ("Alice", Cents(0)));
        let err = new_user(&json!({"email": "nope", "balance": -1})).unwrap_err();
        assert_eq!(
            kinds(&err),
            vec![
                (r#"["body","name"]"#.into(), "missing"),
                (r#"["body","email"]"#.into(), "value_error"),
                (r#"["body","balance"]"#.into(), "greater_than_equal"),
            ]
        );
        assert_eq!(
            kinds(&new_user(&json!([1])).unwrap_err())[0].1,
            "model_attributes_type"
        );
    }

    #[test]
    fn batch_errors_carry_the_index() {
        let err =
            new_users(&json!([{"name": "a", "email": "a@x.io"}, {"name": 3, "email": "b@x.io"}]))
                .unwrap_err();
        assert_eq!(
            kinds(&err),
            vec![(r#"["body",1,"name"]"#.into(), "string_type")]
        );
        assert_eq!(kinds(&new_users(&json!({})).unwrap_err())[0].1, "list_type");
    }

    #[test]
    fn transfer_amounts_must_be_positive_numbers() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ok = transfer(&q(&[
            ("from_user_id", "1"),
            ("to_user_id", "2"),
            ("amount", "2.5"),
        ]))
        .unwrap();
        assert_eq!(ok.amount, Cents(250));
        for (bad, kind) in [
            ("0", "greater_than"),
            ("-1", "greater_than"),
            ("x", "float_parsing"),
        ] {
            let err = transfer(&q(&[
                ("from_user_id", "1"),
                ("to_user_id", "2"),
                ("amount", bad),
            ]))
            .unwrap_err();
            assert_eq!(
                kinds(&err),
                vec![(r#"["query","amount"]"#.into(), kind)],
                "{bad}"
            );
        }
        let err = transfer(&q(&[("from_user_id", "a")])).unwrap_err();
        assert_eq!(err.len(), 3);
    }

    #[test]
    fn bad_json_is_a_validation_error() {
        assert_eq!(json_body(b"{").unwrap_err()[0].kind, "json_invalid");
        assert_eq!(user_id("12x").unwrap_err()[0].kind, "int_parsing");
        assert_eq!(
            page(&HashMap::new()),
            Ok(Page {
                skip: 0,
                limit: 100
            })
        );
    }
}
