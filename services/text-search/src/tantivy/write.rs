//! Writes: staging a document's replacement in the single writer and group commit.

use braid_core::auth::chunks_acl;
use braid_proto::v1::Chunk;
use tantivy::collector::Count;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{Term, doc};

use super::schema::{KIND_CHUNK, KIND_DOCUMENT, add_filter_fields};
use super::{Inner, index_err};
use crate::document_text::document_text;
use crate::error::TextError;
use crate::language::{ALL, chunk_langs, document_lang};

impl Inner {
    /// Chunks of document `key`.
    pub(super) fn count_document(&self, key: &str) -> Result<u32, TextError> {
        let f = self.fields;
        let searcher = self.reader.searcher();
        let term = |field: Field, value: &str| -> (Occur, Box<dyn Query>) {
            let t = Term::from_field_text(field, value);
            (
                Occur::Must,
                Box::new(TermQuery::new(t, IndexRecordOption::Basic)),
            )
        };
        let q = BooleanQuery::new(vec![term(f.doc_key, key), term(f.kind, KIND_CHUNK)]);
        Ok(searcher.search(&q, &Count).map_err(index_err)? as u32)
    }

    /// Deletes `key`, adds `chunks`, and returns once a commit made the result durable and
    /// visible. Group commit: concurrent writers queue behind one commit, and whoever gets
    /// the commit lock commits everything added so far, so N concurrent writes cost about
    /// one commit instead of N (a Tantivy commit is the expensive part).
    pub(super) fn write(&self, key: &str, chunks: &[Chunk]) -> Result<(), TextError> {
        let mine = self.add(key, chunks)?;
        self.commit_upto(mine)
    }

    /// [`Inner::write`] for several documents under one commit (rebuilds).
    pub(super) fn write_many(&self, documents: &[(String, Vec<Chunk>)]) -> Result<(), TextError> {
        let mut mine = 0;
        for (key, chunks) in documents {
            mine = self.add(key, chunks)?;
        }
        self.commit_upto(mine)
    }

    /// Returns once a commit covered the write with sequence number `mine`.
    pub(super) fn commit_upto(&self, mine: u64) -> Result<(), TextError> {
        use std::sync::atomic::Ordering;
        let mut committed = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if *committed >= mine {
            return Ok(()); // a commit that started after our add covered it
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let upto = self.added.load(Ordering::SeqCst);
        writer.commit().map_err(index_err)?;
        drop(writer);
        // The new segments' id columns, built here before the reload shows the segments:
        // otherwise the searches that meet a segment before its columns are cached build them
        // too, on the search path (a merged segment's take milliseconds). The write is durable
        // by now: a failed build only leaves the build to the searches.
        if let Err(e) = self.columns.prepare(&self.fields, &self.index) {
            tracing::warn!(error = %e, "building the id columns of new segments failed");
        }
        self.reader.reload().map_err(index_err)?;
        *committed = upto;
        // Under the commit lock, so reloads warm in order (a later one never sees an earlier
        // one forget its segments); builds what a merge published since `prepare`.
        if let Err(e) = self.columns.warm(&self.fields, &self.reader.searcher()) {
            tracing::warn!(error = %e, "building the id columns of new segments failed");
        }
        Ok(())
    }

    /// Stages the replacement in the writer; returns its sequence number.
    pub(super) fn add(&self, key: &str, chunks: &[Chunk]) -> Result<u64, TextError> {
        let f = self.fields;
        let acl = chunks_acl(chunks).map_err(TextError::from)?;
        // Like the ACL, the metadata is the document's: the document entry carries it for the
        // filters, and a search picks the chunk to show among a visible document's chunks
        // without filtering them again.
        if let Some((i, _)) = chunks
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, c)| c.metadata != chunks[0].metadata)
        {
            return Err(TextError::InvalidArgument {
                field: format!("chunks[{i}].metadata"),
                message: "differs from chunks[0].metadata: the chunks of a document share its \
                          metadata"
                    .into(),
            });
        }
        // Each chunk in its own language (the metadata's `lang` when set), detected before the
        // writer lock is taken: detection costs about as much as the analysis.
        let langs = chunk_langs(chunks);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.delete_term(Term::from_field_text(f.doc_key, key));
        for (c, lang) in chunks.iter().zip(&langs) {
            let lang = lang.index();
            let mut d = doc!(
                f.chunk_id => c.chunk_id.as_str(),
                f.document_id => c.document_id.as_str(),
                f.doc_key => key,
                f.tenant => c.tenant.as_str(),
                f.external_id => c.external_id.as_str(),
                f.title[lang] => c.title.as_str(),
                f.body[lang] => c.text.as_str(),
                f.ordinal => c.ordinal as u64,
                f.kind => KIND_CHUNK,
            );
            add_filter_fields(&f, &mut d, &c.metadata, ALL[lang], &acl);
            writer.add_document(d).map_err(index_err)?;
        }
        if let Some(first) = chunks.iter().min_by_key(|c| c.ordinal) {
            let text = document_text(chunks);
            let lang = document_lang(chunks, &langs).index();
            let mut d = doc!(
                f.document_id => first.document_id.as_str(),
                f.doc_key => key,
                f.tenant => first.tenant.as_str(),
                f.external_id => first.external_id.as_str(),
                f.doc_title[lang] => first.title.as_str(),
                f.doc_body[lang] => text,
                f.kind => KIND_DOCUMENT,
            );
            add_filter_fields(&f, &mut d, &first.metadata, ALL[lang], &acl);
            writer.add_document(d).map_err(index_err)?;
        }
        Ok(self.added.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }
}
