//! The users table's queries. Each is one statement (so pgsplit can route
//! a read to a replica as a whole) sent with `query_typed` (one round trip,
//! no named prepared statement), and each returns the server that ran it.
//!
//! Reads and writes that may find no row select from `(SELECT 1) one LEFT
//! JOIN ...`, so there is always a row to carry the serving server even
//! when there is no user: a 404 also says who answered it.

use crate::db::{DbError, PgPool, Served, ServedBy, SERVED_BY_COLUMNS};
use crate::money::Cents;
use crate::validate::{NewUser, Page, UserChanges};
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub balance: Cents,
    /// RFC 3339 in UTC, formatted by the server.
    pub created_at: String,
}

/// The user columns of alias `u`, `created_at` as RFC 3339 text (which
/// needs no date crate here).
pub const USER_COLUMNS: &str = "u.id, u.name, u.email, u.balance_cents, \
     to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS created_at";

impl User {
    /// The user in `row`, or `None` where a LEFT JOIN found none.
    pub fn from_row(row: &Row) -> Result<Option<User>, tokio_postgres::Error> {
        let Some(id) = row.try_get::<_, Option<i64>>("id")? else {
            return Ok(None);
        };
        Ok(Some(User {
            id,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            balance: Cents(row.try_get("balance_cents")?),
            created_at: row.try_get("created_at")?,
        }))
    }
}

/// Where a read should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadFrom {
    /// Wherever pgsplit sends it (a replica, if one is fresh enough).
    Any,
    /// The primary, by pgsplit's routing hint.
    Primary,
    /// A server that has replayed this WAL position (a consistency token
    /// the client sent back; checked by `token`, so it is safe in a
    /// comment).
    AtLeast(Token),
}

/// A consistency token: a WAL position, `HEX/HEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token if `text` is one (and nothing else, so it can go into SQL
    /// text as a hint).
    pub fn parse(text: &str) -> Option<Token> {
        let (hi, lo) = text.split_once('/')?;
        let hex = |s: &str| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
        (hex(hi) && hex(lo)).then(|| Token(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The WAL position that covers everything this connection committed,
/// read on the primary right after the commit: the consistency token.
/// `None` if it cannot be read (the write stands; only the token is lost).
pub async fn commit_token(pool: &PgPool) -> Option<String> {
    let conn = pool.get().await.ok()?;
    let row = conn
        .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
        .await
        .ok()?;
    row.try_get(0).ok()
}

/// One user by id (`value` is `None` if there is none).
pub async fn get(pool: &PgPool, id: i64, from: ReadFrom) -> Result<Served<Option<User>>, DbError> {
    let hint = match &from {
        ReadFrom::Any => String::new(),
        ReadFrom::Primary => "/* pgsplit:primary */ ".to_string(),
        ReadFrom::AtLeast(token) => format!("/* pgsplit:min_lsn={} */ ", token.as_str()),
    };
    let sql = format!("{hint}SELECT {SERVED_BY_COLUMNS}, {USER_COLUMNS} FROM (SELECT 1) one LEFT JOIN users u ON u.id = $1");
    let conn = pool.get().await?;
    let row = conn.query_typed_one(&sql, &[(&id, Type::INT8)]).await?;
    Ok(Served {
        by: ServedBy::from_row(&row)?,
        value: User::from_row(&row)?,
    })
}

/// A page of users in id order.
pub async fn list(pool: &PgPool, page: Page) -> Result<Served<Vec<User>>, DbError> {
    let sql = format!(
        "SELECT {SERVED_BY_COLUMNS}, {USER_COLUMNS} FROM (SELECT 1) one \
         LEFT JOIN LATERAL (SELECT * FROM users ORDER BY id OFFSET $1 LIMIT $2) u ON true ORDER BY u.id"
    );
    let conn = pool.get().await?;
    let rows = conn
        .query_typed(&sql, &[(&page.skip, Type::INT8), (&page.limit, Type::INT8)])
        .await?;
    served_users(&rows)
}

/// Inserts one user. `DbError::EmailTaken` if the email exists.
pub async fn create(pool: &PgPool, user: &NewUser) -> Result<Served<User>, DbError> {
    let served = create_many(pool, std::slice::from_ref(user)).await?;
    let by = served.by;
    let value = served
        .value
        .into_iter()
        .next()
        .ok_or(DbError::Unexpected("INSERT ... RETURNING returned no row"))?;
    Ok(Served { value, by })
}

/// Inserts all users in one statement: all or nothing (one duplicate email,
/// in the table or within the list, inserts none). Returned in input order.
/// `users` must not be empty (there would be no row to say who ran it).
pub async fn create_many(pool: &PgPool, users: &[NewUser]) -> Result<Served<Vec<User>>, DbError> {
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    let emails: Vec<&str> = users.iter().map(|u| u.email.as_str()).collect();
    let balances: Vec<i64> = users.iter().map(|u| u.balance.0).collect();
    let sql = format!(
        "INSERT INTO users AS u (name, email, balance_cents) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::int8[]) \
         RETURNING {SERVED_BY_COLUMNS}, {USER_COLUMNS}"
    );
    let conn = pool.get().await?;
    let rows = conn
        .query_typed(
            &sql,
            &[
                (&names, Type::TEXT_ARRAY),
                (&emails, Type::TEXT_ARRAY),
                (&balances, Type::INT8_ARRAY),
            ],
        )
        .await?;
    // Ids come from the sequence in insertion order, which is input order.
    let mut served = served_users(&rows)?;
    served.value.sort_by_key(|u| u.id);
    Ok(served)
}

/// Changes the given fields; `value` is `None` if the user does not exist.
/// An email clash is `DbError::EmailTaken` and changes nothing.
pub async fn update(
    pool: &PgPool,
    id: i64,
    changes: &UserChanges,
) -> Result<Served<Option<User>>, DbError> {
    let sql = format!(
        "WITH u AS (UPDATE users SET name = coalesce($2, name), email = coalesce($3, email), \
         balance_cents = coalesce($4, balance_cents) WHERE id = $1 RETURNING *) \
         SELECT {SERVED_BY_COLUMNS}, {USER_COLUMNS} FROM (SELECT 1) one LEFT JOIN u ON true"
    );
    let balance = changes.balance.map(|c| c.0);
    let conn = pool.get().await?;
    let row = conn
        .query_typed_one(
            &sql,
            &[
                (&id, Type::INT8),
                (&changes.name, Type::TEXT),
                (&changes.email, Type::TEXT),
                (&balance, Type::INT8),
            ],
        )
        .await?;
    Ok(Served {
        by: ServedBy::from_row(&row)?,
        value: User::from_row(&row)?,
    })
}

/// Deletes a user; `value` is whether it existed.
pub async fn delete(pool: &PgPool, id: i64) -> Result<Served<bool>, DbError> {
    let sql = format!(
        "WITH u AS (DELETE FROM users WHERE id = $1 RETURNING id) \
         SELECT {SERVED_BY_COLUMNS}, u.id FROM (SELECT 1) one LEFT JOIN u ON true"
    );
    let conn = pool.get().await?;
    let row = conn.query_typed_one(&sql, &[(&id, Type::INT8)]).await?;
    Ok(Served {
        by: ServedBy::from_row(&row)?,
        value: row.try_get::<_, Option<i64>>("id")?.is_some(),
    })
}

/// Users in `rows` (skipping a LEFT JOIN's empty row) and who served them.
fn served_users(rows: &[Row]) -> Result<Served<Vec<User>>, DbError> {
    let first = rows
        .first()
        .ok_or(DbError::Unexpected("the query returned no row"))?;
    let by = ServedBy::from_row(first)?;
    let mut users = Vec::with_capacity(rows.len());
    for row in rows {
        users.extend(User::from_row(row)?);
    }
    Ok(Served { value: users, by })
}

#[cfg(test)]
mod token_tests {
    use super::Token;

    #[test]
    fn only_wal_positions_are_tokens() {
        assert!(Token::parse("0/16B3748").is_some());
        assert!(Token::parse("1A/0").is_some());
        for bad in [
            "",
            "0",
            "0/",
            "/1",
            "0/1 */ drop table users --",
            "0/1/2",
            "123456789/0",
            "g/1",
        ] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
    }
}
