//! Documents: upsert with chunks and outbox jobs in one transaction, lookups, delete,
//! statuses, idempotency keys and the tenant's index generation.

use std::collections::HashMap;

use braid_proto::v1::DocumentAcl;
use uuid::Uuid;

use super::{
    DbResult, Metadata, Op, Store, Visibility, bump_generation, enqueue, supersede_pending,
};

/// A validated, extracted and chunked document ready to be stored.
#[derive(Debug)]
pub struct NewDocument {
    pub tenant: String,
    pub external_id: String,
    pub title: String,
    pub mime_type: &'static str,
    pub metadata: HashMap<String, String>,
    /// Validated and normalised (see `acl::validate`); part of `content_sha256`.
    pub acl: DocumentAcl,
    pub content_sha256: String,
    pub chunks: Vec<(String, i32)>,
}

/// How a request names a document of its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocumentRef {
    Id(Uuid),
    External(String),
}

/// What an upsert did.
pub enum Upsert {
    Stored(Upserted),
    /// The external id belongs to a live document the caller may not act on: nothing was
    /// written, and nothing of that document is returned.
    NotWritable,
}

pub struct Upserted {
    pub document_id: Uuid,
    pub status: String,
    pub unchanged: bool,
    pub chunk_count: i32,
}

/// A document row as returned to callers.
#[derive(Debug, sqlx::FromRow)]
pub struct DocumentRow {
    pub id: Uuid,
    pub tenant: String,
    pub external_id: String,
    pub title: String,
    pub mime_type: String,
    pub metadata: Metadata,
    pub status: String,
    pub chunk_count: i32,
    pub content_sha256: String,
    pub version: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub vector_synced_ms: Option<i64>,
    pub text_synced_ms: Option<i64>,
    pub acl_clearance: i32,
    pub acl_groups: Vec<String>,
}

impl DocumentRow {
    pub fn acl(&self) -> DocumentAcl {
        DocumentAcl {
            clearance: self.acl_clearance.max(0) as u32,
            groups: self.acl_groups.clone(),
        }
    }
}

const DOCUMENT_COLUMNS: &str = "id, tenant, external_id, title, mime_type, metadata, status, chunk_count, \
    content_sha256, version, last_error, acl_clearance, acl_groups, \
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms, \
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms, \
    (extract(epoch FROM vector_synced_at) * 1000)::bigint AS vector_synced_ms, \
    (extract(epoch FROM text_synced_at) * 1000)::bigint AS text_synced_ms";

impl Store {
    /// Inserts or updates a document, replaces its chunks and enqueues one upsert job per leg,
    /// in one transaction. Unchanged content (same hash) is a no-op. A live document with the
    /// same external id is replaced only when `visibility` admits it (checked under the row
    /// lock, before anything else about it is looked at); otherwise [`Upsert::NotWritable`].
    /// A document being deleted counts as absent.
    pub async fn upsert_document(
        &self,
        doc: &NewDocument,
        visibility: &Visibility,
    ) -> DbResult<Upsert> {
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "SELECT id, content_sha256, deleted, status, chunk_count, {} \
             FROM ingest.documents WHERE tenant = $4 AND external_id = $5 FOR UPDATE",
            Visibility::sql(1)
        );
        let existing: Option<(Uuid, String, bool, String, i32, bool)> = visibility
            .bind(sqlx::query_as(&sql))
            .bind(&doc.tenant)
            .bind(&doc.external_id)
            .fetch_optional(&mut tx)
            .await?;
        let metadata = sqlx::types::Json(&doc.metadata);
        let chunk_count = doc.chunks.len() as i32;
        // Validated against `limits.max_acl_clearance`, which is at most i32::MAX.
        let acl_clearance = i32::try_from(doc.acl.clearance).unwrap_or(i32::MAX);
        let (id, version) = match existing {
            Some((_, _, false, _, _, false)) => {
                tx.rollback().await?;
                return Ok(Upsert::NotWritable);
            }
            Some((id, sha, deleted, status, count, _)) if sha == doc.content_sha256 && !deleted => {
                tx.commit().await?;
                return Ok(Upsert::Stored(Upserted {
                    document_id: id,
                    status,
                    unchanged: true,
                    chunk_count: count,
                }));
            }
            Some((id, ..)) => {
                let version: i64 = sqlx::query_scalar(
                    "UPDATE ingest.documents SET title = $2, mime_type = $3, metadata = $4, \
                       content_sha256 = $5, chunk_count = $6, acl_clearance = $7, acl_groups = $8, \
                       version = version + 1, deleted = false, \
                       status = 'pending', last_error = NULL, updated_at = now() \
                     WHERE id = $1 RETURNING version",
                )
                .bind(id)
                .bind(&doc.title)
                .bind(doc.mime_type)
                .bind(metadata)
                .bind(&doc.content_sha256)
                .bind(chunk_count)
                .bind(acl_clearance)
                .bind(&doc.acl.groups)
                .fetch_one(&mut tx)
                .await?;
                sqlx::query("DELETE FROM ingest.chunks WHERE document_id = $1")
                    .bind(id)
                    .execute(&mut tx)
                    .await?;
                // Older versions' pending jobs are superseded by the new ones.
                supersede_pending(&mut tx, id).await?;
                (id, version)
            }
            None => {
                let id = Uuid::new_v4();
                sqlx::query(
                    "INSERT INTO ingest.documents \
                       (id, tenant, external_id, title, mime_type, metadata, content_sha256, chunk_count, \
                        acl_clearance, acl_groups) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(id)
                .bind(&doc.tenant)
                .bind(&doc.external_id)
                .bind(&doc.title)
                .bind(doc.mime_type)
                .bind(metadata)
                .bind(&doc.content_sha256)
                .bind(chunk_count)
                .bind(acl_clearance)
                .bind(&doc.acl.groups)
                .execute(&mut tx)
                .await?;
                (id, 1)
            }
        };
        let ordinals: Vec<i32> = (0..chunk_count).collect();
        let bodies: Vec<&str> = doc.chunks.iter().map(|(t, _)| t.as_str()).collect();
        let tokens: Vec<i32> = doc.chunks.iter().map(|(_, n)| *n).collect();
        sqlx::query(
            "INSERT INTO ingest.chunks (document_id, ordinal, body, token_count) \
             SELECT $1, u.ordinal, u.body, u.tokens FROM UNNEST($2::int4[], $3::text[], $4::int4[]) \
               AS u(ordinal, body, tokens)",
        )
        .bind(id)
        .bind(&ordinals)
        .bind(&bodies)
        .bind(&tokens)
        .execute(&mut tx)
        .await?;
        enqueue(&mut tx, id, &doc.tenant, Op::Upsert, version).await?;
        tx.commit().await?;
        Ok(Upsert::Stored(Upserted {
            document_id: id,
            status: "pending".into(),
            unchanged: false,
            chunk_count,
        }))
    }

    /// The document of `tenant` that `target` names (another tenant's document is absent).
    /// One statement whatever the outcome; the caller applies the ACL to the row.
    pub async fn get_document(
        &self,
        tenant: &str,
        target: &DocumentRef,
    ) -> DbResult<Option<DocumentRow>> {
        let column = match target {
            DocumentRef::Id(_) => "id = $2::uuid",
            DocumentRef::External(_) => "external_id = $2::text",
        };
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS} FROM ingest.documents WHERE tenant = $1 AND {column}"
        );
        let query = sqlx::query_as(&sql).bind(tenant);
        let query = match target {
            DocumentRef::Id(id) => query.bind(*id),
            DocumentRef::External(external_id) => query.bind(external_id.as_str()),
        };
        query.fetch_optional(&self.db).await
    }

    /// Marks the document `target` names deleted and enqueues delete jobs for both legs, when
    /// it is live and `visibility` admits it; the row disappears once both legs confirmed.
    /// Missing, another tenant's, being deleted or hidden: one and the same UPDATE matches
    /// nothing, and the answer is `None`.
    pub async fn delete_document(
        &self,
        tenant: &str,
        target: &DocumentRef,
        visibility: &Visibility,
    ) -> DbResult<Option<Uuid>> {
        let mut tx = self.db.begin().await?;
        let column = match target {
            DocumentRef::Id(_) => "id = $5::uuid",
            DocumentRef::External(_) => "external_id = $5::text",
        };
        let sql = format!(
            "UPDATE ingest.documents SET deleted = true, status = 'deleting', \
               version = version + 1, updated_at = now() \
             WHERE tenant = $4 AND {column} AND NOT deleted AND {} RETURNING id, version",
            Visibility::sql(1)
        );
        let query = visibility.bind(sqlx::query_as(&sql)).bind(tenant);
        let query = match target {
            DocumentRef::Id(id) => query.bind(*id),
            DocumentRef::External(external_id) => query.bind(external_id.as_str()),
        };
        let updated: Option<(Uuid, i64)> = query.fetch_optional(&mut tx).await?;
        let Some((id, version)) = updated else {
            tx.rollback().await?;
            return Ok(None);
        };
        supersede_pending(&mut tx, id).await?;
        enqueue(&mut tx, id, tenant, Op::Delete, version).await?;
        bump_generation(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Current status of each id (missing ids: deleted and gone).
    pub async fn statuses(&self, ids: &[Uuid]) -> DbResult<HashMap<Uuid, String>> {
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("SELECT id, status FROM ingest.documents WHERE id = ANY($1)")
                .bind(ids)
                .fetch_all(&self.db)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// External id and chunk count of those of `ids` that belong to `tenant` and that
    /// `visibility` admits (the others look absent).
    pub async fn tenant_documents(
        &self,
        tenant: &str,
        ids: &[Uuid],
        visibility: &Visibility,
    ) -> DbResult<HashMap<Uuid, (String, i32)>> {
        let sql = format!(
            "SELECT id, external_id, chunk_count FROM ingest.documents \
             WHERE tenant = $4 AND id = ANY($5) AND {}",
            Visibility::sql(1)
        );
        let rows: Vec<(Uuid, String, i32)> = visibility
            .bind(sqlx::query_as(&sql))
            .bind(tenant)
            .bind(ids)
            .fetch_all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|(id, e, c)| (id, (e, c))).collect())
    }

    /// The stored answer for an idempotency key: (request fingerprint, encoded response).
    pub async fn idempotent_response(
        &self,
        tenant: &str,
        key: &str,
    ) -> DbResult<Option<(String, Vec<u8>)>> {
        sqlx::query_as(
            "SELECT request_hash, response FROM ingest.idempotency \
             WHERE tenant = $1 AND key = $2 AND created_at > now() - interval '24 hours'",
        )
        .bind(tenant)
        .bind(key)
        .fetch_optional(&self.db)
        .await
    }

    pub async fn remember_response(
        &self,
        tenant: &str,
        key: &str,
        fingerprint: &str,
        response: &[u8],
    ) -> DbResult<()> {
        sqlx::query(
            "INSERT INTO ingest.idempotency (tenant, key, request_hash, response) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
               response = EXCLUDED.response, created_at = now() \
             WHERE ingest.idempotency.created_at <= now() - interval '24 hours'",
        )
        .bind(tenant)
        .bind(key)
        .bind(fingerprint)
        .bind(response)
        .execute(&self.db)
        .await
        .map(|_| ())
    }

    /// The index generations of the first `limit` tenants by name, and how many tenants have
    /// one (for the status view).
    pub async fn index_generations(&self, limit: i64) -> DbResult<(Vec<(String, i64)>, i64)> {
        let first = sqlx::query_as(
            "SELECT tenant, generation FROM ingest.index_generations ORDER BY tenant LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.db)
        .await?;
        let count = sqlx::query_scalar("SELECT count(*) FROM ingest.index_generations")
            .fetch_one(&self.db)
            .await?;
        Ok((first, count))
    }

    /// The tenant's index generation (0 before its first indexed change).
    pub async fn index_generation(&self, tenant: &str) -> DbResult<i64> {
        let generation: Option<i64> =
            sqlx::query_scalar("SELECT generation FROM ingest.index_generations WHERE tenant = $1")
                .bind(tenant)
                .fetch_optional(&self.db)
                .await?;
        Ok(generation.unwrap_or(0))
    }
}
