//! The audit log's chain: chaining the events waiting in `audit_pending`, sealing, and
//! checking the SHA-256 chain of every row, its head, and the seals.
//!
//! Requests write events to `audit_pending` (in their own transactions, in parallel);
//! [`chain_pending`] moves them into `audit_log` in batches, each hashed onto the previous
//! row, holding the chain's head (one row) so that one chainer runs at a time.
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

/// An event waiting to be chained.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = audit_pending)]
struct Pending {
    id: i64,
    occurred_at: chrono::DateTime<chrono::Utc>,
    event: String,
    actor_id: Option<uuid::Uuid>,
    subject_id: Option<uuid::Uuid>,
    session_id: Option<uuid::Uuid>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    details: serde_json::Value,
}

/// Events chained per transaction.
pub const CHAIN_BATCH: i64 = 1000;

/// Chain up to `limit` waiting events, oldest first, in one transaction: take the chain's
/// head (its row lock makes other chainers wait), delete the events from `audit_pending`,
/// insert them into `audit_log` in order, each hashed onto the one before, and move the
/// head to the last. Returns how many were chained.
pub async fn chain_pending(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<usize> {
    conn.transaction(async |conn| {
        let head: Option<Vec<u8>> = audit_head::table
            .select(audit_head::hash)
            .for_update()
            .first(conn)
            .await?;
        let oldest: Vec<i64> = audit_pending::table
            .select(audit_pending::id)
            .order(audit_pending::id.asc())
            .limit(limit)
            .load(conn)
            .await?;
        if oldest.is_empty() {
            return Ok(0);
        }
        let mut events: Vec<Pending> =
            diesel::delete(audit_pending::table.filter(audit_pending::id.eq_any(oldest)))
                .returning(Pending::as_returning())
                .get_results(conn)
                .await?;
        if events.is_empty() {
            return Ok(0);
        }
        events.sort_by_key(|e| e.id);
        let mut prev = head;
        let mut before_last = None;
        let mut rows = Vec::with_capacity(events.len());
        for e in &events {
            let content = chain_content(
                e.occurred_at,
                &e.event,
                e.actor_id,
                e.subject_id,
                e.session_id,
                e.ip.as_deref(),
                e.user_agent.as_deref(),
                e.request_id.as_deref(),
                &e.details,
            );
            let hash = chain_hash(prev.as_deref(), &content);
            rows.push((
                audit_log::occurred_at.eq(e.occurred_at),
                audit_log::event.eq(&e.event),
                audit_log::actor_id.eq(e.actor_id),
                audit_log::subject_id.eq(e.subject_id),
                audit_log::session_id.eq(e.session_id),
                audit_log::ip.eq(&e.ip),
                audit_log::user_agent.eq(&e.user_agent),
                audit_log::request_id.eq(&e.request_id),
                audit_log::details.eq(&e.details),
                audit_log::prev_hash.eq(prev.clone()),
                audit_log::hash.eq(Some(hash.clone())),
            ));
            before_last = prev;
            prev = Some(hash);
        }
        // One multi-row insert: its rows take their ids in this order, the chain's.
        diesel::insert_into(audit_log::table)
            .values(&rows)
            .execute(conn)
            .await?;
        diesel::update(audit_head::table)
            .set((audit_head::prev.eq(before_last), audit_head::hash.eq(prev)))
            .execute(conn)
            .await?;
        Ok(events.len())
    })
    .await
}

/// Chain every event waiting now, a batch at a time (what the admin listing does before it
/// reads, so that it shows what was just done). Returns how many were chained.
pub async fn chain_all(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let mut total = 0;
    loop {
        let chained = chain_pending(conn, CHAIN_BATCH).await?;
        total += chained;
        if (chained as i64) < CHAIN_BATCH {
            return Ok(total);
        }
    }
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
/// chained before `not_before` (rows that old were not sealed when they were chained, which
/// is for an operator to look into: `audit seal` seals them). Returns the last row sealed.
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
        .select((audit_log::id, audit_log::hash, audit_log::created_at))
        .load(conn)
        .await?;
    let mut sealed = Vec::new();
    for (id, hash, chained_at) in rows {
        if not_before.is_some_and(|t| chained_at < t) {
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
    /// The chain and seals hold, but a row chained long ago was never sealed: chained while
    /// no sealer ran, or put there by someone who could not seal it.
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
        type Row = (AuditRow, chrono::DateTime<chrono::Utc>, Option<Vec<u8>>);
        let rows: Vec<Row> = audit_log::table
            .left_join(audit_seals::table)
            .filter(audit_log::id.gt(after))
            .order(audit_log::id.asc())
            .limit(1000)
            .select((
                AuditRow::as_select(),
                audit_log::created_at,
                audit_seals::mac.nullable(),
            ))
            .load(conn)
            .await?;
        let Some((last, ..)) = rows.last() else { break };
        after = last.id;
        for (row, chained_at, mac) in rows {
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
                    if chained_at < long_ago {
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
