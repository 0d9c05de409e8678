//! The queries a benchmark cycles through: one per line, either a JSON object with a `text`
//! field (BEIR queries.jsonl) or a plain line of text.

use std::path::Path;

use anyhow::Context;

/// Reads the queries of `path`; at least one is required.
pub fn load(path: &Path) -> anyhow::Result<Vec<String>> {
    let content = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read queries from {}", path.display()))?;
    let queries = parse(&content);
    anyhow::ensure!(!queries.is_empty(), "{} holds no queries", path.display());
    Ok(queries)
}

/// One query per non-blank line: the `text` field of a JSON object, else the line itself.
pub fn parse(content: &str) -> Vec<String> {
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|line| {
            if line.starts_with('{')
                && let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
            {
                return value
                    .get("text")
                    .and_then(|t| t.as_str())
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
            }
            Some(line.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_text_fields_and_plain_lines() {
        let content = "{\"_id\": \"0\", \"text\": \"biomaterials lack\", \"metadata\": {}}\n\n\
                       plain query\n{\"_id\": \"1\"}\n{not json\n";
        assert_eq!(
            parse(content),
            vec!["biomaterials lack", "plain query", "{not json"]
        );
    }
}
