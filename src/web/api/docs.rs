//! The API's OpenAPI 3.1 document, generated from the handlers and types by utoipa, served
//! at `/api/v1/openapi.json`, and the reference page `/api/docs` rendered from it on the
//! server (no script, the app's CSP unchanged).

use actix_web::http::StatusCode;
use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use askama::Template;
use serde_json::{Value, json};
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use super::{ErrorBody, ErrorDetail, control, imports, mapping, resources, upload, write};
use crate::auth::Identity;
use crate::domain::entities::Schemas;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::layout::{Layout, render};

struct BearerKey;

impl utoipa::Modify for BearerKey {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API key, created by an owner at /settings/api-keys: `Authorization: Bearer sv_live_…`".to_string(),
        );
        components.add_security_scheme("api_key", SecurityScheme::Http(http));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stevedore API",
        version = "1",
        description = "Drive imports from your own systems: see each import's status, phases, counts and \
                       problems, list them, and read the resources you can import into. Authenticate with an \
                       API key in the `Authorization` header. Every error is \
                       `{\"error\": {\"type\", \"code\", \"message\", \"param\"}}`; every response carries \
                       `X-Request-Id`, and authenticated ones `RateLimit-Policy` and `RateLimit`."
    ),
    paths(
        imports::list,
        write::create,
        imports::get,
        upload::upload,
        control::start,
        control::pause,
        control::resume,
        control::cancel,
        control::rollback,
        resources::list,
        resources::get
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        imports::ImportObject,
        imports::ImportList,
        imports::PhaseObject,
        imports::StatsObject,
        mapping::ColumnOptionObject,
        mapping::MappingEntry,
        mapping::ColumnChoice,
        resources::ResourceObject,
        resources::ResourceList,
        resources::FieldObject,
        write::CreateImport,
        upload::UploadResult,
        upload::Problem,
        control::RollbackOptions,
        control::StartOptions
    )),
    modifiers(&BearerKey),
    tags(
        (name = "Imports", description = "Imports of CSV and XLSX files into an organization's resources"),
        (name = "Resources", description = "The entity types an organization imports into")
    )
)]
pub struct ApiDoc;

/// What `column_mapping` takes for field `f`: its column's header, or an object with the
/// header and, where the field's type has them, a format and (enums) a value mapping.
fn mapping_entry_schema(f: &crate::domain::entities::Field) -> Value {
    use crate::domain::entities::FieldKind;
    let mut choice = serde_json::Map::new();
    choice.insert("column".into(), json!({"type": "string"}));
    // excel_serial is offered for spreadsheets only at the mapping step; a client may name it
    let formats: Vec<String> =
        crate::domain::imports::detect::formats_for(f.kind(), true).into_iter().map(|c| c.pattern()).collect();
    // a key the field's type has no use for may be there, as null
    let format = if formats.is_empty() {
        json!({"type": "null"})
    } else {
        json!({"anyOf": [{"type": "null"}, {"type": "string", "enum": formats}]})
    };
    choice.insert("format".into(), format);
    let values = if matches!(f.kind(), FieldKind::Enum | FieldKind::EnumMultiple) {
        let allowed = &f.rule.values;
        json!({"anyOf": [{"type": "null"}, {"type": "object", "additionalProperties": {"type": "string", "enum": allowed}}]})
    } else {
        json!({"type": "null"})
    };
    choice.insert("values".into(), values);
    json!({"anyOf": [
        {"type": "string"},
        {"type": "object", "required": ["column"], "properties": choice, "additionalProperties": false}
    ]})
}

/// The document for this app's resources: what utoipa generates from the code, with what
/// only the loaded entity types know (which resources there are, which fields each maps)
/// and the links from a created import to what can be done with it.
pub fn document(schemas: &Schemas) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null);
    let names: Vec<&str> = schemas.all().iter().map(|s| s.name.as_str()).collect();
    if let Some(create) = doc.pointer_mut("/components/schemas/CreateImport") {
        create["properties"]["resource"] = json!({"type": "string", "enum": names, "description": "The resource to import into (see /api/v1/resources)."});
        // the mapping names the chosen resource's fields: one branch per resource
        let branches: Vec<Value> = schemas
            .all()
            .iter()
            .map(|s| {
                let fields: serde_json::Map<String, Value> =
                    s.fields.iter().map(|f| (f.name().to_string(), mapping_entry_schema(f))).collect();
                json!({"properties": {
                    "resource": {"const": s.name},
                    "column_mapping": {"anyOf": [
                        {"type": "null"},
                        {"type": "object", "properties": fields, "additionalProperties": false}
                    ]}
                }})
            })
            .collect();
        create["oneOf"] = Value::Array(branches);
    }
    if let Some(param) = doc.pointer_mut("/paths/~1api~1v1~1resources~1{name}/get/parameters/0/schema") {
        *param = json!({"type": "string", "enum": names});
    }
    if let Some(param) = doc.pointer_mut("/paths/~1api~1v1~1imports/get/parameters")
        && let Some(list) = param.as_array_mut()
    {
        let statuses: Vec<&str> = crate::domain::imports::ApiStatus::ALL.iter().map(|a| a.as_str()).collect();
        for p in list.iter_mut() {
            match p["name"].as_str() {
                Some("resource") => p["schema"] = json!({"type": "string", "enum": names}),
                Some("status") => p["schema"] = json!({"type": "string", "enum": statuses}),
                _ => {}
            }
        }
    }
    let mut links = serde_json::Map::new();
    for op in ["getImport", "startImport", "pauseImport", "resumeImport", "cancelImport", "rollbackImport"] {
        links.insert(op.to_string(), json!({"operationId": op, "parameters": {"id": "$response.body#/id"}}));
    }
    if let Some(created) = doc.pointer_mut("/paths/~1api~1v1~1imports/post/responses/201") {
        created["links"] = Value::Object(links);
    }
    doc
}

/// `GET /api/v1/openapi.json` (public: it describes the API, it opens nothing).
pub async fn openapi_json(state: actix_web::web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&state.api_doc)
}

pub struct ParamView {
    pub name: String,
    pub location: String,
    pub required: bool,
    pub description: Rich,
}

pub struct ResponseView {
    pub status: String,
    pub description: Rich,
    pub schema: String,
}

pub struct OperationView {
    pub anchor: String,
    pub method: String,
    pub path: String,
    pub summary: Rich,
    pub description: Rich,
    pub params: Vec<ParamView>,
    pub responses: Vec<ResponseView>,
}

pub struct PropertyView {
    pub name: String,
    pub kind: String,
    pub required: bool,
    pub description: Rich,
}

pub struct SchemaView {
    pub name: String,
    pub properties: Vec<PropertyView>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
pub struct ReferencePage {
    pub l: Layout,
    pub title: String,
    pub intro: Rich,
    pub operations: Vec<OperationView>,
    pub schemas: Vec<SchemaView>,
}

/// Text with `code` spans: (is code, text) pieces, so the template escapes every piece and
/// wraps the code ones in `<code>`.
pub type Rich = Vec<(bool, String)>;

fn rich(v: &Value) -> Rich {
    let t = v.as_str().unwrap_or("");
    if t.is_empty() {
        return vec![];
    }
    t.split('`')
        .enumerate()
        .filter(|(_, piece)| !piece.is_empty())
        .map(|(i, piece)| (i % 2 == 1, piece.to_string()))
        .collect()
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

/// The name of a `$ref`'d schema, or the type of an inline one.
fn type_name(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if let Some(any) = s.get("oneOf").or_else(|| s.get("anyOf")).and_then(Value::as_array) {
        return any.iter().map(type_name).collect::<Vec<_>>().join(" or ");
    }
    match s.get("type") {
        Some(Value::Array(ts)) => ts.iter().map(text).collect::<Vec<_>>().join(" or "),
        Some(Value::String(t)) if t == "array" => {
            format!("array of {}", s.get("items").map(type_name).unwrap_or_default())
        }
        Some(Value::String(t)) => t.clone(),
        _ => "any".into(),
    }
}

fn operations(doc: &Value) -> Vec<OperationView> {
    let mut out = vec![];
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else { return out };
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let params = op
                .get("parameters")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| ParamView {
                            name: text(&p["name"]),
                            location: text(&p["in"]),
                            required: p["required"].as_bool().unwrap_or(false),
                            description: rich(&p["description"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let responses = op
                .get("responses")
                .and_then(Value::as_object)
                .map(|rs| {
                    rs.iter()
                        .map(|(status, r)| ResponseView {
                            status: status.clone(),
                            description: rich(&r["description"]),
                            schema: r.pointer("/content/application~1json/schema").map(type_name).unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(OperationView {
                anchor: format!("{method}-{}", path.trim_matches('/').replace(['/', '{', '}'], "-")),
                method: method.to_uppercase(),
                path: path.clone(),
                summary: rich(&op["summary"]),
                description: rich(&op["description"]),
                params,
                responses,
            });
        }
    }
    out
}

fn schemas(doc: &Value) -> Vec<SchemaView> {
    let Some(all) = doc.pointer("/components/schemas").and_then(Value::as_object) else { return vec![] };
    all.iter()
        .map(|(name, s)| {
            let required: Vec<&str> =
                s["required"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            let properties = s["properties"]
                .as_object()
                .map(|ps| {
                    ps.iter()
                        .map(|(p, v)| PropertyView {
                            name: p.clone(),
                            kind: type_name(v),
                            required: required.contains(&p.as_str()),
                            description: rich(&v["description"]),
                        })
                        .collect()
                })
                .unwrap_or_default();
            SchemaView { name: name.clone(), properties }
        })
        .collect()
}

/// `GET /api/docs`: the reference, readable.
pub async fn reference(req: HttpRequest, state: actix_web::web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let identity = req.extensions().get::<Identity>().cloned();
    let l = match &identity {
        Some(id) => Layout::for_user(&req, id, "API reference", "api-docs").await?,
        None => Layout::anonymous(&req, "API reference")?,
    };
    let doc = &state.api_doc;
    let page = ReferencePage {
        l,
        title: text(&doc["info"]["title"]),
        intro: rich(&doc["info"]["description"]),
        operations: operations(doc),
        schemas: schemas(doc),
    };
    Ok(render(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_endpoint_and_the_bearer_scheme() {
        let schemas = crate::content::load_schemas(None).unwrap();
        let doc = &document(&schemas);
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3.1"), "{}", doc["openapi"]);
        for p in ["/api/v1/imports", "/api/v1/imports/{id}", "/api/v1/resources", "/api/v1/resources/{name}"] {
            assert!(doc["paths"][p]["get"].is_object(), "{p}");
        }
        assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
        let import = &doc["components"]["schemas"]["ImportObject"]["properties"];
        for field in ["id", "organization_id", "status", "phases", "stats", "_errors_csv_url", "column_mapping"] {
            assert!(import[field].is_object(), "{field}");
        }
        let ops = operations(doc);
        assert_eq!(ops.len(), 11);
        assert!(ops.iter().all(|o| !o.summary.is_empty()), "every endpoint says what it does");
        let ids: std::collections::BTreeSet<&str> = ["get", "post", "put"]
            .iter()
            .flat_map(|m| doc["paths"].as_object().unwrap().values().filter_map(move |p| p[*m]["operationId"].as_str()))
            .collect();
        assert_eq!(ids.len(), 11, "operation ids are unique: {ids:?}");
        let create = &doc["components"]["schemas"]["CreateImport"];
        assert!(create["properties"]["resource"]["enum"].as_array().unwrap().iter().any(|r| r == "locations"));
        assert!(create["oneOf"].as_array().unwrap().len() >= 2);
        assert!(doc["paths"]["/api/v1/imports"]["post"]["responses"]["201"]["links"]["getImport"].is_object());
    }
}
