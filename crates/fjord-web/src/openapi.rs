//! The OpenAPI 3.1 document, built from the API's route table ([`crate::api::ROUTES`]) and the request
//! types' schemas (derived with utoipa), so it cannot drift from the routes actually served.

use crate::api::ROUTES;
use axum::Json;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathItem, PathsBuilder, Ref, Required,
};
use utoipa::PartialSchema;

fn method(m: &str) -> HttpMethod {
    match m {
        "get" => HttpMethod::Get,
        "post" => HttpMethod::Post,
        "put" => HttpMethod::Put,
        "patch" => HttpMethod::Patch,
        "delete" => HttpMethod::Delete,
        other => unreachable!("route table uses an unknown method {other}"),
    }
}

fn problem_response(text: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(text)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build(),
        )
        .build()
}

fn json_object_response(text: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(text)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::Object))).build(),
        )
        .build()
}

/// The document.
pub fn document() -> OpenApi {
    let mut components = ComponentsBuilder::new()
        .schema("Problem", crate::error::Problem::schema())
        .security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()))
        .security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        );
    let mut paths = PathsBuilder::new();
    for r in ROUTES {
        let mut op = OperationBuilder::new().summary(Some(r.summary)).tag(r.tag).operation_id(Some(format!(
            "{}{}",
            r.method,
            r.path.replace(['/', '{', '}', '.', '-'], "_")
        )));
        for segment in r.path.split('/') {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                op = op.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(String::schema())),
                );
            }
        }
        if let Some(body) = r.body {
            let schemas = body();
            let name = schemas[0].0.clone();
            for (n, schema) in schemas {
                components = components.schema(n, schema);
            }
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name(name))).build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ));
        }
        let mut responses = ResponsesBuilder::new();
        responses = match r.returns {
            "task" => responses.response("202", json_object_response("The queued task (follow it at the Location)")),
            "task-or-json" => responses
                .response("202", json_object_response("The queued task (follow it at the Location)"))
                .response("200", json_object_response("A dry run's answer: nothing was queued")),
            "sse" => responses.response(
                "200",
                ResponseBuilder::new()
                    .description("Server-sent events: `log` per line, then `end` with the finished task")
                    .content("text/event-stream", ContentBuilder::new().build())
                    .build(),
            ),
            "none" => responses.response("204", ResponseBuilder::new().description("Done").build()),
            _ => responses.response("200", json_object_response("OK")),
        };
        responses = responses
            .response("400", problem_response("Malformed request (syntax, unknown field)"))
            .response("422", problem_response("Invalid input: `field` names the culprit"));
        if r.auth {
            responses = responses
                .response("401", problem_response("Not logged in"))
                .response("403", problem_response("Not allowed (role, token scope, CSRF)"))
                .response("404", problem_response("Not found, or not yours"));
            op = op
                .security(SecurityRequirement::new::<_, [&str; 0], &str>("bearer", []))
                .security(SecurityRequirement::new::<_, [&str; 0], &str>("session", []));
        }
        op = op.responses(responses.build());
        paths = paths.path(r.path, PathItem::new(method(r.method), op.build()));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Fjord API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Hosting control plane: servers, platforms, sites, backups, tasks, clients, users. Authenticate \
             with `Authorization: Bearer TOKEN` or the session cookie (then send `X-CSRF-Token` on changes).",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .build()
}

pub async fn serve() -> Json<OpenApi> {
    Json(document())
}
