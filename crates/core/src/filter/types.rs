//! Declared metadata types (`metadata_types` in the ingest config, the one place they are
//! declared): which keys hold numbers, dates or booleans, for every tenant or per tenant.
//! Undeclared keys are strings. Ingest rejects a document whose value contradicts its key's
//! type; the gateway learns a tenant's types from ingest ([`TenantTypes`], over
//! `IngestService.MetadataTypes`) and rejects a filter that cannot fit them.

use std::collections::{BTreeMap, HashMap};

use braid_proto::v1::{MetadataType, MetadataTypesResponse};
use serde::{Deserialize, Serialize};

use super::typed;
use crate::validate::{self, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetaType {
    String,
    Number,
    Date,
    Bool,
}

impl MetaType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Date => "date",
            Self::Bool => "bool",
        }
    }

    /// Whether `value` is a valid value of this type.
    pub fn admits(self, value: &str) -> bool {
        match self {
            Self::String => true,
            Self::Number => typed::number(value).is_some(),
            Self::Date => typed::date_millis(value).is_some(),
            Self::Bool => typed::boolean(value).is_some(),
        }
    }

    fn to_proto(self) -> MetadataType {
        match self {
            Self::String => MetadataType::String,
            Self::Number => MetadataType::Number,
            Self::Date => MetadataType::Date,
            Self::Bool => MetadataType::Bool,
        }
    }

    fn from_proto(t: MetadataType) -> Option<Self> {
        match t {
            MetadataType::Unspecified => None,
            MetadataType::String => Some(Self::String),
            MetadataType::Number => Some(Self::Number),
            MetadataType::Date => Some(Self::Date),
            MetadataType::Bool => Some(Self::Bool),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Self::String => "any text",
            Self::Number => "a finite decimal number such as 42 or -1.5",
            Self::Date => "an RFC 3339 date-time (2024-05-01T12:00:00Z) or a date (2024-05-01)",
            Self::Bool => "true or false",
        }
    }
}

/// `metadata_types.default` applies to every tenant; `metadata_types.tenants.<tenant>` adds
/// or overrides keys for one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetadataTypes {
    /// Key → type for every tenant (`metadata_types.default.year = "number"`).
    pub default: BTreeMap<String, MetaType>,
    /// Tenant → key → type, over the defaults (`metadata_types.tenants.acme.year = "date"`).
    pub tenants: BTreeMap<String, BTreeMap<String, MetaType>>,
}

impl MetadataTypes {
    /// The declared type of `key` in `tenant` (`String` when undeclared).
    pub fn type_of(&self, tenant: &str, key: &str) -> MetaType {
        self.tenants
            .get(tenant)
            .and_then(|keys| keys.get(key))
            .or_else(|| self.default.get(key))
            .copied()
            .unwrap_or(MetaType::String)
    }

    /// The types that hold in `tenant`: the defaults with the tenant's own entries over them.
    pub fn for_tenant(&self, tenant: &str) -> TenantTypes {
        let mut keys = self.default.clone();
        if let Some(own) = self.tenants.get(tenant) {
            keys.extend(own.iter().map(|(k, t)| (k.clone(), *t)));
        }
        TenantTypes { keys }
    }

    /// Every value of a document's metadata must fit its key's declared type.
    pub fn check_document(
        &self,
        tenant: &str,
        metadata: &HashMap<String, String>,
    ) -> Result<(), FieldError> {
        let sorted: BTreeMap<&String, &String> = metadata.iter().collect();
        for (key, value) in sorted {
            let t = self.type_of(tenant, key);
            if !t.admits(value) {
                return Err(FieldError::new(
                    format!("metadata[{key}]"),
                    format!(
                        "`{}` is not a {} (the key is declared {} in metadata_types): expected {}",
                        value.escape_debug(),
                        t.as_str(),
                        t.as_str(),
                        t.expected()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Start-up validation: keys and tenants follow the request rules.
    pub fn validate(&self, prefix: &str, errors: &mut Vec<String>) {
        for key in self.default.keys() {
            if let Err(e) = validate::metadata_key(&format!("{prefix}.default"), key) {
                errors.push(e.to_string());
            }
        }
        for (tenant, keys) in &self.tenants {
            if let Err(e) = validate::tenant(tenant) {
                errors.push(format!("{prefix}.tenants: {}", e.message));
            }
            for key in keys.keys() {
                if let Err(e) = validate::metadata_key(&format!("{prefix}.tenants.{tenant}"), key) {
                    errors.push(e.to_string());
                }
            }
        }
    }
}

/// One tenant's declared types, as ingest enforces them ([`MetadataTypes::for_tenant`]) and
/// as the gateway receives them (`IngestService.MetadataTypes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantTypes {
    keys: BTreeMap<String, MetaType>,
}

impl TenantTypes {
    /// The declared type of `key` (`String` when undeclared).
    pub fn type_of(&self, key: &str) -> MetaType {
        self.keys.get(key).copied().unwrap_or(MetaType::String)
    }

    pub fn to_proto(&self) -> MetadataTypesResponse {
        MetadataTypesResponse {
            types: self
                .keys
                .iter()
                .map(|(k, t)| (k.clone(), t.to_proto() as i32))
                .collect(),
        }
    }

    /// The types in an ingest service's answer; an unknown type (from a newer ingest) is an
    /// error naming its key.
    pub fn from_proto(r: &MetadataTypesResponse) -> Result<Self, String> {
        let keys = r
            .types
            .iter()
            .map(|(key, &t)| {
                MetadataType::try_from(t)
                    .ok()
                    .and_then(MetaType::from_proto)
                    .map(|t| (key.clone(), t))
                    .ok_or_else(|| format!("key `{key}` has unknown metadata type {t}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> MetadataTypes {
        MetadataTypes {
            default: BTreeMap::from([
                ("year".into(), MetaType::Number),
                ("published".into(), MetaType::Date),
            ]),
            tenants: BTreeMap::from([(
                "acme".into(),
                BTreeMap::from([("year".into(), MetaType::String)]),
            )]),
        }
    }

    #[test]
    fn tenant_overrides_default() {
        let t = types();
        assert_eq!(t.type_of("x", "year"), MetaType::Number);
        assert_eq!(t.type_of("acme", "year"), MetaType::String);
        assert_eq!(t.type_of("x", "lang"), MetaType::String);
    }

    #[test]
    fn tenant_types_resolve_and_travel_over_the_wire() {
        let t = types();
        let acme = t.for_tenant("acme");
        assert_eq!(acme.type_of("year"), MetaType::String);
        assert_eq!(acme.type_of("published"), MetaType::Date);
        let other = t.for_tenant("other");
        assert_eq!(other.type_of("year"), MetaType::Number);
        assert_eq!(other.type_of("lang"), MetaType::String);
        let wire = other.to_proto();
        assert_eq!(TenantTypes::from_proto(&wire), Ok(other));
        let mut unknown = wire;
        unknown.types.insert("rating".into(), 99);
        let e = TenantTypes::from_proto(&unknown).unwrap_err();
        assert!(e.contains("`rating`"), "{e}");
    }

    #[test]
    fn documents_must_fit_declared_types() {
        let t = types();
        let ok = HashMap::from([
            ("year".to_string(), "2019".to_string()),
            ("published".to_string(), "2024-05-01".to_string()),
        ]);
        assert!(t.check_document("x", &ok).is_ok());
        let bad = HashMap::from([("year".to_string(), "twenty".to_string())]);
        let e = t.check_document("x", &bad).unwrap_err();
        assert_eq!(e.field, "metadata[year]");
        assert!(e.message.contains("not a number"), "{e}");
        assert!(t.check_document("acme", &bad).is_ok());
    }

    #[test]
    fn config_keys_are_checked() {
        let mut t = types();
        t.default.insert("bad key".into(), MetaType::Bool);
        t.tenants.insert("no spaces".into(), BTreeMap::new());
        let mut errors = Vec::new();
        t.validate("metadata_types", &mut errors);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }
}
