//! `docs/configuration.md`, generated from the typed configs: every key of every service with
//! its default (the service's own `Default`, serialised) and its meaning (the doc comment of
//! the field in the source, read with `syn`). The test fails when the committed file differs
//! from what the code says; `BRAID_UPDATE_DOCS=1` rewrites it:
//!
//! ```sh
//! BRAID_UPDATE_DOCS=1 cargo test -p braid-tests --lib config_reference
//! ```
//!
//! A config field without a doc comment is an error (its key would have no meaning).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

/// The generated file, relative to the repository root.
const DOC: &str = "docs/configuration.md";

/// One service: its config/env section, the root struct and where its structs live.
struct Service {
    section: &'static str,
    root: &'static str,
    /// Source folder of the service; struct names are looked up there first, then in core.
    src: &'static str,
    default: serde_json::Value,
}

fn services() -> anyhow::Result<Vec<Service>> {
    fn json<T: Serialize>(value: T) -> anyhow::Result<serde_json::Value> {
        // Through text, so an f32 default reads as written (0.75, not 0.75000001...).
        Ok(serde_json::from_str(&serde_json::to_string(&value)?)?)
    }
    Ok(vec![
        Service {
            section: "gateway",
            root: "GatewayConfig",
            src: "services/gateway/src",
            default: json(braid_gateway::GatewayConfig::default())?,
        },
        Service {
            section: "ingest",
            root: "IngestConfig",
            src: "services/ingest/src",
            default: json(braid_ingest::IngestConfig::default())?,
        },
        Service {
            section: "embedding",
            root: "EmbeddingConfig",
            src: "services/embedding/src",
            default: json(braid_embedding::EmbeddingConfig::default())?,
        },
        Service {
            section: "vector-search",
            root: "VectorSearchConfig",
            src: "services/vector-search/src",
            default: json(braid_vector_search::VectorSearchConfig::default())?,
        },
        Service {
            section: "text-search",
            root: "TextSearchConfig",
            src: "services/text-search/src",
            default: json(braid_text_search::TextSearchConfig::default())?,
        },
    ])
}

const CORE_SRC: &str = "crates/core/src";

/// A struct's serialised fields, in source order.
struct StructDoc {
    file: PathBuf,
    fields: Vec<FieldDoc>,
}

struct FieldDoc {
    name: String,
    /// A serde attribute this generator does not follow (`rename`, `flatten`), if any.
    unsupported: Option<String>,
    doc: String,
    /// Every type name in the field's type (`Option<ClientConfig>` → Option, ClientConfig).
    type_names: Vec<String>,
}

/// A unit-only enum: its values as serde writes them, each with its doc comment.
struct EnumDoc {
    values: Vec<(String, String)>,
}

/// Struct and enum definitions by name.
#[derive(Default)]
struct Defs {
    structs: HashMap<String, Vec<StructDoc>>,
    enums: HashMap<String, Vec<EnumDoc>>,
}

/// The definitions in every `.rs` file under one folder (test modules aside).
fn read_defs(dir: &Path) -> anyhow::Result<Defs> {
    let mut out = Defs::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !is_test_file(&path) {
                let text = std::fs::read_to_string(&path)?;
                let file = syn::parse_file(&text)
                    .with_context(|| format!("parsing {}", path.display()))?;
                collect(&file.items, &path, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// `tests.rs`, `*_tests.rs`: unit tests in files of their own.
fn is_test_file(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.ends_with("_tests"))
}

fn collect(items: &[syn::Item], file: &Path, out: &mut Defs) -> anyhow::Result<()> {
    for item in items {
        match item {
            syn::Item::Struct(s) => {
                if let Some(doc) = struct_doc(s, file)? {
                    out.structs
                        .entry(s.ident.to_string())
                        .or_default()
                        .push(doc);
                }
            }
            syn::Item::Enum(e) => {
                if let Some(doc) = enum_doc(e) {
                    out.enums.entry(e.ident.to_string()).or_default().push(doc);
                }
            }
            syn::Item::Mod(m) if !is_cfg_test(&m.attrs) => {
                if let Some((_, items)) = &m.content {
                    collect(items, file, out)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test")
    })
}

/// The fields of a struct with named fields, skipped fields left out.
fn struct_doc(s: &syn::ItemStruct, file: &Path) -> anyhow::Result<Option<StructDoc>> {
    let syn::Fields::Named(named) = &s.fields else {
        return Ok(None);
    };
    let mut fields = Vec::new();
    for field in &named.named {
        let Some(ident) = &field.ident else { continue };
        let (mut skipped, mut unsupported) = (false, None);
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let parsed = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") || meta.path.is_ident("skip_serializing") {
                    skipped = true;
                } else if meta.path.is_ident("rename") || meta.path.is_ident("flatten") {
                    unsupported = meta.path.get_ident().map(|i| format!("serde({i})"));
                }
                if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<syn::Expr>()?;
                }
                Ok(())
            });
            if let Err(e) = parsed {
                unsupported = Some(format!("a serde attribute not understood ({e})"));
            }
        }
        if skipped {
            continue;
        }
        let mut type_names = Vec::new();
        type_idents(&field.ty, &mut type_names);
        fields.push(FieldDoc {
            name: ident.to_string(),
            unsupported,
            doc: doc_text(&field.attrs),
            type_names,
        });
    }
    Ok(Some(StructDoc {
        file: file.to_path_buf(),
        fields,
    }))
}

/// The values of an enum whose variants are all units, named as serde names them.
fn enum_doc(e: &syn::ItemEnum) -> Option<EnumDoc> {
    let mut rename_all = None;
    for attr in e.attrs.iter().filter(|a| a.path().is_ident("serde")) {
        let _ = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename_all") {
                rename_all = Some(meta.value()?.parse::<syn::LitStr>()?.value());
            } else if meta.input.peek(syn::Token![=]) {
                meta.value()?.parse::<syn::Expr>()?;
            }
            Ok(())
        });
    }
    let mut values = Vec::new();
    for variant in &e.variants {
        if !matches!(variant.fields, syn::Fields::Unit) {
            return None;
        }
        let mut name = serde_case(&variant.ident.to_string(), rename_all.as_deref());
        for attr in variant.attrs.iter().filter(|a| a.path().is_ident("serde")) {
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    name = meta.value()?.parse::<syn::LitStr>()?.value();
                } else if meta.input.peek(syn::Token![=]) {
                    meta.value()?.parse::<syn::Expr>()?;
                }
                Ok(())
            });
        }
        values.push((name, doc_text(&variant.attrs)));
    }
    Some(EnumDoc { values })
}

/// A variant name under serde's `rename_all` (the cases config enums use).
fn serde_case(ident: &str, rule: Option<&str>) -> String {
    let words = |sep: &str| {
        let mut out = String::new();
        for (i, c) in ident.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push_str(sep);
            }
            out.extend(c.to_lowercase());
        }
        out
    };
    match rule {
        Some("lowercase") => ident.to_lowercase(),
        Some("snake_case") => words("_"),
        Some("kebab-case") => words("-"),
        _ => ident.to_string(),
    }
}

/// The `///` lines of an item, joined into one line (rustdoc links `[`x`]` as plain `x`).
fn doc_text(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if let syn::Meta::NameValue(nv) = &attr.meta
            && nv.path.is_ident("doc")
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            let line = s.value();
            let line = line.trim();
            if !line.is_empty() {
                lines.push(line.to_string());
            }
        }
    }
    let text = lines.join(" ");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // `[`name`]` not followed by `(`: an intra-doc link, shown as its code span.
    while let Some(start) = rest.find("[`") {
        let after = &rest[start + 1..];
        match after.find("`]") {
            Some(end) if !after[end + 2..].starts_with('(') && !after[1..end].contains('`') => {
                out.push_str(&rest[..start]);
                out.push_str(&after[..end + 1]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str(&rest[..start + 2]);
                rest = &rest[start + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn type_idents(ty: &syn::Type, out: &mut Vec<String>) {
    if let syn::Type::Path(p) = ty {
        for segment in &p.path.segments {
            out.push(segment.ident.to_string());
            if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                for arg in &args.args {
                    if let syn::GenericArgument::Type(t) = arg {
                        type_idents(t, out);
                    }
                }
            }
        }
    }
}

/// One row of the reference.
#[derive(Debug, PartialEq)]
struct Row {
    key: String,
    default: String,
    meaning: String,
}

/// Resolves type names for one service: its own folder first, then core.
struct Structs<'a> {
    own: &'a Defs,
    core: &'a Defs,
}

impl Structs<'_> {
    fn get(&self, name: &str) -> anyhow::Result<Option<&StructDoc>> {
        for tier in [self.own, self.core] {
            match tier.structs.get(name).map(Vec::as_slice) {
                Some([one]) => return Ok(Some(one)),
                Some(many) if many.len() > 1 => {
                    let files: Vec<_> = many.iter().map(|s| s.file.display().to_string()).collect();
                    bail!("struct {name} is defined more than once: {files:?}");
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The values of the config enum named `name`, if it is one (and defined once).
    fn values(&self, name: &str) -> Option<&EnumDoc> {
        [self.own, self.core].into_iter().find_map(|tier| {
            match tier.enums.get(name).map(Vec::as_slice) {
                Some([one]) => Some(one),
                _ => None,
            }
        })
    }
}

/// Walks a struct and its default value together: a field whose value is a table and whose
/// type is a config struct is a section; every other field is a key.
fn walk(
    structs: &Structs<'_>,
    name: &str,
    value: &serde_json::Value,
    prefix: &str,
    rows: &mut Vec<Row>,
    undocumented: &mut Vec<String>,
) -> anyhow::Result<()> {
    let Some(def) = structs.get(name)? else {
        bail!("no struct {name} in the service's sources or core");
    };
    let serde_json::Value::Object(map) = value else {
        bail!("{prefix}: the default of {name} is not a table");
    };
    let fields: BTreeSet<&str> = def.fields.iter().map(|f| f.name.as_str()).collect();
    let serialised: BTreeSet<&str> = map.keys().map(String::as_str).collect();
    // An optional section left out of the serialised default (`skip_serializing_if`) is unset.
    let unset_optional = |f: &&str| {
        def.fields
            .iter()
            .any(|d| d.name == *f && d.type_names.iter().any(|t| t == "Option"))
    };
    let absent: BTreeSet<&str> = fields.difference(&serialised).copied().collect();
    if !serialised.is_subset(&fields) || !absent.iter().all(unset_optional) {
        bail!(
            "{name} ({}): fields {fields:?} but its default serialises {serialised:?}",
            def.file.display()
        );
    }
    for field in &def.fields {
        let key = format!("{prefix}{}", field.name);
        if let Some(attr) = &field.unsupported {
            bail!(
                "{key} ({}): {attr} is not followed by the reference",
                def.file.display()
            );
        }
        let value = map.get(&field.name).unwrap_or(&serde_json::Value::Null);
        let mut section = None;
        for t in field.type_names.iter().rev() {
            if structs.get(t)?.is_some() {
                section = Some(t.clone());
                break;
            }
        }
        match (section, value) {
            (Some(inner), serde_json::Value::Object(_)) => {
                walk(
                    structs,
                    &inner,
                    value,
                    &format!("{key}."),
                    rows,
                    undocumented,
                )?;
            }
            _ => {
                if field.doc.is_empty() {
                    undocumented.push(format!("{key} ({}: {name})", def.file.display()));
                }
                let mut meaning = field.doc.clone();
                // Listed unless the doc comment already names every value.
                if let Some(values) = field
                    .type_names
                    .iter()
                    .rev()
                    .find_map(|t| structs.values(t))
                    && !values
                        .values
                        .iter()
                        .all(|(v, _)| meaning.contains(&format!("`{v}`")))
                {
                    let listed: Vec<String> = values
                        .values
                        .iter()
                        .map(|(v, doc)| match doc.trim_end_matches('.') {
                            "" => format!("`{v}`"),
                            doc => format!("`{v}`: {doc}"),
                        })
                        .collect();
                    meaning = format!("{meaning} Values: {}.", listed.join("; "));
                }
                rows.push(Row {
                    key,
                    default: default_text(value),
                    meaning,
                });
            }
        }
    }
    Ok(())
}

/// A default as it would be written in TOML; `unset` for an absent optional value.
fn default_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "unset".into(),
        serde_json::Value::String(s) => format!("`{s:?}`"),
        other => format!("`{other}`"),
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

const INTRO: &str = "\
# Configuration reference

<!-- Generated from the typed configs by tests/src/config_reference.rs: do not edit by hand.
     BRAID_UPDATE_DOCS=1 cargo test -p braid-tests --lib config_reference  rewrites it. -->

Every key of every service, its default and its meaning, generated from the config structs
(each service's `src/config.rs` and the shared ones in `crates/core`); `cargo test` fails when
this file and the code disagree.

Each service reads an optional TOML file (`--config FILE`) overlaid with environment variables:
the key `search.rrf_k` of the gateway is `[search] rrf_k = 60` in the file and
`BRAID_GATEWAY__SEARCH__RRF_K=60` in the environment (`BRAID_<SERVICE>__<SECTION>__<KEY>`,
upper case, `-` and `.` become `_` and `__`). Values in the environment are read as TOML
(`42`, `true`, `[\"a\", \"b\"]`), anything else as a string. Unknown keys are errors, and every
problem is reported at start-up at once. `braid-<service> --check-config [--config FILE]`
checks a configuration without starting (exit 0, or 2 with every problem), and
`braid-<service> --print-default-config` prints the defaults below as a TOML file to start from
(keys whose default is *unset* are left out). Secrets (keys, passwords) are read from files or
named environment variables (`*.file`, `*_file`, `*_env`), never from the config itself.

| service | environment prefix | gRPC · admin port |
| --- | --- | --- |
| [gateway](#gateway) | `BRAID_GATEWAY__` | 50051 · 9101 |
| [ingest](#ingest) | `BRAID_INGEST__` | 50052 · 9102 |
| [embedding](#embedding) | `BRAID_EMBEDDING__` | 50053 · 9103 |
| [vector-search](#vector-search) | `BRAID_VECTOR_SEARCH__` | 50054 · 9104 |
| [text-search](#text-search) | `BRAID_TEXT_SEARCH__` | 50055 · 9105 |
";

/// The whole reference, as the code says it should be.
fn render(root: &Path) -> anyhow::Result<String> {
    let core = read_defs(&root.join(CORE_SRC))?;
    let mut out = String::from(INTRO);
    let mut undocumented = Vec::new();
    for service in services()? {
        let own = read_defs(&root.join(service.src))?;
        let structs = Structs {
            own: &own,
            core: &core,
        };
        let mut rows = Vec::new();
        walk(
            &structs,
            service.root,
            &service.default,
            "",
            &mut rows,
            &mut undocumented,
        )?;
        let env = braid_core::config::env_prefix(service.section);
        write!(
            out,
            "\n## {}\n\n{} keys; environment `{env}<KEY>` (e.g. `{env}{}`).\n\n\
             | key | default | meaning |\n| --- | --- | --- |\n",
            service.section,
            rows.len(),
            rows.first()
                .map(|r| r.key.to_uppercase().replace('.', "__"))
                .unwrap_or_default(),
        )?;
        for row in rows {
            writeln!(
                out,
                "| `{}` | {} | {} |",
                row.key,
                cell(&row.default),
                cell(&row.meaning)
            )?;
        }
    }
    if !undocumented.is_empty() {
        bail!(
            "config fields without a doc comment (their meaning in {DOC}):\n  {}",
            undocumented.join("\n  ")
        );
    }
    Ok(out)
}

/// The keys a reference lists, by service (`## section` headings, first-column keys).
fn listed_keys(doc: &str) -> BTreeSet<String> {
    let mut section = String::new();
    let mut keys = BTreeSet::new();
    for line in doc.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            section = name.trim().to_string();
        } else if let Some(rest) = line.strip_prefix("| `")
            && let Some((key, _)) = rest.split_once("` |")
            && !section.is_empty()
        {
            keys.insert(format!("{section}: {key}"));
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Fails when a key is added, removed or renamed, a default changes or a doc comment
    /// changes without `docs/configuration.md` (or the other way round).
    #[test]
    fn config_reference_matches_the_code() {
        let root = repo_root();
        let want = render(&root).unwrap();
        let path = root.join(DOC);
        if std::env::var_os("BRAID_UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        let (code, doc) = (listed_keys(&want), listed_keys(&have));
        let missing: Vec<_> = code.difference(&doc).collect();
        let stale: Vec<_> = doc.difference(&code).collect();
        let fix =
            "regenerate it: BRAID_UPDATE_DOCS=1 cargo test -p braid-tests --lib config_reference";
        assert!(
            missing.is_empty() && stale.is_empty(),
            "{DOC} is out of date ({fix})\n  keys in the code, not in the doc: {missing:?}\n  \
             keys in the doc, not in the code: {stale:?}"
        );
        if let Some((n, (w, h))) = want
            .lines()
            .zip(have.lines())
            .enumerate()
            .find(|(_, (w, h))| w != h)
        {
            panic!(
                "{DOC} is out of date ({fix})\n  line {}:\n  code says: {w}\n  doc says:  {h}",
                n + 1
            );
        }
        assert_eq!(want.lines().count(), have.lines().count(), "{DOC}: {fix}");
    }

    #[test]
    fn keys_are_read_per_service_from_the_tables() {
        let doc = "## gateway\n\n| key | default | meaning |\n| --- | --- | --- |\n\
                   | `search.rrf_k` | `60` | RRF k |\n## ingest\n| `worker.lease_ms` | `1` | x |\n";
        let keys: Vec<_> = listed_keys(doc).into_iter().collect();
        assert_eq!(keys, ["gateway: search.rrf_k", "ingest: worker.lease_ms"]);
    }
}
