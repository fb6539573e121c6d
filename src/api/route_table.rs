//! The documented routes, as a table the server consults at run time: which methods a path
//! accepts (for the `405 Method Not Allowed` with `Allow` a known path answers to any other
//! method), and which operations application-scoped tokens may call (the document says so
//! with the `ApplicationToken` security scheme, and [`super::auth`] enforces it). Built
//! from the OpenAPI document itself, so what is documented and what is enforced cannot
//! differ.

use actix_web::{http::Method, web, HttpRequest, HttpResponse};
use utoipa::openapi::{path::Operation, OpenApi, PathItem};

use super::error::{ApiError, HttpErrorOut};

/// The security scheme of operations that application-scoped tokens may call.
pub const APPLICATION_TOKEN: &str = "ApplicationToken";

#[derive(Debug, Clone, Default)]
pub struct RouteTable(Vec<Route>);

#[derive(Debug, Clone)]
struct Route {
    segments: Vec<Segment>,
    operations: Vec<(Method, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    /// `{app_id}`: the application the route is under.
    App,
    Param,
}

/// What the table knows of the operation a request calls.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationAccess<'p> {
    /// Application-scoped tokens may call it.
    pub application_tokens: bool,
    /// The `{app_id}` segment of the path, as sent.
    pub app_key: Option<&'p str>,
}

/// The operations of a path item with their methods.
pub fn operations(item: &mut PathItem) -> Vec<(Method, &mut Operation)> {
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

/// Whether an operation's security lists application tokens.
pub fn open_to_applications(op: &Operation) -> bool {
    op.security
        .iter()
        .flatten()
        .any(|req| serde_json::to_value(req).is_ok_and(|v| v.get(APPLICATION_TOKEN).is_some()))
}

impl RouteTable {
    pub fn from_document(doc: &OpenApi) -> RouteTable {
        let mut table = Vec::new();
        for (path, item) in &doc.paths.paths {
            let mut item = item.clone();
            let operations = operations(&mut item)
                .into_iter()
                .map(|(m, op)| (m, open_to_applications(op)))
                .collect();
            let segments = path
                .split('/')
                .map(|s| match s {
                    "{app_id}" => Segment::App,
                    s if s.starts_with('{') => Segment::Param,
                    s => Segment::Literal(s.to_string()),
                })
                .collect();
            table.push(Route {
                segments,
                operations,
            });
        }
        RouteTable(table)
    }

    fn matching<'a>(&'a self, parts: &'a [&str]) -> impl Iterator<Item = &'a Route> + 'a {
        self.0.iter().filter(move |r| {
            r.segments.len() == parts.len()
                && r.segments.iter().zip(parts).all(|(s, p)| match s {
                    Segment::Param | Segment::App => !p.is_empty(),
                    Segment::Literal(l) => l == p,
                })
        })
    }

    /// The methods `path` accepts (of every documented path it matches), if any.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut methods: Vec<String> = self
            .matching(&parts)
            .flat_map(|r| r.operations.iter().map(|(m, _)| m.to_string()))
            .collect();
        methods.sort();
        methods.dedup();
        (!methods.is_empty()).then_some(methods)
    }

    /// The operation `method path` calls, if one is documented. When several documented
    /// paths match, application tokens may call it only if every one of them allows it.
    pub fn operation<'p>(&self, method: &Method, path: &'p str) -> Option<OperationAccess<'p>> {
        let parts: Vec<&'p str> = path.split('/').collect();
        let mut found: Option<OperationAccess<'p>> = None;
        for route in self.matching(&parts) {
            let Some((_, open)) = route.operations.iter().find(|(m, _)| m == method) else {
                continue;
            };
            let app_key = route
                .segments
                .iter()
                .position(|s| *s == Segment::App)
                .map(|i| parts[i]);
            found = Some(match found {
                None => OperationAccess {
                    application_tokens: *open,
                    app_key,
                },
                Some(f) => OperationAccess {
                    application_tokens: f.application_tokens && *open && f.app_key == app_key,
                    app_key: f.app_key,
                },
            });
        }
        found
    }
}

/// Every answer is JSON, unknown routes included (the SDKs cannot parse anything else): 405
/// with `Allow` for a known path, 404 otherwise.
pub async fn no_route(req: HttpRequest, table: Option<web::Data<RouteTable>>) -> HttpResponse {
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
    use utoipa::openapi::security::SecurityRequirement;

    fn op(open: bool) -> Operation {
        let mut op = Operation::new();
        op.security = Some(if open {
            vec![
                SecurityRequirement::new("HTTPBearer", Vec::<String>::new()),
                SecurityRequirement::new(APPLICATION_TOKEN, Vec::<String>::new()),
            ]
        } else {
            vec![SecurityRequirement::new("HTTPBearer", Vec::<String>::new())]
        });
        op
    }

    fn table() -> RouteTable {
        let mut doc = OpenApi::default();
        let mut item = PathItem::new(utoipa::openapi::HttpMethod::Get, op(true));
        item.post = Some(op(true));
        doc.paths
            .paths
            .insert("/api/v1/app/{app_id}/msg".into(), item);
        doc.paths.paths.insert(
            "/api/v1/app/{app_id}/msg/precheck/active".into(),
            PathItem::new(utoipa::openapi::HttpMethod::Post, op(true)),
        );
        let mut app = PathItem::new(utoipa::openapi::HttpMethod::Get, op(true));
        app.delete = Some(op(false));
        doc.paths.paths.insert("/api/v1/app/{app_id}".into(), app);
        doc.paths.paths.insert(
            "/api/v1/event-type".into(),
            PathItem::new(utoipa::openapi::HttpMethod::Post, op(false)),
        );
        RouteTable::from_document(&doc)
    }

    #[test]
    fn known_paths_answer_with_their_methods() {
        let t = table();
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

    #[test]
    fn operations_say_who_may_call_them_and_under_which_application() {
        let t = table();
        assert_eq!(
            t.operation(&Method::POST, "/api/v1/app/acme/msg"),
            Some(OperationAccess {
                application_tokens: true,
                app_key: Some("acme")
            })
        );
        assert_eq!(
            t.operation(&Method::DELETE, "/api/v1/app/acme"),
            Some(OperationAccess {
                application_tokens: false,
                app_key: Some("acme")
            })
        );
        assert_eq!(
            t.operation(&Method::POST, "/api/v1/event-type"),
            Some(OperationAccess {
                application_tokens: false,
                app_key: None
            })
        );
        assert_eq!(t.operation(&Method::PUT, "/api/v1/app/acme/msg"), None);
        assert_eq!(t.operation(&Method::GET, "/api/v1/elsewhere"), None);
    }
}
