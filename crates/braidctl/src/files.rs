//! Turns paths given to `braidctl ingest` into a stream of documents: files by extension,
//! directories recursively (sorted, hidden entries skipped), and BEIR-style JSONL corpora read
//! line by line. Documents are produced on demand into a bounded channel, so a large corpus is
//! never held in memory.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::Context;
use braid_proto::v1::DocumentInput;

/// One input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A whole file is one document.
    File { path: PathBuf, mime: &'static str },
    /// One document per line: {"_id", "title", "text"}.
    Jsonl { path: PathBuf },
}

fn mime_for(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "md" | "markdown" => Some("text/markdown"),
        "txt" | "text" => Some("text/plain"),
        "html" | "htm" => Some("text/html"),
        _ => None,
    }
}

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, out)?;
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// The sources under `paths`. A file named explicitly must be of a supported type; files of
/// other types inside directories are skipped.
pub fn plan(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for p in paths {
        if !p.exists() {
            anyhow::bail!("{} does not exist", p.display());
        }
        let explicit = p.is_file();
        let mut found = Vec::new();
        walk(p, &mut found)?;
        for path in found {
            if path.extension().is_some_and(|e| e == "jsonl") {
                sources.push(Source::Jsonl { path });
            } else if let Some(mime) = mime_for(&path) {
                sources.push(Source::File { path, mime });
            } else if explicit {
                anyhow::bail!(
                    "{}: unsupported file type (.md .markdown .txt .html .htm .jsonl)",
                    path.display()
                );
            }
        }
    }
    Ok(sources)
}

/// How many documents the sources hold (JSONL: non-empty lines).
pub fn count(sources: &[Source]) -> anyhow::Result<u64> {
    let mut n = 0;
    for s in sources {
        n += match s {
            Source::File { .. } => 1,
            Source::Jsonl { path } => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let mut lines = 0;
                for line in std::io::BufReader::new(file).lines() {
                    if !line?.trim().is_empty() {
                        lines += 1;
                    }
                }
                lines
            }
        };
    }
    Ok(n)
}

#[derive(serde::Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

/// Reads the sources in order, calling `emit` per document; stops early when `emit` returns
/// false (the receiver went away).
pub fn produce(
    sources: &[Source],
    metadata: &HashMap<String, String>,
    mut emit: impl FnMut(DocumentInput) -> bool,
) -> anyhow::Result<()> {
    for s in sources {
        match s {
            Source::File { path, mime } => {
                let content = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {} (UTF-8 required)", path.display()))?;
                let doc = DocumentInput {
                    acl: None,
                    external_id: path.display().to_string(),
                    title: String::new(),
                    content,
                    mime_type: (*mime).into(),
                    metadata: metadata.clone(),
                };
                if !emit(doc) {
                    return Ok(());
                }
            }
            Source::Jsonl { path } => {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line = line.with_context(|| format!("{}:{}", path.display(), n + 1))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let d: BeirDoc = serde_json::from_str(&line).with_context(|| {
                        format!(
                            "{}:{}: expected {{\"_id\", \"title\", \"text\"}}",
                            path.display(),
                            n + 1
                        )
                    })?;
                    let doc = DocumentInput {
                        acl: None,
                        external_id: d.id,
                        title: d.title,
                        content: d.text,
                        mime_type: "text/plain".into(),
                        metadata: metadata.clone(),
                    };
                    if !emit(doc) {
                        return Ok(());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_counts_and_produces_directories_files_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.md"), "# A").unwrap();
        std::fs::write(dir.path().join("sub/b.html"), "<p>b</p>").unwrap();
        std::fs::write(dir.path().join("skip.bin"), "x").unwrap();
        std::fs::write(dir.path().join(".hidden.md"), "x").unwrap();
        std::fs::write(
            dir.path().join("c.jsonl"),
            "{\"_id\": \"1\", \"title\": \"T\", \"text\": \"one\"}\n\n{\"_id\": \"2\", \"text\": \"two\"}\n",
        )
        .unwrap();
        let sources = plan(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(sources.len(), 3);
        assert_eq!(count(&sources).unwrap(), 4);
        let meta = HashMap::from([("src".to_string(), "test".to_string())]);
        let mut docs = Vec::new();
        produce(&sources, &meta, |d| {
            docs.push(d);
            true
        })
        .unwrap();
        assert_eq!(docs.len(), 4);
        assert!(docs[0].external_id.ends_with("a.md"));
        assert_eq!(docs[0].mime_type, "text/markdown");
        assert_eq!(docs[1].external_id, "1");
        assert_eq!(docs[1].title, "T");
        assert!(docs[3].external_id.ends_with("sub/b.html"));
        assert!(docs.iter().all(|d| d.metadata["src"] == "test"));

        // The consumer can stop the producer.
        let mut seen = 0;
        produce(&sources, &meta, |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert_eq!(seen, 1);
        assert!(plan(&[dir.path().join("skip.bin")]).is_err());
    }

    #[test]
    fn bad_jsonl_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"_id\": \"1\", \"text\": \"ok\"}\nnot json\n").unwrap();
        let err = produce(&plan(&[path]).unwrap(), &HashMap::new(), |_| true).unwrap_err();
        assert!(format!("{err:#}").contains("bad.jsonl:2"), "{err:#}");
    }
}
