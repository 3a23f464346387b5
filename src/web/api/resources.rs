//! `/api/v1/resources`: the entity types an org imports into, each with its fields, their
//! types and rules, and a JSON Schema of one row, so a client can check its rows before
//! uploading them (seed 003's client-side validation, for integrators).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};

use super::{ApiError, Caller, query_params};
use crate::domain::entities::{EntitySchema, Field, FieldKind};
use crate::domain::permissions::Permission;
use crate::state::AppState;

/// One field of a resource.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldObject {
    pub name: String,
    pub label: String,
    /// text, integer, decimal, date, datetime, boolean, enum, enum_multiple, tags, files,
    /// images, relationship_one or relationship_many.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub required: bool,
    /// Whether this field identifies the record (merge, overwrite and delete match on it).
    pub key: bool,
    /// No two records may share a value.
    pub unique: bool,
    /// The values an enum field takes (matched without regard to case).
    pub allowed_values: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// A regular expression text values must match.
    pub pattern: Option<String>,
    /// The resource a relationship field names records of.
    pub target: Option<String>,
    /// The expected format, in words.
    pub format: String,
    /// The formats `column_mapping` may name for this field's column (dates: `DD/MM/YYYY`
    /// and the like, `excel_serial`; decimals: `decimal_point`, `decimal_comma`).
    pub column_formats: Vec<String>,
    /// Other column names matched to this field when no column_mapping is given.
    pub synonyms: Vec<String>,
    pub help: String,
}

/// An entity type the org imports into.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResourceObject {
    /// Always `resource`.
    pub object: &'static str,
    pub name: String,
    pub label: String,
    pub singular: String,
    pub description: String,
    /// The key field's name.
    pub key: String,
    pub fields: Vec<FieldObject>,
    /// JSON Schema (2020-12) of one row as uploaded: each field's cell.
    #[schema(value_type = Object)]
    pub row_schema: Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResourceList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ResourceObject>,
    /// Always false: every resource is on the one page.
    pub has_more: bool,
}

fn field_object(schema: &EntitySchema, f: &Field) -> FieldObject {
    let r = &f.rule;
    FieldObject {
        name: f.name().to_string(),
        label: f.label.clone(),
        kind: f.kind().as_str(),
        required: f.required(),
        key: f.name() == schema.key,
        unique: f.unique,
        allowed_values: r.values.clone(),
        min: r.min,
        max: r.max,
        min_length: r.min_length,
        max_length: r.max_length,
        pattern: r.pattern.as_ref().map(|p| p.as_str().to_string()),
        target: f.target.clone(),
        format: f.kind().format_hint().to_string(),
        column_formats: crate::domain::imports::detect::formats_for(f.kind(), true)
            .into_iter()
            .map(|c| c.pattern())
            .collect(),
        synonyms: f.synonyms.clone(),
        help: f.help.clone(),
    }
}

/// The JSON Schema of one cell of `f`: the text a CSV cell holds, or (for a JSON upload) the
/// native value where there is one.
fn cell_schema(f: &Field) -> Value {
    let r = &f.rule;
    let mut s = match f.kind() {
        FieldKind::Text => {
            let mut s = json!({"type": "string"});
            if let Some(n) = r.min_length {
                s["minLength"] = json!(n);
            }
            if let Some(n) = r.max_length {
                s["maxLength"] = json!(n);
            }
            if let Some(p) = &r.pattern {
                s["pattern"] = json!(p.as_str());
            }
            s
        }
        FieldKind::Integer | FieldKind::Decimal => {
            let (native, pattern) = if f.kind() == FieldKind::Integer {
                ("integer", r"^\s*-?[0-9]+\s*$")
            } else {
                ("number", r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")
            };
            let mut number = json!({"type": native});
            if let Some(n) = r.min {
                number["minimum"] = json!(n);
            }
            if let Some(n) = r.max {
                number["maximum"] = json!(n);
            }
            json!({"anyOf": [number, {"type": "string", "pattern": pattern}]})
        }
        FieldKind::Date => json!({"type": "string", "pattern": r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}\s*$"}),
        FieldKind::Datetime => {
            json!({"type": "string", "pattern": r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?\s*$"})
        }
        FieldKind::Boolean => json!({"anyOf": [
            {"type": "boolean"},
            {"type": "string", "pattern": "^\\s*(?i:true|false|yes|no|y|n|1|0)\\s*$"}
        ]}),
        FieldKind::Enum => {
            json!({"type": "string", "enum": r.values})
        }
        FieldKind::EnumMultiple
        | FieldKind::Tags
        | FieldKind::Files
        | FieldKind::Images
        | FieldKind::RelationshipMany
        | FieldKind::RelationshipOne => json!({"type": "string"}),
    };
    s["title"] = json!(f.label);
    let hint = f.kind().format_hint();
    let constraints = f.constraints();
    let description = [hint, constraints.as_str()].into_iter().filter(|t| !t.is_empty()).collect::<Vec<_>>().join("; ");
    if !description.is_empty() {
        s["description"] = json!(description);
    }
    if f.required() {
        s
    } else {
        // an optional cell may be empty (or null in JSON)
        json!({"anyOf": [s, {"type": "null"}, {"type": "string", "maxLength": 0}]})
    }
}

/// The JSON Schema of one row.
pub fn row_schema(schema: &EntitySchema) -> Value {
    let mut properties = serde_json::Map::new();
    for f in &schema.fields {
        properties.insert(f.name().to_string(), cell_schema(f));
    }
    let required: Vec<&str> = schema.fields.iter().filter(|f| f.required()).map(|f| f.name()).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("One {} row", schema.singular),
        "type": "object",
        "properties": properties,
        "required": required,
    })
}

fn resource_object(schema: &EntitySchema) -> ResourceObject {
    ResourceObject {
        object: "resource",
        name: schema.name.clone(),
        label: schema.label.clone(),
        singular: schema.singular.clone(),
        description: schema.description.clone(),
        key: schema.key.clone(),
        fields: schema.fields.iter().map(|f| field_object(schema, f)).collect(),
        row_schema: row_schema(schema),
    }
}

/// List resources
///
/// Every entity type the organization imports into, with its fields and a JSON Schema of one
/// row.
#[utoipa::path(
    get,
    path = "/api/v1/resources",
    operation_id = "listResources",
    tag = "Resources",
    responses(
        (status = 200, description = "Every resource", body = ResourceList),
        (status = 401, description = "No valid API key", body = super::ErrorBody),
        (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
        (status = 429, description = "Rate limit reached", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn list(req: HttpRequest, caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    query_params(&req, &[])?;
    let data = state.schemas.all().iter().map(|s| resource_object(s)).collect();
    Ok(HttpResponse::Ok().json(ResourceList { object: "list", data, has_more: false }))
}

/// One resource
///
/// The entity type's fields, their types and rules, and a JSON Schema of one row, to check
/// rows before uploading them.
#[utoipa::path(
    get,
    path = "/api/v1/resources/{name}",
    operation_id = "getResource",
    tag = "Resources",
    params(("name" = String, Path, description = "The resource's name, e.g. locations")),
    responses(
        (status = 200, description = "The resource", body = ResourceObject),
        (status = 401, description = "No valid API key", body = super::ErrorBody),
        (status = 403, description = "The key lacks pf.import.upload", body = super::ErrorBody),
        (status = 404, description = "No such resource", body = super::ErrorBody),
        (status = 429, description = "Rate limit reached", body = super::ErrorBody),
    ),
    security(("api_key" = []))
)]
pub async fn get(
    req: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Permission::ImportUpload)?;
    query_params(&req, &[])?;
    let schema = state.schemas.get(&path).ok_or_else(|| ApiError::not_found("resource"))?;
    Ok(HttpResponse::Ok().json(resource_object(schema)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::entities::Schemas;

    #[test]
    fn the_row_schema_names_required_fields_types_and_allowed_values() {
        let toml = r#"
entity = "things"
label = "Things"
singular = "Thing"
key = "code"
[[fields]]
name = "code"
type = "text"
required = true
max_length = 10
[[fields]]
name = "size"
type = "enum"
values = ["S", "M"]
[[fields]]
name = "count"
type = "integer"
min = 0
"#;
        let schemas = Schemas::load([("things.toml", toml)]).unwrap();
        let s = schemas.get("things").unwrap();
        let v = row_schema(s);
        assert_eq!(v["required"], json!(["code"]));
        assert_eq!(v["properties"]["code"]["maxLength"], 10);
        assert_eq!(v["properties"]["size"]["anyOf"][0]["enum"], json!(["S", "M"]));
        assert_eq!(v["properties"]["count"]["anyOf"][0]["anyOf"][0]["minimum"], 0.0);
        let r = resource_object(s);
        assert!(r.fields[0].key && r.fields[0].required && !r.fields[1].key);
        assert_eq!(r.fields[2].kind, "integer");
    }
}
