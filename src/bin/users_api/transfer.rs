//! Moving money between two users: one transaction on the primary, both
//! rows locked in id order (so two opposite transfers cannot deadlock),
//! checked, then changed; any failure rolls everything back.

use crate::db::{DbError, PgPool, Served, ServedBy, SERVED_BY_COLUMNS};
use crate::money::Cents;
use crate::users::User;
use crate::validate::TransferRequest;
use serde::Serialize;
use tokio_postgres::types::Type;

/// Why a transfer did not happen (nothing changed in every case).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("Cannot transfer to the same user")]
    SameUser,
    #[error("User {0} not found")]
    UnknownUser(i64),
    #[error("Insufficient funds: user {user} has {balance}, transfer needs {amount}")]
    InsufficientFunds {
        user: i64,
        balance: f64,
        amount: f64,
    },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for TransferError {
    fn from(e: tokio_postgres::Error) -> Self {
        TransferError::Db(e.into())
    }
}

/// What a done transfer returns: both users after it.
#[derive(Debug, Serialize)]
pub struct Transfer {
    pub from_user: User,
    pub to_user: User,
    pub amount: Cents,
}

pub async fn transfer(
    pool: &PgPool,
    req: TransferRequest,
) -> Result<Served<Transfer>, TransferError> {
    if req.from == req.to {
        return Err(TransferError::SameUser);
    }
    let mut conn = pool.get().await?;
    // Dropping `tx` on an early return sends ROLLBACK.
    let tx = conn.transaction().await?;
    let lock = format!("SELECT {SERVED_BY_COLUMNS}, id, balance_cents FROM users WHERE id IN ($1, $2) ORDER BY id FOR UPDATE");
    let locked = tx
        .query_typed(&lock, &[(&req.from, Type::INT8), (&req.to, Type::INT8)])
        .await?;
    let balance_of = |id: i64| -> Result<i64, TransferError> {
        for row in &locked {
            if row.try_get::<_, i64>("id")? == id {
                return Ok(row.try_get("balance_cents")?);
            }
        }
        Err(TransferError::UnknownUser(id))
    };
    let from_balance = balance_of(req.from)?;
    balance_of(req.to)?;
    if from_balance < req.amount.0 {
        return Err(TransferError::InsufficientFunds {
            user: req.from,
            balance: Cents(from_balance).as_f64(),
            amount: req.amount.as_f64(),
        });
    }
    let by = match locked.first() {
        Some(row) => ServedBy::from_row(row)?,
        None => return Err(TransferError::UnknownUser(req.from)),
    };
    let (from_user, to_user) = apply(&tx, req).await?;
    tx.commit().await?;
    Ok(Served {
        value: Transfer {
            from_user,
            to_user,
            amount: req.amount,
        },
        by,
    })
}

/// Both balance changes in one UPDATE; returns (from, to) after it.
async fn apply(
    tx: &tokio_postgres::Transaction<'_>,
    req: TransferRequest,
) -> Result<(User, User), TransferError> {
    let sql = format!(
        "UPDATE users AS u SET balance_cents = u.balance_cents + \
         CASE WHEN u.id = $1 THEN -$3::int8 ELSE $3::int8 END \
         WHERE u.id IN ($1, $2) RETURNING {}",
        crate::users::USER_COLUMNS
    );
    let rows = tx
        .query_typed(
            &sql,
            &[
                (&req.from, Type::INT8),
                (&req.to, Type::INT8),
                (&req.amount.0, Type::INT8),
            ],
        )
        .await?;
    let (mut from, mut to) = (None, None);
    for row in &rows {
        match User::from_row(row)? {
            Some(u) if u.id == req.from => from = Some(u),
            Some(u) if u.id == req.to => to = Some(u),
            _ => {}
        }
    }
    match (from, to) {
        (Some(from), Some(to)) => Ok((from, to)),
        // Both rows were locked a moment ago in this transaction.
        _ => Err(DbError::Unexpected("a locked user vanished during the transfer").into()),
    }
}
