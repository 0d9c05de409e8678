//! The index directory as a recoverable unit: which Tantivy index serves, whether it can,
//! and rebuilding a new one next to it.
//!
//! Layout: `index.dir` holds one sub-directory per index (`idx-<uuid>`) and a pointer file,
//! `braid-index.json`, naming the serving index and the ids it supersedes. A switch writes the
//! pointer to a temporary file and renames it over the old one, so a crash leaves either the
//! old or the new index serving, never a mix. (An index written before this layout, with its
//! `meta.json` directly in `index.dir`, is opened in place as `legacy`.)
//!
//! A lost or corrupt index must not serve empty results as if nothing matched:
//! - at start-up, a pointer naming a missing or unreadable index is a *fault*; the service
//!   reports NOT_SERVING with the reason and refuses searches (writes go to a rebuild, if any);
//! - while serving, the health probe notices a vanished index directory the same way;
//! - an index lost together with its pointer looks like a first start (a new empty index).
//!   Only the ingest service knows that documents were indexed before: it records the id of
//!   the index it wrote to and asks [`ManagedIndex::status`] with it; an index that is neither
//!   that one nor its rebuilt successor is then a fault too.
//!
//! A fault is cleared only by a finished rebuild ([`ManagedIndex::rebuild_finish`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use braid_proto::tonic;
use braid_proto::v1::{Chunk, ChunkHit};
use serde::{Deserialize, Serialize};

use crate::config::{IndexConfig, SearchConfig};
use crate::error::TextError;
use crate::index::{IndexAdmin, IndexStatus, TextIndex, TextQuery};
use crate::tantivy::TantivyIndex;

const POINTER: &str = "braid-index.json";
const LEGACY_ID: &str = "legacy";
/// How many predecessor ids an index remembers.
const MAX_SUPERSEDED: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pointer {
    active: String,
    #[serde(default)]
    supersedes: Vec<String>,
}

#[derive(Clone)]
struct Active {
    id: String,
    dir: PathBuf,
    index: TantivyIndex,
    supersedes: Vec<String>,
}

#[derive(Default)]
struct State {
    active: Option<Active>,
    fault: Option<String>,
}

struct Rebuild {
    id: String,
    dir: PathBuf,
    index: TantivyIndex,
    supersedes: Vec<String>,
    /// Documents (tenant, document id) written live since the rebuild started.
    live: HashSet<(String, String)>,
    documents: u64,
}

pub struct ManagedIndex {
    config: IndexConfig,
    search: SearchConfig,
    state: RwLock<State>,
    /// Held by rebuild writes and by live writes into the rebuild, so a rebuild never writes
    /// an older version of a document over a live write.
    rebuild: tokio::sync::Mutex<Option<Rebuild>>,
}

fn new_id() -> String {
    format!("idx-{}", uuid::Uuid::new_v4().simple())
}

fn io_err(what: &str, e: impl std::fmt::Display) -> TextError {
    TextError::Index(format!("{what}: {e}"))
}

impl ManagedIndex {
    /// Opens the serving index under `config.dir` (blocking). Never fails for a missing or
    /// corrupt index: that is a fault the service reports; only an unusable root directory
    /// (cannot be created) is an error.
    pub fn open(config: &IndexConfig, search: &SearchConfig) -> Result<Self, TextError> {
        let root = config.dir.clone();
        std::fs::create_dir_all(&root).map_err(|e| io_err("creating the index directory", e))?;
        let this = Self {
            config: config.clone(),
            search: search.clone(),
            state: RwLock::new(State::default()),
            rebuild: tokio::sync::Mutex::new(None),
        };
        let state = match read_pointer(&root) {
            Ok(Some(pointer)) => this.open_pointed(pointer),
            Ok(None) if root.join("meta.json").exists() => match this.open_dir(&root) {
                Ok(index) => State {
                    active: Some(Active {
                        id: LEGACY_ID.into(),
                        dir: root.clone(),
                        index,
                        supersedes: Vec::new(),
                    }),
                    fault: None,
                },
                Err(e) => fault_state(format!("the text index is unreadable ({e})")),
            },
            Ok(None) => {
                // First start, or the whole directory was lost: ingest's check tells which.
                let id = new_id();
                let dir = root.join(&id);
                let index = this.open_dir(&dir)?;
                write_pointer(
                    &root,
                    &Pointer {
                        active: id.clone(),
                        supersedes: Vec::new(),
                    },
                )?;
                tracing::info!(index = %id, "created a new empty text index");
                State {
                    active: Some(Active {
                        id,
                        dir,
                        index,
                        supersedes: Vec::new(),
                    }),
                    fault: None,
                }
            }
            Err(e) => fault_state(format!(
                "the text index pointer {POINTER} is unreadable ({e})"
            )),
        };
        if let Some(fault) = &state.fault {
            tracing::error!(%fault, "text index not serving");
        }
        *this.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        Ok(this)
    }

    fn open_pointed(&self, pointer: Pointer) -> State {
        let dir = self.config.dir.join(&pointer.active);
        if !dir.join("meta.json").exists() {
            return fault_state(format!(
                "the text index {} is missing from the index directory",
                pointer.active
            ));
        }
        match self.open_dir(&dir) {
            Ok(index) => State {
                active: Some(Active {
                    id: pointer.active,
                    dir,
                    index,
                    supersedes: pointer.supersedes,
                }),
                fault: None,
            },
            Err(e) => fault_state(format!(
                "the text index {} is unreadable ({e})",
                pointer.active
            )),
        }
    }

    fn open_dir(&self, dir: &Path) -> Result<TantivyIndex, TextError> {
        let config = IndexConfig {
            dir: dir.to_path_buf(),
            ..self.config.clone()
        };
        TantivyIndex::open(&config, &self.search)
    }

    fn snapshot(&self) -> (Option<Active>, Option<String>) {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        (state.active.clone(), state.fault.clone())
    }

    fn set_fault(&self, reason: String) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.fault.is_none() {
            tracing::error!(fault = %reason, "text index not serving");
            state.fault = Some(reason);
        }
    }

    /// The index searches may use, or why there is none.
    fn serving(&self) -> Result<TantivyIndex, TextError> {
        match self.snapshot() {
            (_, Some(fault)) => Err(TextError::NotServing(fault)),
            (Some(active), None) => Ok(active.index),
            (None, None) => Err(TextError::NotServing("no text index is open".into())),
        }
    }

    /// Segments of the serving index whose id columns are cached (0 when none serves).
    pub fn id_column_segments(&self) -> usize {
        self.serving().map_or(0, |i| i.id_column_segments())
    }

    /// The serving state; with `expected` (the index ingest last wrote to), an index that is
    /// neither it nor a successor of it becomes a fault.
    pub fn status(&self, expected: &str) -> IndexStatus {
        let (active, _) = self.snapshot();
        if let Some(active) = &active
            && !expected.is_empty()
            && active.id != expected
            && !active.supersedes.iter().any(|s| s == expected)
        {
            self.set_fault(format!(
                "the text index was lost or replaced: ingest indexed documents into {expected}, \
                 but this service holds {} (a new, incomplete index); rebuild it with \
                 `braidctl reindex --leg text`",
                active.id
            ));
        }
        let (active, fault) = self.snapshot();
        let rebuild = self
            .rebuild
            .try_lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| (r.id.clone(), r.documents)));
        IndexStatus {
            index_id: active.map(|a| a.id).unwrap_or_default(),
            fault,
            rebuild,
        }
    }

    /// Starts a new empty index next to the serving one, dropping an unfinished rebuild.
    pub async fn rebuild_start(&self, supersedes_index_id: &str) -> Result<String, TextError> {
        let mut slot = self.rebuild.lock().await;
        if let Some(old) = slot.take() {
            discard(old.index, old.dir).await;
        }
        let id = new_id();
        let dir = self.config.dir.join(&id);
        let config = IndexConfig {
            dir: dir.clone(),
            ..self.config.clone()
        };
        let search = self.search.clone();
        let index = tokio::task::spawn_blocking(move || TantivyIndex::open(&config, &search))
            .await
            .map_err(TextError::from_join)??;
        let (active, _) = self.snapshot();
        let mut supersedes: Vec<String> = Vec::new();
        if let Some(active) = &active {
            supersedes.push(active.id.clone());
            supersedes.extend(active.supersedes.iter().cloned());
        }
        if !supersedes_index_id.is_empty() {
            supersedes.insert(0, supersedes_index_id.to_string());
        }
        supersedes.dedup();
        supersedes.truncate(MAX_SUPERSEDED);
        tracing::info!(rebuild = %id, "text index rebuild started");
        *slot = Some(Rebuild {
            id: id.clone(),
            dir,
            index,
            supersedes,
            live: HashSet::new(),
            documents: 0,
        });
        Ok(id)
    }

    /// Writes documents (tenant, document id, chunks) into the rebuild `id`; returns
    /// (written, skipped because written live since the rebuild started).
    pub async fn rebuild_write(
        &self,
        id: &str,
        documents: Vec<(String, String, Vec<Chunk>)>,
    ) -> Result<(u32, u32), TextError> {
        let mut slot = self.rebuild.lock().await;
        let rebuild = current(&mut slot, id)?;
        let total = documents.len() as u32;
        let fresh: Vec<_> = documents
            .into_iter()
            .filter(|(t, d, _)| !rebuild.live.contains(&(t.clone(), d.clone())))
            .collect();
        let written = fresh.len() as u32;
        rebuild.index.replace_many(fresh).await?;
        rebuild.documents += u64::from(written);
        Ok((written, total - written))
    }

    /// Switches searches to the rebuilt index (pointer rename) and removes the old one.
    pub async fn rebuild_finish(&self, id: &str) -> Result<String, TextError> {
        let mut slot = self.rebuild.lock().await;
        current(&mut slot, id)?;
        let Some(rebuild) = slot.take() else {
            return Err(TextError::RebuildGone(id.to_string()));
        };
        let pointer = Pointer {
            active: rebuild.id.clone(),
            supersedes: rebuild.supersedes.clone(),
        };
        let root = self.config.dir.clone();
        tokio::task::spawn_blocking(move || write_pointer(&root, &pointer))
            .await
            .map_err(TextError::from_join)??;
        let old = {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            state.fault = None;
            state.active.replace(Active {
                id: rebuild.id.clone(),
                dir: rebuild.dir,
                index: rebuild.index,
                supersedes: rebuild.supersedes,
            })
        };
        drop(slot);
        tracing::info!(index = %rebuild.id, "text index rebuilt and switched");
        if let Some(old) = old
            && old.id != LEGACY_ID
        {
            discard(old.index, old.dir).await;
        }
        Ok(rebuild.id)
    }

    /// (chunk id, text) of the chunks the serving index holds for one document.
    pub async fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Vec<(String, String)>, TextError> {
        self.serving()?.document_chunks(tenant, document_id).await
    }

    /// The serving index (even when faulted: writes still land) and the rebuild slot.
    fn write_target(&self) -> Option<TantivyIndex> {
        self.snapshot().0.map(|a| a.index)
    }
}

fn current<'a>(slot: &'a mut Option<Rebuild>, id: &str) -> Result<&'a mut Rebuild, TextError> {
    match slot.as_mut() {
        Some(r) if r.id == id => Ok(r),
        _ => Err(TextError::RebuildGone(id.to_string())),
    }
}

fn fault_state(reason: String) -> State {
    State {
        active: None,
        fault: Some(format!(
            "{reason}; rebuild it with `braidctl reindex --leg text`"
        )),
    }
}

fn read_pointer(root: &Path) -> Result<Option<Pointer>, String> {
    let path = root.join(POINTER);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes the pointer durably: temporary file, fsync, rename over the old one.
fn write_pointer(root: &Path, pointer: &Pointer) -> Result<(), TextError> {
    use std::io::Write;
    let tmp = root.join(format!("{POINTER}.tmp"));
    let bytes = serde_json::to_vec_pretty(pointer).map_err(|e| io_err("encoding", e))?;
    let mut file = std::fs::File::create(&tmp).map_err(|e| io_err("writing the pointer", e))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err("writing the pointer", e))?;
    std::fs::rename(&tmp, root.join(POINTER)).map_err(|e| io_err("switching the pointer", e))?;
    if let Ok(dir) = std::fs::File::open(root) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Drops an index (its writer joins its indexing threads) and removes its directory, off the
/// runtime.
async fn discard(index: TantivyIndex, dir: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || {
        drop(index);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %e, dir = %dir.display(), "removing an old text index failed");
        }
    })
    .await;
}

#[tonic::async_trait]
impl TextIndex for ManagedIndex {
    async fn replace_document(
        &self,
        tenant: &str,
        document_id: &str,
        chunks: Vec<Chunk>,
    ) -> Result<u32, TextError> {
        let n = chunks.len() as u32;
        {
            let mut slot = self.rebuild.lock().await;
            if let Some(r) = slot.as_mut() {
                r.live.insert((tenant.to_string(), document_id.to_string()));
                r.index
                    .replace_document(tenant, document_id, chunks.clone())
                    .await?;
                if self.write_target().is_none() {
                    return Ok(n);
                }
            }
        }
        match self.write_target() {
            Some(index) => index.replace_document(tenant, document_id, chunks).await,
            None => Err(TextError::NotServing(
                self.snapshot().1.unwrap_or_else(|| "no text index".into()),
            )),
        }
    }

    async fn delete_document(&self, tenant: &str, document_id: &str) -> Result<u32, TextError> {
        {
            let mut slot = self.rebuild.lock().await;
            if let Some(r) = slot.as_mut() {
                r.live.insert((tenant.to_string(), document_id.to_string()));
                let from_rebuild = r.index.delete_document(tenant, document_id).await?;
                if self.write_target().is_none() {
                    return Ok(from_rebuild);
                }
            }
        }
        match self.write_target() {
            Some(index) => index.delete_document(tenant, document_id).await,
            None => Err(TextError::NotServing(
                self.snapshot().1.unwrap_or_else(|| "no text index".into()),
            )),
        }
    }

    async fn search(&self, query: TextQuery) -> Result<Vec<ChunkHit>, TextError> {
        self.serving()?.search(query).await
    }

    async fn fetch(
        &self,
        tenant: &str,
        query: &str,
        chunk_ids: Vec<String>,
    ) -> Result<Vec<ChunkHit>, TextError> {
        self.serving()?.fetch(tenant, query, chunk_ids).await
    }

    async fn check(&self) -> Result<(), TextError> {
        let active = self.serving()?;
        let dir = self.snapshot().0.map(|a| a.dir).unwrap_or_default();
        match tokio::fs::try_exists(dir.join("meta.json")).await {
            Ok(true) => active.check().await,
            _ => {
                let reason = "the text index directory disappeared while serving; rebuild it \
                              with `braidctl reindex --leg text`"
                    .to_string();
                self.set_fault(reason.clone());
                Err(TextError::NotServing(reason))
            }
        }
    }
}

#[tonic::async_trait]
impl IndexAdmin for ManagedIndex {
    async fn status(&self, expected: &str) -> Result<IndexStatus, TextError> {
        Ok(ManagedIndex::status(self, expected))
    }

    async fn document_chunks(
        &self,
        tenant: &str,
        document_id: &str,
    ) -> Result<Vec<(String, String)>, TextError> {
        ManagedIndex::document_chunks(self, tenant, document_id).await
    }

    async fn rebuild_start(&self, supersedes_index_id: &str) -> Result<String, TextError> {
        ManagedIndex::rebuild_start(self, supersedes_index_id).await
    }

    async fn rebuild_write(
        &self,
        id: &str,
        documents: Vec<(String, String, Vec<Chunk>)>,
    ) -> Result<(u32, u32), TextError> {
        ManagedIndex::rebuild_write(self, id, documents).await
    }

    async fn rebuild_finish(&self, id: &str) -> Result<String, TextError> {
        ManagedIndex::rebuild_finish(self, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use braid_core::auth::Access;
    use std::collections::HashMap;

    fn config(dir: &Path) -> IndexConfig {
        IndexConfig {
            dir: dir.to_path_buf(),
            writer_memory_mb: 20,
            writer_threads: 1,
            ..IndexConfig::default()
        }
    }

    fn chunk(doc: &str, text: &str) -> Chunk {
        Chunk {
            acl: None,
            chunk_id: format!("{doc}:0"),
            document_id: doc.into(),
            tenant: "t".into(),
            external_id: doc.into(),
            title: String::new(),
            text: text.into(),
            ordinal: 0,
            metadata: HashMap::new(),
        }
    }

    fn query(q: &str) -> TextQuery {
        TextQuery {
            tenant: "t".into(),
            query: q.into(),
            top_k: 10,
            filter: Default::default(),
            min_score: None,
            access: Access::unrestricted(),
            detail: 0,
            chunk_level: false,
        }
    }

    #[tokio::test]
    async fn a_missing_or_corrupt_index_is_a_fault_not_an_empty_index() {
        let root = tempfile::tempdir().unwrap();
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        let first = idx.status("").index_id;
        idx.replace_document("t", "d", vec![chunk("d", "comet tail")])
            .await
            .unwrap();
        assert!(idx.check().await.is_ok());
        drop(idx);

        // Reopened: the same index serves.
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        assert_eq!(idx.status(&first).index_id, first);
        assert_eq!(idx.search(query("comet")).await.unwrap().len(), 1);
        drop(idx);

        // The index directory is gone but the pointer is there: a fault at start-up.
        std::fs::remove_dir_all(root.path().join(&first)).unwrap();
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        let err = idx.search(query("comet")).await.unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        assert!(idx.check().await.is_err());
        drop(idx);

        // Corrupt meta.json: a fault, not a panic.
        std::fs::create_dir_all(root.path().join(&first)).unwrap();
        std::fs::write(root.path().join(&first).join("meta.json"), b"{not json").unwrap();
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        let err = idx.search(query("comet")).await.unwrap_err().to_string();
        assert!(err.contains("unreadable"), "{err}");
    }

    #[tokio::test]
    async fn a_fresh_index_is_lost_when_ingest_expected_another() {
        let root = tempfile::tempdir().unwrap();
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        let id = idx.status("").index_id;
        assert!(idx.status(&id).fault.is_none());
        let status = idx.status("idx-someotherindex");
        assert!(status.fault.unwrap().contains("lost"));
        assert!(idx.search(query("x")).await.is_err());
    }

    #[tokio::test]
    async fn rebuild_switches_keeps_live_writes_and_clears_the_fault() {
        let root = tempfile::tempdir().unwrap();
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        let old = idx.status("").index_id;
        idx.replace_document("t", "a", vec![chunk("a", "old text alpha")])
            .await
            .unwrap();
        let rb = idx.rebuild_start("idx-recorded").await.unwrap();
        // A live write during the rebuild wins over the rebuild's older copy.
        idx.replace_document("t", "a", vec![chunk("a", "new text beta")])
            .await
            .unwrap();
        let (written, skipped) = idx
            .rebuild_write(
                &rb,
                vec![
                    ("t".into(), "a".into(), vec![chunk("a", "old text alpha")]),
                    ("t".into(), "b".into(), vec![chunk("b", "gamma")]),
                ],
            )
            .await
            .unwrap();
        assert_eq!((written, skipped), (1, 1));
        // Searches still use the old index until the switch.
        assert!(idx.search(query("gamma")).await.unwrap().is_empty());
        let new = idx.rebuild_finish(&rb).await.unwrap();
        assert_ne!(new, old);
        assert_eq!(idx.search(query("gamma")).await.unwrap().len(), 1);
        assert_eq!(idx.search(query("beta")).await.unwrap().len(), 1);
        assert!(idx.search(query("alpha")).await.unwrap().is_empty());
        assert!(!root.path().join(&old).exists(), "old index removed");
        // Both the old id and ingest's recorded id count as predecessors.
        assert!(idx.status(&old).fault.is_none());
        assert!(idx.status("idx-recorded").fault.is_none());
        drop(idx);
        let idx = ManagedIndex::open(&config(root.path()), &SearchConfig::default()).unwrap();
        assert_eq!(idx.status("").index_id, new);
        assert_eq!(idx.search(query("gamma")).await.unwrap().len(), 1);
    }
}
