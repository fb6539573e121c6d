//! The OpenAPI document Herald serves at `/api/v1/openapi.json`, derived from the code:
//! the routes, parameters and bodies come from the handlers' annotations as they are
//! registered ([`super::configure`]), the schemas from the request and response types, and
//! the error answers every operation can give from the rules below, which mirror how
//! [`ApiError`](super::error::ApiError) is produced (the extractor, the middlewares, the
//! database classification). `openapi.json` in the repository is this document, written by
//! `herald openapi` (a test keeps the two equal).

use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use utoipa::{
    openapi::{
        path::{Operation, Parameter, ParameterBuilder, ParameterIn},
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
        ContentBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
    },
    PartialSchema, ToSchema,
};

use super::error::{ApiError, HttpErrorOut, ValidationErrorItem, ValidationOut};

/// Operations anyone may call: health (for load balancers) and this document.
const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/health/ping",
    "/api/v1/openapi.json",
];

/// The whole document: what `paths` registered, completed with what every operation shares.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.info.title = "Herald API".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Herald's HTTP API: the Svix API routes Herald implements (the official Svix SDKs \
         work unchanged) and Herald's own additions in the same style. Every answer is JSON; \
         errors are `{\"code\", \"detail\"}`, or `{\"detail\": [...]}` for 422."
            .into(),
    );
    doc.info.contact = None;
    doc.info.license = None;
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "HTTPBearer".into(),
        RefOr::T(SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer))),
    );
    for (name, schema) in [
        (HttpErrorOut::name(), HttpErrorOut::schema()),
        (ValidationOut::name(), ValidationOut::schema()),
        (ValidationErrorItem::name(), ValidationErrorItem::schema()),
    ] {
        components.schemas.insert(name.into_owned(), schema);
    }
    let bearer = SecurityRequirement::new("HTTPBearer", Vec::<String>::new());
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str()) || !path.starts_with("/api/v1");
        for (method, op) in operations(item) {
            op.security = Some(if public {
                vec![SecurityRequirement::default()]
            } else {
                vec![bearer.clone()]
            });
            if !public {
                complete(path, &method, op);
            }
        }
    }
    doc
}

/// The operations of a path item with their methods.
fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<(Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::HEAD, item.head.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// The answers every authenticated operation can give besides its own, by what it takes.
fn complete(path: &str, method: &Method, op: &mut Operation) {
    let has_body = op.request_body.is_some();
    let has_query = op
        .parameters
        .iter()
        .flatten()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Query));
    let post = method == Method::POST;
    if post {
        // The idempotency middleware reads it on every POST.
        op.parameters
            .get_or_insert_with(Vec::new)
            .push(RefOr::T(idempotency_key()));
    }
    let mut add = |status: u16, why: &str, validation: bool| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(error_response(why, validation)));
    };
    add(401, "The bearer token is missing or not accepted", false);
    add(
        503,
        "The database is unavailable or too busy; retry after `Retry-After` seconds",
        false,
    );
    let has_path = path.contains('{');
    if has_path {
        add(404, "A resource the path names does not exist", false);
    }
    if has_body || post {
        add(
            400,
            "Malformed JSON, an empty body, or a malformed `idempotency-key`",
            false,
        );
        // (The idempotency middleware reads a POST's body whatever it is.)
        add(
            413,
            "The body is larger than `HERALD_MAX_PAYLOAD_BYTES`",
            false,
        );
    }
    if post {
        add(
            409,
            "A request with this `idempotency-key` is still being processed, or a conflict \
             with an existing resource",
            false,
        );
    }
    // A path value PostgreSQL cannot take (a NUL character) is refused as invalid too.
    if has_body || has_query || post || has_path {
        add(
            422,
            "A value is invalid, a field is not supported, or an `idempotency-key` was \
             reused for a different request",
            true,
        );
    }
}

fn error_response(description: &str, validation: bool) -> Response {
    let schema = if validation {
        ValidationOut::name()
    } else {
        HttpErrorOut::name()
    };
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(schema)))
                .build(),
        )
        .build()
}

fn idempotency_key() -> Parameter {
    ParameterBuilder::new()
        .name("idempotency-key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Makes a retried POST safe: the first answer is stored (for \
             `HERALD_IDEMPOTENCY_RETENTION`) and replayed to every retry with the same key and \
             body. A message create is never done twice; another POST runs again only if its \
             first run never answered within `HERALD_IDEMPOTENCY_LOCK`.",
        ))
        .schema(Some(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .min_length(Some(1))
                .max_length(Some(256))
                .pattern(Some("^[!-~]+$")),
        ))
        .build()
}

/// Which methods each documented path accepts, for the `405 Method Not Allowed` (with
/// `Allow`) that a known path answers to any other method.
#[derive(Debug, Clone, Default)]
pub struct MethodTable(Vec<(Vec<Segment>, Vec<String>)>);

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param,
}

impl MethodTable {
    pub fn from_document(doc: &OpenApi) -> MethodTable {
        let mut table = Vec::new();
        for (path, item) in &doc.paths.paths {
            let mut item = item.clone();
            let methods: Vec<String> = operations(&mut item)
                .into_iter()
                .map(|(m, _)| m.to_string())
                .collect();
            let segments = path
                .split('/')
                .map(|s| {
                    if s.starts_with('{') {
                        Segment::Param
                    } else {
                        Segment::Literal(s.to_string())
                    }
                })
                .collect();
            table.push((segments, methods));
        }
        MethodTable(table)
    }

    /// The methods `path` accepts (of every documented path it matches), if any.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut methods: Vec<String> = self
            .0
            .iter()
            .filter(|(segments, _)| {
                segments.len() == parts.len()
                    && segments.iter().zip(&parts).all(|(s, p)| match s {
                        Segment::Param => !p.is_empty(),
                        Segment::Literal(l) => l == p,
                    })
            })
            .flat_map(|(_, methods)| methods.iter().cloned())
            .collect();
        methods.sort();
        methods.dedup();
        (!methods.is_empty()).then_some(methods)
    }
}

/// Every answer is JSON, unknown routes included (the SDKs cannot parse anything else): 405
/// with `Allow` for a known path, 404 otherwise.
pub async fn no_route(req: HttpRequest, table: Option<web::Data<MethodTable>>) -> HttpResponse {
    use actix_web::ResponseError;
    if let Some(methods) = table.as_ref().and_then(|t| t.allowed(req.path())) {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("allow", methods.join(", ")))
            .json(HttpErrorOut {
                code: "method_not_allowed".into(),
                detail: format!(
                    "{} is not allowed on {}; use {}",
                    req.method(),
                    req.path(),
                    methods.join(", ")
                ),
            });
    }
    ApiError::NotFound(format!("no route {} {}", req.method(), req.path())).error_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_answer_with_their_methods() {
        let mut doc = OpenApi::default();
        let op = || Operation::new();
        let mut item = utoipa::openapi::PathItem::new(utoipa::openapi::HttpMethod::Get, op());
        item.post = Some(op());
        doc.paths
            .paths
            .insert("/api/v1/app/{app_id}/msg".into(), item);
        doc.paths.paths.insert(
            "/api/v1/app/{app_id}/msg/precheck/active".into(),
            utoipa::openapi::PathItem::new(utoipa::openapi::HttpMethod::Post, op()),
        );
        let t = MethodTable::from_document(&doc);
        assert_eq!(
            t.allowed("/api/v1/app/acme/msg"),
            Some(vec!["GET".to_string(), "POST".to_string()])
        );
        assert_eq!(
            t.allowed("/api/v1/app/acme/msg/precheck/active"),
            Some(vec!["POST".to_string()])
        );
        assert_eq!(t.allowed("/api/v1/app//msg"), None);
        assert_eq!(t.allowed("/api/v1/nothing"), None);
    }
}
