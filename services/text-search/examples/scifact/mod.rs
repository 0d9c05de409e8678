//! The SciFact corpus as the examples index it: JSON lines read whole, and each document cut
//! into chunks of 100 words (no overlap) under the tenant `default`.

use std::collections::HashMap;
use std::io::BufRead;

use braid_proto::v1::Chunk;

/// Every line of a JSON-lines file, parsed.
pub fn lines(path: &std::path::Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    file.lines()
        .map(|l| Ok(serde_json::from_str(&l?)?))
        .collect()
}

/// A corpus line's document id and its chunks of 100 words.
pub fn chunks(d: &serde_json::Value) -> (String, Vec<Chunk>) {
    let id = d["_id"].as_str().unwrap_or_default().to_string();
    let title = d["title"].as_str().unwrap_or_default();
    let words: Vec<&str> = d["text"]
        .as_str()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let chunks = words
        .chunks(100)
        .enumerate()
        .map(|(i, w)| Chunk {
            chunk_id: format!("{id}:{i}"),
            document_id: id.clone(),
            tenant: "default".into(),
            external_id: id.clone(),
            title: title.to_string(),
            text: w.join(" "),
            ordinal: i as u32,
            metadata: HashMap::new(),
            acl: None,
        })
        .collect();
    (id, chunks)
}
