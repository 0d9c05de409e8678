//! One document's write without a refresh and without a delete-by-query.
//!
//! A realtime `_mget` of the document's entry through each alias a live write goes to (the
//! serving alias and the rebuild alias; a missing alias answers per item, so the same request
//! tells whether a rebuild is loading) gives the chunk ids each index holds for it
//! ([`Held`]). A `_bulk` then writes the new entries and, once every one is written, a second
//! deletes by id the chunks the new version no longer has ([`replace`]; none when a document
//! keeps its chunk ids, the common case), so a write that fails leaves the old version whole
//! for the retry. Realtime gets see writes that no refresh has made searchable yet, so
//! back-to-back writes of a document never leave stale chunks behind, and only id lookups
//! touch the index (no search, no scroll). Jobs of one document never run concurrently
//! (ingest's outbox), so the read-then-write needs no lock.
//!
//! A delete through the serving alias removes the chunks, then (when every chunk is gone) the
//! document entry, so a failed chunk delete leaves the entry that lists it for the retry.
//! Through the rebuild alias a tombstone takes the document entry's place (listing the
//! deleted chunks), so the rebuild's older copy of the document is skipped: its `create`
//! finds the entry taken. A rebuild load that raced a live write of the same document
//! removes the chunks it created that the live version does not list.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use braid_proto::v1::Chunk;
use serde_json::{Value, json};

use super::bulk::{self, Item, Op, Outcome};
use super::mapping::{
    KIND_TOMBSTONE, chunk_entry_id, doc_key, document_entry_id, tombstone_source,
};
use super::request::{EsRequest, Method, TenantNames};
use super::{EsIndex, failure};
use crate::error::TextError;
use crate::language::{Lang, chunk_langs};

impl EsIndex {
    /// A live replace (`Some((chunks, their languages))`) or delete (`None`) through the
    /// serving alias and, while a rebuild loads, the rebuild alias. Returns once searches see
    /// it: the number of chunks written, or for a delete the number the serving index held.
    pub(super) async fn live_write(
        &self,
        document: (&str, &str),
        chunks: Option<(&[Chunk], &[Lang])>,
    ) -> Result<u32, TextError> {
        self.ready().await?;
        let names = self.tenant_names(document.0);
        let (alias, rebuild_alias) = (names.alias.as_str(), names.rebuild_alias.as_str());
        let mut aliases = vec![alias, rebuild_alias];
        if self.per_tenant() {
            // The same lookup through the catalog aliases names the serving and the
            // rebuilding generation (it holds no entries: `_index` answers).
            aliases.extend([self.names.alias.as_str(), self.names.rebuild_alias.as_str()]);
        }
        let new = chunks.unwrap_or_default();
        let mut again = true;
        let mut wrote = false;
        let mut created = 0;
        let serving = loop {
            let body = self
                .client
                .ok(
                    &lookup(&aliases, document.0, document.1),
                    "reading a document entry",
                )
                .await?;
            let found = match held(&body, aliases.len()) {
                // Another writer just created the tenant's index and its primary is still
                // starting: wait for it, as that writer does, and look again.
                Err(TextError::Unavailable(why)) if self.per_tenant() && created < 2 => {
                    tracing::debug!(%why, "waiting for a tenant index's primary");
                    created += 1;
                    self.wait_for_primary(alias).await?;
                    continue;
                }
                found => found?,
            };
            if self.per_tenant() && self.tenant_indices_missing(&names, &found).await? {
                created += 1;
                if created > 2 {
                    return Err(TextError::Unavailable(format!(
                        "the index of tenant {} vanished after it was created",
                        document.0
                    )));
                }
                continue;
            }
            let mut found = found.into_iter();
            let serving = found.next().flatten().ok_or_else(|| {
                TextError::NotServing(format!(
                    "the Elasticsearch alias {alias} names no index (deleted?); rebuild it \
                     with `braidctl reindex --leg text`"
                ))
            })?;
            let write_id = uuid::Uuid::new_v4().simple().to_string();
            let mut items = replace(alias, &serving, document, new, &write_id, false)?;
            if let Some(rebuild) = found.next().flatten() {
                items.extend(replace(
                    rebuild_alias,
                    &rebuild,
                    document,
                    new,
                    &write_id,
                    true,
                )?);
            }
            // New entries first and deletes after, so a write that fails (a permanent error
            // in a chunk, say) leaves the old version whole for the retry.
            let (writes, deletes): (Vec<Item>, Vec<Item>) =
                items.into_iter().partition(|i| i.op != Op::Delete);
            wrote |= !(writes.is_empty() && deletes.is_empty());
            let mut moved = false;
            for phase in [writes, deletes] {
                if phase.is_empty() {
                    continue;
                }
                let outcomes = self.bulk(&phase).await?;
                // A rebuild switched the alias between the lookup and the bulk: what to
                // delete was read from the old index, so once more against the new one.
                moved = phase.iter().zip(&outcomes).any(|(i, (o, index))| {
                    i.index == alias && *o == Outcome::Written && *index != serving.index
                });
                if moved && again {
                    break;
                }
                // The rebuild alias may be gone by now (finished or dropped): nothing to do
                // there.
                let (phase, outcomes): (Vec<Item>, Vec<(Outcome, String)>) = phase
                    .into_iter()
                    .zip(outcomes)
                    .filter(|(i, (o, _))| !(i.index == rebuild_alias && alias_missing(o)))
                    .unzip();
                if let Some(err) = failure(&phase, &outcomes) {
                    return Err(err);
                }
            }
            if moved && std::mem::take(&mut again) {
                continue;
            }
            break serving;
        };
        let deleted = chunks.is_none() && serving.present;
        if deleted {
            // Every chunk is gone: now the entry that listed them.
            let entry = [delete_entry(alias, document)];
            let outcomes = self.bulk(&entry).await?;
            if let Some(err) = failure(&entry, &outcomes) {
                return Err(err);
            }
        }
        if !(wrote || deleted) {
            return Ok(0);
        }
        self.refresh_after_write(alias).await?;
        Ok(if deleted {
            serving.chunk_ids.len() as u32
        } else {
            new.0.len() as u32
        })
    }

    /// Writes documents into rebuild `id` (through the rebuild alias): document entries
    /// first, `create` only (one that exists was written live since the rebuild started,
    /// and that document is skipped), then the chunks of the others. No refresh (the load
    /// runs with `bulk_refresh_interval`). Returns (written, skipped).
    pub(super) async fn load_rebuild(
        &self,
        id: &str,
        documents: Documents,
    ) -> Result<(u32, u32), TextError> {
        let (documents, langs) = detect_all(documents).await?;
        let write_id = uuid::Uuid::new_v4().simple().to_string();
        let mut entries = Vec::new();
        let mut chunk_items = Vec::new();
        let mut tenants: BTreeMap<&str, TenantNames> = BTreeMap::new();
        for (tenant, _, _) in &documents {
            tenants
                .entry(tenant.as_str())
                .or_insert_with(|| self.tenant_names(tenant));
        }
        if self.per_tenant() {
            for names in tenants.values() {
                let refresh = &self.config.bulk_refresh_interval;
                self.ensure_tenant_index(id, names, &names.rebuild_alias, refresh)
                    .await?;
            }
        }
        for ((tenant, document_id, chunks), langs) in documents.iter().zip(&langs) {
            let (entry, items) = bulk::document_items(
                &tenants[tenant.as_str()].rebuild_alias,
                (tenant, document_id),
                chunks,
                langs,
                &write_id,
                Op::Create,
                &[],
            )?;
            entries.extend(entry);
            chunk_items.push(items);
        }
        let outcomes = self.bulk(&entries).await?;
        self.still_loading(id, &outcomes)?;
        let mut skipped = 0u32;
        let mut fresh = HashSet::new();
        for (entry, (outcome, _)) in entries.iter().zip(&outcomes) {
            match outcome {
                Outcome::Written => {
                    fresh.insert(entry.document.clone());
                }
                Outcome::Exists => skipped += 1,
                _ => {}
            }
        }
        let items: Vec<Item> = chunk_items
            .into_iter()
            .flatten()
            .filter(|i| fresh.contains(&i.document))
            .collect();
        let chunk_outcomes = self.bulk(&items).await?;
        self.still_loading(id, &chunk_outcomes)?;
        if let Some(err) = failure(&entries, &outcomes).or_else(|| failure(&items, &chunk_outcomes))
        {
            return Err(err);
        }
        self.undo_raced_chunks(&write_id, &items, &chunk_outcomes)
            .await?;
        Ok((documents.len() as u32 - skipped, skipped))
    }

    /// A live write of a document between this load's entry and its chunks replaced the
    /// entry (or left a tombstone): delete the chunks the load created that the live version
    /// does not list.
    async fn undo_raced_chunks(
        &self,
        write_id: &str,
        items: &[Item],
        outcomes: &[(Outcome, String)],
    ) -> Result<(), TextError> {
        let mut created: BTreeMap<&(String, String), (&str, Vec<&str>)> = BTreeMap::new();
        for (item, (outcome, _)) in items.iter().zip(outcomes) {
            if *outcome == Outcome::Written {
                let (_, ids) = created
                    .entry(&item.document)
                    .or_insert((&item.index, vec![]));
                ids.push(&item.id);
            }
        }
        if created.is_empty() {
            return Ok(());
        }
        let entries: Vec<(&str, &str, &str)> = created
            .iter()
            .map(|((t, d), (alias, _))| (*alias, t.as_str(), d.as_str()))
            .collect();
        let body = self
            .client
            .ok(
                &lookup_entries(&entries),
                "reading rebuilt document entries",
            )
            .await?;
        let mut undo = Vec::new();
        for ((document, (alias, ids)), now) in created.iter().zip(held(&body, entries.len())?) {
            let Some(now) = now.filter(|h| h.write_id != write_id) else {
                continue;
            };
            let keep: HashSet<String> = now
                .chunk_ids
                .iter()
                .map(|c| chunk_entry_id(&document.0, c))
                .collect();
            undo.extend(
                ids.iter()
                    .filter(|id| !keep.contains(**id))
                    .map(|id| Item::delete(alias, id.to_string(), document)),
            );
        }
        if undo.is_empty() {
            return Ok(());
        }
        let outcomes = self.bulk(&undo).await?;
        failure(&undo, &outcomes).map_or(Ok(()), Err)
    }
}

/// The language of each chunk of a document ([`chunk_langs`]), detected off the async
/// runtime (detection reads up to 4 KB of every chunk).
pub(super) async fn detect(chunks: Vec<Chunk>) -> Result<(Vec<Chunk>, Vec<Lang>), TextError> {
    tokio::task::spawn_blocking(move || {
        let langs = chunk_langs(&chunks);
        (chunks, langs)
    })
    .await
    .map_err(TextError::from_join)
}

/// [`detect`] for every document of a rebuild batch, in one blocking task.
async fn detect_all(documents: Documents) -> Result<(Documents, Vec<Vec<Lang>>), TextError> {
    tokio::task::spawn_blocking(move || {
        let langs = documents.iter().map(|(_, _, c)| chunk_langs(c)).collect();
        (documents, langs)
    })
    .await
    .map_err(TextError::from_join)
}

/// (tenant, document id, chunks) of a rebuild batch.
type Documents = Vec<(String, String, Vec<Chunk>)>;

/// A bulk item refused because its alias names no index (`require_alias`).
fn alias_missing(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::Permanent(d) if d.contains("index_not_found_exception"))
}

impl EsIndex {
    /// Items of a rebuild load that went to another index than `id` (or one of its tenant
    /// indices), or found no rebuild alias: the rebuild was replaced meanwhile.
    fn still_loading(&self, id: &str, outcomes: &[(Outcome, String)]) -> Result<(), TextError> {
        let replaced = outcomes.iter().any(|(o, index)| {
            alias_missing(o)
                || (matches!(o, Outcome::Written | Outcome::Exists)
                    && index != id
                    && self.names.generation_of(index) != Some(id))
        });
        if replaced {
            return Err(TextError::RebuildGone(id.to_string()));
        }
        Ok(())
    }
}

/// What one index holds of a document, from its document entry (or tombstone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    /// The concrete index behind the alias.
    pub index: String,
    /// Whether a document entry exists (not a tombstone, not absent).
    pub present: bool,
    /// `write_id` of the entry (empty when absent).
    pub write_id: String,
    /// The chunks the entry lists.
    pub chunk_ids: Vec<String>,
    /// Chunk ids an earlier write deleted (deleted once more in case that failed).
    pub stale_ids: Vec<String>,
}

/// `_mget` of one document's entry through each of `aliases`.
/// See <https://www.elastic.co/guide/en/elasticsearch/reference/8.17/docs-multi-get.html>.
pub fn lookup(aliases: &[&str], tenant: &str, document_id: &str) -> EsRequest {
    lookup_many(aliases, &[(tenant, document_id)])
}

/// `_mget` of the entries of several documents through each alias: alias-major order.
pub fn lookup_many(aliases: &[&str], documents: &[(&str, &str)]) -> EsRequest {
    let entries: Vec<(&str, &str, &str)> = aliases
        .iter()
        .flat_map(|alias| documents.iter().map(move |(t, d)| (*alias, *t, *d)))
        .collect();
    lookup_entries(&entries)
}

/// `_mget` of document entries, each (alias, tenant, document id), in order.
pub fn lookup_entries(entries: &[(&str, &str, &str)]) -> EsRequest {
    let docs: Vec<Value> = entries
        .iter()
        .map(|(alias, tenant, document_id)| {
            json!({
                "_index": alias,
                "_id": document_entry_id(tenant, document_id),
                "routing": doc_key(tenant, document_id),
                "_source": ["kind", "write_id", "chunk_ids", "stale_ids"],
            })
        })
        .collect();
    EsRequest::new(Method::Post, "/_mget".into()).json(json!({ "docs": docs }))
}

/// The answer to [`lookup`] / [`lookup_many`], one per requested entry: `None` where the
/// alias names no index (no rebuild is loading).
pub fn held(body: &Value, expected: usize) -> Result<Vec<Option<Held>>, TextError> {
    let docs = body
        .get("docs")
        .and_then(Value::as_array)
        .filter(|d| d.len() == expected)
        .ok_or_else(|| {
            TextError::Index(format!(
                "Elasticsearch answered an _mget of {expected} entries with an unexpected body"
            ))
        })?;
    docs.iter().map(held_one).collect()
}

fn held_one(doc: &Value) -> Result<Option<Held>, TextError> {
    if let Some(error) = doc.get("error") {
        let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "index_not_found_exception" {
            return Ok(None);
        }
        let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
        let index = doc.get("_index").and_then(Value::as_str).unwrap_or("");
        let detail = format!("reading a document entry of {index}: {kind}: {reason}");
        // A shard that is starting (a just-created index) or moving: worth another try.
        if kind == "no_shard_available_action_exception" {
            return Err(TextError::Unavailable(detail));
        }
        return Err(TextError::Index(detail));
    }
    let strings = |field: &str| -> Vec<String> {
        doc.pointer(&format!("/_source/{field}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let found = doc.get("found").and_then(Value::as_bool).unwrap_or(false);
    let kind = doc.pointer("/_source/kind").and_then(Value::as_str);
    Ok(Some(Held {
        index: doc
            .get("_index")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        present: found && kind != Some(KIND_TOMBSTONE),
        write_id: doc
            .pointer("/_source/write_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        chunk_ids: if found {
            strings("chunk_ids")
        } else {
            Vec::new()
        },
        stale_ids: if found {
            strings("stale_ids")
        } else {
            Vec::new()
        },
    }))
}

/// Items that make the index behind `alias` (holding `held`) hold exactly `chunks` of the
/// document (each in its language, `langs`): its chunk entries and document entry (`index`),
/// and deletes of every chunk id it held (or an earlier write deleted) that the new version
/// lacks. With no chunks: deletes only, and with `tombstone` a tombstone in place of the
/// document entry.
pub fn replace(
    alias: &str,
    held: &Held,
    document: (&str, &str),
    (chunks, langs): (&[Chunk], &[Lang]),
    write_id: &str,
    tombstone: bool,
) -> Result<Vec<Item>, TextError> {
    let new: BTreeSet<&str> = chunks.iter().map(|c| c.chunk_id.as_str()).collect();
    let stale: Vec<String> = held
        .chunk_ids
        .iter()
        .filter(|id| !new.contains(id.as_str()))
        .cloned()
        .collect();
    let (tenant, document_id) = document;
    let owner = (tenant.to_string(), document_id.to_string());
    let (entry, mut items) =
        bulk::document_items(alias, document, chunks, langs, write_id, Op::Index, &stale)?;
    items.extend(entry);
    if chunks.is_empty() && tombstone {
        items.push(Item {
            op: Op::Index,
            index: alias.to_string(),
            id: document_entry_id(tenant, document_id),
            routing: doc_key(tenant, document_id),
            source: Some(tombstone_source(tenant, document_id, write_id, &stale)),
            document: owner.clone(),
        });
    }
    let gone: BTreeSet<&String> = held
        .chunk_ids
        .iter()
        .chain(&held.stale_ids)
        .filter(|id| !new.contains(id.as_str()))
        .collect();
    items.extend(
        gone.into_iter()
            .map(|id| Item::delete(alias, chunk_entry_id(tenant, id), &owner)),
    );
    Ok(items)
}

/// The delete of the document entry itself (the second step of a delete through the serving
/// alias).
pub fn delete_entry(alias: &str, document: (&str, &str)) -> Item {
    let owner = (document.0.to_string(), document.1.to_string());
    Item::delete(alias, document_entry_id(document.0, document.1), &owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str) -> Chunk {
        Chunk {
            chunk_id: id.into(),
            document_id: "d".into(),
            tenant: "t".into(),
            text: format!("text of {id}"),
            ..Default::default()
        }
    }

    fn summary(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|i| format!("{:?} {}", i.op, i.id.rsplit('\u{1f}').next().unwrap_or("")))
            .collect()
    }

    #[test]
    fn a_replace_deletes_what_the_new_version_lacks_and_records_it() {
        let held = Held {
            index: "braid-text-x".into(),
            present: true,
            write_id: "w0".into(),
            chunk_ids: vec!["d:0".into(), "d:1".into(), "d:2".into()],
            stale_ids: vec!["d:7".into(), "d:1".into()],
        };
        let items = replace(
            "braid-text",
            &held,
            ("t", "d"),
            (&[chunk("d:0")], &[Lang::En]),
            "w1",
            false,
        )
        .unwrap();
        assert_eq!(
            summary(&items),
            [
                "Index d:0",
                "Index d",
                "Delete d:1",
                "Delete d:2",
                "Delete d:7"
            ]
        );
        let entry = items[1].source.as_ref().unwrap();
        assert_eq!(entry["chunk_ids"], json!(["d:0"]));
        // Recorded: what this write deletes of the held version (d:7 was recorded before).
        assert_eq!(entry["stale_ids"], json!(["d:1", "d:2"]));
        assert!(
            items
                .iter()
                .all(|i| i.index == "braid-text" && i.routing == "t\u{1f}d")
        );
    }

    #[test]
    fn an_empty_replace_deletes_or_leaves_a_tombstone() {
        let held = Held {
            present: true,
            chunk_ids: vec!["d:0".into()],
            ..Held::default()
        };
        let items = replace("a", &held, ("t", "d"), (&[], &[]), "w1", false).unwrap();
        assert_eq!(summary(&items), ["Delete d:0"]);
        let items = replace("a", &held, ("t", "d"), (&[], &[]), "w1", true).unwrap();
        assert_eq!(summary(&items), ["Index d", "Delete d:0"]);
        let tomb = items[0].source.as_ref().unwrap();
        assert_eq!(
            (tomb["kind"].as_str(), &tomb["stale_ids"]),
            (Some("tombstone"), &json!(["d:0"]))
        );
    }

    #[test]
    fn mget_answers_read_as_held_entries() {
        let body = json!({ "docs": [
            { "_index": "braid-text-a", "_id": "x", "found": true, "_source": {
                "kind": "document", "write_id": "w", "chunk_ids": ["d:0"], "stale_ids": [] } },
            { "_index": "braid-text-b", "_id": "x", "found": true, "_source": {
                "kind": "tombstone", "write_id": "w2", "chunk_ids": [], "stale_ids": ["d:3"] } },
            { "_index": "braid-text-a", "_id": "y", "found": false },
            { "_index": "braid-text-rebuild", "_id": "x", "error": {
                "type": "index_not_found_exception", "reason": "no such index" } },
        ] });
        let got = held(&body, 4).unwrap();
        assert_eq!(
            got[0].as_ref().map(|h| (h.present, h.chunk_ids.len())),
            Some((true, 1))
        );
        let tomb = got[1].as_ref().unwrap();
        assert!(!tomb.present && tomb.stale_ids == ["d:3"]);
        assert_eq!(
            got[2].as_ref().map(|h| (h.present, h.index.as_str())),
            Some((false, "braid-text-a"))
        );
        assert_eq!(got[3], None);
        assert!(held(&body, 3).is_err());
        let two = json!({ "docs": [ { "error": { "type": "illegal_argument_exception",
            "reason": "alias [braid-text] has more than one index associated with it" } } ] });
        assert!(held(&two, 1).is_err());
    }
}
