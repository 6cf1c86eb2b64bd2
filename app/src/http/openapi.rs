//! The OpenAPI document served at `/openapi.json` (committed as `docs/openapi.json`).
//!
//! Handlers document what is theirs: the success answer and the statuses of their own rules
//! (409 `out-of-stock`, 410 `sold-out`, ...). The answers every operation shares are added
//! here, once, by [`complete`], keyed on what the operation declares:
//!
//! | declared by the operation                  | answers added                                   |
//! |--------------------------------------------|-------------------------------------------------|
//! | anything (every API route)                 | 500 server fault, 503 overloaded / timeout / dependency down or circuit open / bulkhead full / write conflict, with `Retry-After` |
//! | `security(("bearer" = []))`                | 401 missing or invalid access token             |
//! | `security(("bearer" = ["admin"]))` (roles) | 403 `missing-role`                              |
//! | parameters or a request body               | 400 malformed value, 422 `validation-failed`    |
//! | a path parameter                           | 404 nothing with that id                        |
//! | a request body                             | 413 body too large, 415 not its media type      |
//!
//! and every error answer, shared or the handler's own, gets the `application/problem+json`
//! [`Problem`] schema. The rules of the parameters live on their types (`PageQuery`,
//! `IdempotencyKey`, `QueueId`), so a client generated from this document sends what the
//! server accepts and accepts everything it answers; `scripts/contract-tests.sh` fuzzes the
//! running app against the document to keep it so.

use utoipa::{
    Modify, OpenApi,
    openapi::{
        Content, OpenApi as Doc, Ref, RefOr, ResponseBuilder,
        header::{Header, HeaderBuilder},
        path::{Operation, ParameterIn},
        response::Response,
        schema::{ObjectBuilder, Type},
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{
    error::{PROBLEM_JSON, Problem},
    idempotency::IdempotencyKey,
    pagination::{Cursor, PageLimit},
    queue::QueueId,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Floodgate API", version = "1", description = "Commerce and ticketing under a traffic flood. Errors are RFC 9457 problem+json."),
    modifiers(&BearerAuth),
    // schemas that parameters refer to (utoipa-axum collects only bodies' schemas)
    components(schemas(Problem, PageLimit, Cursor, IdempotencyKey, QueueId)),
    tags(
        (name = "auth", description = "Signup, login, refresh-token rotation, logout"),
        (name = "users", description = "The signed-in user"),
        (name = "admin", description = "Operational views for admins"),
        (name = "wallet", description = "Balance, charges and the ledger"),
        (name = "goods", description = "Sellers' goods, cached lists and details"),
        (name = "cart", description = "The signed-in user's cart"),
        (name = "orders", description = "Orders paid from the wallet, without oversell"),
        (name = "coupons", description = "First-come-first-served coupon campaigns"),
        (name = "concerts", description = "Concerts, schedules and seats (cached reads)"),
        (name = "reservations", description = "Seat holds and their payment"),
        (name = "queue", description = "Virtual waiting room: join, poll, leave, queue state"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Doc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /auth/login`. Scopes name the roles an \
                         operation requires (`customer`, `seller`, `admin`); a token without \
                         them gets 403 `missing-role`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// A shared answer: its status, the name of its `components/responses` entry and its text.
struct Shared {
    status: &'static str,
    name: &'static str,
    description: &'static str,
    header: Option<(&'static str, &'static str)>,
}

const RETRY_AFTER_TEXT: &str = "Seconds to wait before retrying";
const RETRY_AFTER: Option<(&str, &str)> = Some(("Retry-After", RETRY_AFTER_TEXT));

const SERVER_FAULT: Shared = Shared {
    status: "500",
    name: "ServerFault",
    description: "`internal`: a server fault, answered without internal detail",
    header: None,
};
const UNAVAILABLE: Shared = Shared {
    status: "503",
    name: "Unavailable",
    description: "Retry after `Retry-After`: `overloaded` or `timeout` (load shedding), \
        `service-unavailable` (PostgreSQL or Redis unreachable or exhausted), `circuit-open`, \
        `bulkhead-full`, `dependency-timeout`, `write-conflict`",
    header: RETRY_AFTER,
};
const UNAUTHORIZED: Shared = Shared {
    status: "401",
    name: "Unauthorized",
    description: "`unauthorized`: the bearer access token is missing, malformed, forged or expired",
    header: Some(("WWW-Authenticate", "`Bearer`")),
};
const MISSING_ROLE: Shared = Shared {
    status: "403",
    name: "MissingRole",
    description: "`missing-role`: the token lacks a role this operation's `security` names",
    header: None,
};
const BAD_REQUEST: Shared = Shared {
    status: "400",
    name: "BadRequest",
    description: "`bad-request`: a parameter, header or the body cannot be read (not a number, \
        not JSON, not visible ASCII)",
    header: None,
};
const INVALID: Shared = Shared {
    status: "422",
    name: "ValidationFailed",
    description: "`validation-failed`: a value breaks its rule (range, length, pattern, shape); \
        `field` names it",
    header: None,
};
const NOT_FOUND: Shared = Shared {
    status: "404",
    name: "NotFound",
    description: "`not-found`: nothing with the id in the path (or not yours)",
    header: None,
};
const TOO_LARGE: Shared = Shared {
    status: "413",
    name: "PayloadTooLarge",
    description: "`payload-too-large`: the body is over `FLOODGATE_BODY_LIMIT_BYTES`",
    header: None,
};
const WRONG_MEDIA_TYPE: Shared = Shared {
    status: "415",
    name: "UnsupportedMediaType",
    description: "`unsupported-media-type`: the body is not sent as the operation's media type \
        (`application/json`, or `multipart/form-data` for uploads)",
    header: None,
};
const ALL: [&Shared; 9] = [
    &SERVER_FAULT,
    &UNAVAILABLE,
    &UNAUTHORIZED,
    &MISSING_ROLE,
    &BAD_REQUEST,
    &INVALID,
    &NOT_FOUND,
    &TOO_LARGE,
    &WRONG_MEDIA_TYPE,
];

/// The shared answers of one operation, from what it declares (see the module table).
fn shared_for(op: &Operation) -> Vec<&'static Shared> {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_body = op.request_body.is_some();
    let roles = required_roles(op);
    let mut shared = vec![&SERVER_FAULT, &UNAVAILABLE];
    if roles.is_some() {
        shared.push(&UNAUTHORIZED);
    }
    if roles.is_some_and(|r| !r.is_empty()) {
        shared.push(&MISSING_ROLE);
    }
    if has_body || !params.is_empty() {
        shared.extend([&BAD_REQUEST, &INVALID]);
    }
    if params
        .iter()
        .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path))
    {
        shared.push(&NOT_FOUND);
    }
    if has_body {
        shared.extend([&TOO_LARGE, &WRONG_MEDIA_TYPE]);
    }
    shared
}

/// The roles the operation's `bearer` requirement names (`None`: no authentication).
fn required_roles(op: &Operation) -> Option<Vec<String>> {
    let requirements = serde_json::to_value(op.security.as_ref()?).ok()?;
    requirements
        .as_array()?
        .iter()
        .find_map(|r| r.get("bearer"))
        .map(|scopes| {
            scopes
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
}

fn problem_content() -> Content {
    Content::new(Some(Ref::from_schema_name("Problem")))
}

fn text_header(description: &str) -> Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

fn shared_response(shared: &Shared) -> Response {
    let mut builder = ResponseBuilder::new()
        .description(shared.description)
        .content(PROBLEM_JSON, problem_content());
    if let Some((name, description)) = shared.header {
        builder = builder.header(name, text_header(description));
    }
    builder.build()
}

/// Adds the shared answers to every operation of `doc` and the [`Problem`] schema to every
/// error answer. Run once on the assembled document (paths are merged in after the
/// `#[openapi]` modifiers run, so this cannot be one of them).
pub fn complete(doc: &mut Doc) {
    let components = doc.components.get_or_insert_with(Default::default);
    for shared in ALL {
        components
            .responses
            .insert(shared.name.to_owned(), RefOr::T(shared_response(shared)));
    }
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            complete_operation(op);
        }
    }
}

fn complete_operation(op: &mut Operation) {
    let shared = shared_for(op);
    let responses = &mut op.responses.responses;
    for s in &shared {
        responses
            .entry(s.status.to_owned())
            .or_insert_with(|| Ref::from_response_name(s.name).into());
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        // the handler's own reason, and the shared one of the same status
        let also = shared.iter().find(|s| s.status == status);
        response.description = match (response.description.is_empty(), also) {
            (true, Some(s)) => s.description.to_owned(),
            (true, None) => default_description(status),
            (false, Some(s)) => format!("{}; or {}", response.description, s.description),
            (false, None) => std::mem::take(&mut response.description),
        };
        if status.starts_with('4') || status.starts_with('5') {
            // the handler's own error answer: its text, the shared problem schema
            response.content.clear();
            response
                .content
                .insert(PROBLEM_JSON.to_owned(), RefOr::T(problem_content()));
            if status == "503" || status == "429" {
                response
                    .headers
                    .entry("Retry-After".to_owned())
                    .or_insert_with(|| RefOr::T(text_header(RETRY_AFTER_TEXT)));
            }
        }
    }
}

fn default_description(status: &str) -> String {
    status
        .parse::<u16>()
        .ok()
        .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Answer")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::to_value(crate::http::openapi()).unwrap()
    }

    fn operations(doc: &Value) -> impl Iterator<Item = (String, &Value)> {
        doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .iter()
                    .map(move |(method, op)| (format!("{} {path}", method.to_uppercase()), op))
            })
    }

    #[test]
    fn every_operation_documents_server_fault_and_unavailable() {
        let doc = doc();
        for (name, op) in operations(&doc) {
            for status in ["500", "503"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{name} lacks {status}"
                );
            }
        }
    }

    #[test]
    fn every_error_answer_is_a_problem_with_a_description() {
        let doc = doc();
        let shared = &doc["components"]["responses"];
        for (name, op) in operations(&doc) {
            for (status, response) in op["responses"].as_object().unwrap() {
                let response = match response["$ref"].as_str() {
                    Some(r) => &shared[r.trim_start_matches("#/components/responses/")],
                    None => response,
                };
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{name} {status} has no description"
                );
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"][PROBLEM_JSON]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{name} {status} is not a documented problem"
                    );
                }
            }
        }
    }

    #[test]
    fn authenticated_operations_document_401_and_role_bound_ones_403() {
        let doc = doc();
        let mut role_bound = 0;
        for (name, op) in operations(&doc) {
            let Some(scopes) = op["security"][0]["bearer"].as_array() else {
                assert!(
                    op["responses"].get("401").is_none() || name.contains("/auth/"),
                    "{name}"
                );
                continue;
            };
            assert!(op["responses"].get("401").is_some(), "{name} lacks 401");
            if !scopes.is_empty() {
                role_bound += 1;
                assert!(op["responses"].get("403").is_some(), "{name} lacks 403");
            }
        }
        // admin views, goods writes, concert/schedule/seat and campaign creation, rebuild
        assert!(role_bound >= 9, "only {role_bound} operations name a role");
    }

    /// The body rules stated in the document are the enforced ones (the schema attributes
    /// cannot name the constants).
    #[test]
    fn documented_body_limits_are_the_enforced_ones() {
        use crate::goods::Quantity;
        let doc = doc();
        let field = |schema: &str, field: &str| {
            doc["components"]["schemas"][schema]["properties"][field].clone()
        };
        assert_eq!(field("ItemRequest", "quantity")["maximum"], Quantity::MAX);
        assert_eq!(field("SetQuantity", "quantity")["maximum"], Quantity::MAX);
        let password = field("SignupRequest", "password");
        let (min, max) = (
            password["minLength"].as_u64().unwrap(),
            password["maxLength"].as_u64().unwrap(),
        );
        let pw = |n: u64| crate::auth::types::Password::parse("p".repeat(n as usize)).is_ok();
        assert!(pw(min) && pw(max) && !pw(min - 1) && !pw(max + 1));
        let name = field("SignupRequest", "name")["maxLength"]
            .as_u64()
            .unwrap() as usize;
        let parse = |n: usize| crate::auth::types::parse_name(&"n".repeat(n), "name").is_ok();
        assert!(parse(name) && !parse(name + 1) && !parse(0));
    }

    #[test]
    fn operations_with_input_document_400_and_422_and_bodies_413_and_415() {
        let doc = doc();
        for (name, op) in operations(&doc) {
            let responses = &op["responses"];
            let has_params = op["parameters"].as_array().is_some_and(|p| !p.is_empty());
            let has_body = op.get("requestBody").is_some();
            if has_params || has_body {
                for status in ["400", "422"] {
                    assert!(responses.get(status).is_some(), "{name} lacks {status}");
                }
            }
            if has_body {
                for status in ["413", "415"] {
                    assert!(responses.get(status).is_some(), "{name} lacks {status}");
                }
            }
        }
    }
}
