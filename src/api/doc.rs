//! The OpenAPI document Herald serves at `/api/v1/openapi.json`, derived from the code:
//! the routes, parameters and bodies come from the handlers' annotations as they are
//! registered ([`super::configure`]), the schemas from the request and response types, and
//! the error answers every operation can give from the rules below, which mirror how
//! [`ApiError`](super::error::ApiError) is produced (the extractor, the middlewares, the
//! database classification). `openapi.json` in the repository is this document, written by
//! `herald openapi` (a test keeps the two equal).

use actix_web::http::Method;
use utoipa::{
    openapi::{
        path::{Operation, Parameter, ParameterBuilder, ParameterIn},
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
        ContentBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
    },
    PartialSchema, ToSchema,
};

use super::{
    error::{HttpErrorOut, ValidationErrorItem, ValidationOut},
    route_table::{open_to_applications, operations, APPLICATION_TOKEN},
};

/// Operations anyone may call: health (for load balancers), this document, the metrics
/// (for the scraper), and sources' URLs (for providers, which authenticate by the URL's
/// token and their signature).
const PUBLIC: &[&str] = &[
    "/api/v1/health",
    "/api/v1/health/ping",
    "/api/v1/openapi.json",
    "/metrics",
    "/ingest/{token}",
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
        RefOr::T(SecurityScheme::Http(bearer_scheme(
            "An operator token: one of `HERALD_API_TOKENS`, or one made by `herald token \
             create` or `POST /api/v1/token` without an application. Every operation.",
        ))),
    );
    components.security_schemes.insert(
        APPLICATION_TOKEN.into(),
        RefOr::T(SecurityScheme::Http(bearer_scheme(
            "A token limited to one application (`herald token create --app`, or the token \
             of app-portal-access). Only the operations that list this scheme, under its own \
             application's path (any other application is 404), and only `GET` if it is \
             read-only.",
        ))),
    );
    for (name, schema) in [
        (HttpErrorOut::name(), HttpErrorOut::schema()),
        (ValidationOut::name(), ValidationOut::schema()),
        (ValidationErrorItem::name(), ValidationErrorItem::schema()),
    ] {
        components.schemas.insert(name.into_owned(), schema);
    }
    let operator = SecurityRequirement::new("HTTPBearer", Vec::<String>::new());
    let application = SecurityRequirement::new(APPLICATION_TOKEN, Vec::<String>::new());
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = PUBLIC.contains(&path.as_str());
        for (method, op) in operations(item) {
            // A handler opens itself to application tokens by listing their scheme
            // (`security(("ApplicationToken" = []))`); operator tokens reach everything.
            op.security = Some(if public {
                vec![SecurityRequirement::default()]
            } else if open_to_applications(op) {
                vec![operator.clone(), application.clone()]
            } else {
                vec![operator.clone()]
            });
            if !public {
                complete(path, &method, op);
            }
        }
    }
    doc
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
        403,
        "The token may not call this operation: it is limited to one application, or \
         read-only",
        false,
    );
    add(
        429,
        "Too many failed authentications from this address: locked out for `Retry-After` \
         seconds",
        false,
    );
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

fn bearer_scheme(description: &str) -> Http {
    let mut http = Http::new(HttpAuthScheme::Bearer);
    http.description = Some(description.into());
    http
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
