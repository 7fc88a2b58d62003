//! The audit log's chain: chaining the events waiting in `audit_pending`, sealing, and
//! checking the SHA-256 chain of every row, its head, and the seals.
//!
//! Requests write events to `audit_pending` (in their own transactions, in parallel);
//! [`chain_pending`] moves them into `audit_log` in batches, each hashed onto the previous
//! row, holding the chain's head (one row) so that one chainer runs at a time. The move is
//! a function of the migrations that runs with the owner's rights: the service's role can
//! neither delete a waiting event nor write the chain itself.
//!
//! A seal is HMAC-SHA256 of a row's chain hash under a key kept in the service's config,
//! not in the database. The chain alone can be recomputed by anyone who can write the table;
//! since a row's hash covers every row before it, rewriting or removing a row changes every
//! later hash, and their seals cannot be redone without the key. Rows are sealed in order
//! shortly after they are written ([`seal_pending`]), so the sealed rows form a prefix of
//! the chain: a row without a seal before a sealed one means a seal was removed.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::schema::{audit_head, audit_log, audit_pending, audit_seals};
use crate::store::audit::{AuditRow, chain_content, chain_hash};

/// Events chained per call of `audit_chain()`.
pub const CHAIN_BATCH: i32 = 1000;

diesel::define_sql_function! {
    /// The migrations' `audit_chain(max_rows)`: chains up to `max_rows` waiting events,
    /// holding the head; returns how many.
    fn audit_chain(max_rows: diesel::sql_types::Integer) -> diesel::sql_types::Integer;
}

/// Chain up to `limit` waiting events, oldest first (`audit_chain()` in the migrations: it
/// runs with the owner's rights, takes the chain's head, moves the events from
/// `audit_pending` into `audit_log` each hashed onto the one before, and moves the head).
/// Waits at most five seconds for the head. Returns how many were chained.
pub async fn chain_pending(conn: &mut AsyncPgConnection, limit: i32) -> QueryResult<usize> {
    conn.transaction(async |conn| {
        diesel::sql_query("SET LOCAL lock_timeout = '5s'")
            .execute(conn)
            .await?;
        let chained: i32 = diesel::select(audit_chain(limit)).get_result(conn).await?;
        Ok(chained as usize)
    })
    .await
}

/// Chain what waits, a batch at a time, until a batch comes back short or `max_batches`
/// were chained (writes arriving as fast as they are chained do not keep the caller
/// forever). Returns how many were chained.
pub async fn chain_all(conn: &mut AsyncPgConnection, max_batches: usize) -> QueryResult<usize> {
    let mut total = 0;
    for _ in 0..max_batches {
        let chained = chain_pending(conn, CHAIN_BATCH).await?;
        total += chained;
        if chained < CHAIN_BATCH as usize {
            break;
        }
    }
    Ok(total)
}

/// Events written but not chained yet.
pub async fn pending_count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    audit_pending::table.count().get_result(conn).await
}

/// HMAC-SHA256 of a chain hash.
pub fn seal(key: &[u8; 32], hash: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(hash);
    mac.finalize().into_bytes().to_vec()
}

/// The chain hash a row should have after `prev` (what `audit verify` recomputes).
pub fn row_hash(prev: Option<&[u8]>, row: &AuditRow) -> Vec<u8> {
    let content = chain_content(
        row.occurred_at,
        &row.event,
        row.actor_id,
        row.subject_id,
        row.session_id,
        row.ip.as_deref(),
        row.user_agent.as_deref(),
        row.request_id.as_deref(),
        &row.details,
    );
    chain_hash(prev, &content)
}

/// The last sealed row: its id, chain hash and seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub id: i64,
    pub hash: Option<Vec<u8>>,
    pub mac: Vec<u8>,
}

/// A sealed row, as the tables say now.
pub async fn sealed(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Sealed>> {
    audit_seals::table
        .inner_join(audit_log::table)
        .filter(audit_seals::audit_id.eq(id))
        .select((audit_seals::audit_id, audit_log::hash, audit_seals::mac))
        .first::<(i64, Option<Vec<u8>>, Vec<u8>)>(conn)
        .await
        .optional()
        .map(|row| row.map(|(id, hash, mac)| Sealed { id, hash, mac }))
}

/// The highest sealed row, as the tables say now.
pub async fn last_sealed(conn: &mut AsyncPgConnection) -> QueryResult<Option<Sealed>> {
    audit_seals::table
        .inner_join(audit_log::table)
        .order(audit_seals::audit_id.desc())
        .select((audit_seals::audit_id, audit_log::hash, audit_seals::mac))
        .first::<(i64, Option<Vec<u8>>, Vec<u8>)>(conn)
        .await
        .optional()
        .map(|row| row.map(|(id, hash, mac)| Sealed { id, hash, mac }))
}

/// Seal up to `limit` chained rows after the last sealed one, in order, stopping at the first
/// written before `not_before` (rows that old were not sealed within minutes of the event,
/// which is for an operator to look into: `audit seal` seals them). Returns the last row sealed.
/// Several processes may run this at once: a row sealed twice keeps its first seal (both
/// are equal).
pub async fn seal_pending(
    conn: &mut AsyncPgConnection,
    key: &[u8; 32],
    limit: i64,
    not_before: Option<chrono::DateTime<chrono::Utc>>,
) -> QueryResult<Option<Sealed>> {
    let last: Option<i64> = audit_seals::table
        .select(diesel::dsl::max(audit_seals::audit_id))
        .first(conn)
        .await?;
    let rows: Vec<(i64, Option<Vec<u8>>, chrono::DateTime<chrono::Utc>)> = audit_log::table
        .filter(audit_log::id.gt(last.unwrap_or(0)))
        .filter(audit_log::hash.is_not_null())
        .order(audit_log::id.asc())
        .limit(limit)
        .select((audit_log::id, audit_log::hash, audit_log::occurred_at))
        .load(conn)
        .await?;
    let mut sealed = Vec::new();
    for (id, hash, occurred_at) in rows {
        if not_before.is_some_and(|t| occurred_at < t) {
            break;
        }
        let Some(hash) = hash else { continue };
        let mac = seal(key, &hash);
        sealed.push(Sealed {
            id,
            hash: Some(hash),
            mac,
        });
    }
    let Some(newest) = sealed.last().cloned() else {
        return Ok(None);
    };
    let values: Vec<_> = sealed
        .iter()
        .map(|s| (audit_seals::audit_id.eq(s.id), audit_seals::mac.eq(&s.mac)))
        .collect();
    diesel::insert_into(audit_seals::table)
        .values(&values)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(Some(newest))
}

/// The outcome of checking the chain.
#[derive(Debug, PartialEq, Eq)]
pub enum ChainCheck {
    Intact {
        rows: u64,
        /// Rows whose seal was checked too.
        sealed: u64,
        /// The newest rows, not sealed yet (the chain alone vouches for them).
        unsealed: u64,
    },
    Broken {
        id: i64,
        rows_checked: u64,
    },
    /// A row's seal is wrong, or missing before sealed rows, or belongs to no chained row:
    /// the chain was rewritten.
    BadSeal {
        id: i64,
    },
    /// The chain and seals hold, but an event of long ago was never sealed: written while no
    /// sealer ran, or put there by someone who could not seal it.
    LongUnsealed {
        id: i64,
    },
    /// Every row chains, but the last is not the chain's head: rows were removed from the
    /// end.
    TailMissing {
        rows: u64,
    },
}

/// How old an unsealed row may be before `audit verify` calls it out; the service seals
/// every second, and refuses to seal rows older than this on its own.
pub const SEAL_WITHIN: chrono::Duration = chrono::Duration::minutes(10);

/// Recompute every hash in id order, check every seal, and check that the last hash is the
/// chain's head. One read-only snapshot (repeatable read), so appends committing meanwhile
/// are not half seen.
pub async fn verify_chain(conn: &mut AsyncPgConnection, key: &[u8; 32]) -> QueryResult<ChainCheck> {
    conn.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |conn| verify_in_snapshot(conn, key).await)
        .await
}

async fn verify_in_snapshot(
    conn: &mut AsyncPgConnection,
    key: &[u8; 32],
) -> QueryResult<ChainCheck> {
    let long_ago = chrono::Utc::now() - SEAL_WITHIN;
    let mut long_unsealed: Option<i64> = None;
    let mut prev: Option<Vec<u8>> = None;
    let mut after = 0i64;
    let (mut checked, mut sealed, mut unsealed) = (0u64, 0u64, 0u64);
    // The first row without a seal; any seal after it means one was removed.
    let mut first_unsealed: Option<i64> = None;
    loop {
        let rows: Vec<(AuditRow, Option<Vec<u8>>)> = audit_log::table
            .left_join(audit_seals::table)
            .filter(audit_log::id.gt(after))
            .order(audit_log::id.asc())
            .limit(1000)
            .select((AuditRow::as_select(), audit_seals::mac.nullable()))
            .load(conn)
            .await?;
        let Some((last, _)) = rows.last() else { break };
        after = last.id;
        for (row, mac) in rows {
            let Some(hash) = &row.hash else {
                // Rows written before the chain existed; they were never sealed.
                if mac.is_some() {
                    return Ok(ChainCheck::BadSeal { id: row.id });
                }
                if prev.is_none() {
                    continue;
                }
                return Ok(ChainCheck::Broken {
                    id: row.id,
                    rows_checked: checked,
                });
            };
            if row.prev_hash != prev || &row_hash(prev.as_deref(), &row) != hash {
                return Ok(ChainCheck::Broken {
                    id: row.id,
                    rows_checked: checked,
                });
            }
            match mac {
                Some(mac) => {
                    if let Some(id) = first_unsealed {
                        return Ok(ChainCheck::BadSeal { id });
                    }
                    if mac != seal(key, hash) {
                        return Ok(ChainCheck::BadSeal { id: row.id });
                    }
                    sealed += 1;
                }
                None => {
                    first_unsealed.get_or_insert(row.id);
                    if row.occurred_at < long_ago {
                        long_unsealed.get_or_insert(row.id);
                    }
                    unsealed += 1;
                }
            }
            checked += 1;
            prev = Some(hash.clone());
        }
    }
    let head: Option<Vec<u8>> = audit_head::table
        .select(audit_head::hash)
        .first::<Option<Vec<u8>>>(conn)
        .await
        .optional()?
        .flatten();
    if head != prev {
        return Ok(ChainCheck::TailMissing { rows: checked });
    }
    // Every seal must have been checked above: one whose row is gone (the foreign key
    // switched off) or out of the chain is a trace of tampering.
    let seals: i64 = audit_seals::table.count().get_result(conn).await?;
    if seals as u64 != sealed {
        let orphan = audit_seals::table
            .left_join(audit_log::table)
            .filter(audit_log::id.is_null())
            .select(audit_seals::audit_id)
            .first::<i64>(conn)
            .await
            .optional()?;
        return Ok(ChainCheck::BadSeal {
            id: orphan.unwrap_or(0),
        });
    }
    if let Some(id) = long_unsealed {
        return Ok(ChainCheck::LongUnsealed { id });
    }
    Ok(ChainCheck::Intact {
        rows: checked,
        sealed,
        unsealed,
    })
}
