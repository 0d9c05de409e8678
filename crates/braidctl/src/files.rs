//! Turns paths given to `braidctl ingest` into documents: files by extension, directories
//! recursively (sorted, hidden entries skipped), and BEIR-style JSONL corpora.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use braid_proto::v1::DocumentInput;

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

#[derive(serde::Deserialize)]
struct BeirDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

pub fn collect(
    paths: &[PathBuf],
    metadata: &[(String, String)],
) -> anyhow::Result<Vec<DocumentInput>> {
    let meta: HashMap<String, String> = metadata.iter().cloned().collect();
    let mut files = Vec::new();
    for p in paths {
        if !p.exists() {
            anyhow::bail!("{} does not exist", p.display());
        }
        let explicit = p.is_file();
        let mut found = Vec::new();
        walk(p, &mut found)?;
        for f in found {
            let ingestible = mime_for(&f).is_some() || f.extension().is_some_and(|e| e == "jsonl");
            if ingestible {
                files.push(f);
            } else if explicit {
                anyhow::bail!("{}: unsupported file type", f.display());
            }
        }
    }
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f)
            .with_context(|| format!("reading {} (UTF-8 required)", f.display()))?;
        if f.extension().is_some_and(|e| e == "jsonl") {
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let d: BeirDoc = serde_json::from_str(line).with_context(|| {
                    format!(
                        "{}:{}: expected {{\"_id\", \"title\", \"text\"}}",
                        f.display(),
                        n + 1
                    )
                })?;
                docs.push(DocumentInput {
                    external_id: d.id,
                    title: d.title,
                    content: d.text,
                    mime_type: "text/plain".into(),
                    metadata: meta.clone(),
                });
            }
            continue;
        }
        docs.push(DocumentInput {
            external_id: f.display().to_string(),
            title: String::new(),
            content: text,
            mime_type: mime_for(&f).unwrap_or("text/plain").into(),
            metadata: meta.clone(),
        });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_directories_files_and_jsonl() {
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
        let docs = collect(
            &[dir.path().to_path_buf()],
            &[("src".into(), "test".into())],
        )
        .unwrap();
        let ids: Vec<&str> = docs.iter().map(|d| d.external_id.as_str()).collect();
        assert_eq!(docs.len(), 4, "{ids:?}");
        assert!(docs[0].external_id.ends_with("a.md"));
        assert_eq!(docs[0].mime_type, "text/markdown");
        assert_eq!(docs[1].external_id, "1");
        assert_eq!(docs[1].title, "T");
        assert!(docs[3].external_id.ends_with("sub/b.html"));
        assert!(docs.iter().all(|d| d.metadata["src"] == "test"));
        assert!(collect(&[dir.path().join("skip.bin")], &[]).is_err());
    }
}
