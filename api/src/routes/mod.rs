//! Every route, registered once: the router and the OpenAPI document come from the same list.

mod auth;
pub(crate) mod health;
mod programs;
mod reference;
mod rewards;
mod usage;

use crate::{error::ErrorBody, AppState};
use axum::{routing::get, Json, Router};
use std::sync::Arc;
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::{router::OpenApiRouter, routes};

#[derive(OpenApi)]
#[openapi(
    info(title = "Coach API", version = "1.0.0", description = "The habit-coaching PWA's API on Postgres."),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::health))
        .routes(routes!(health::ready))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::me))
        .routes(routes!(auth::set_password))
        .routes(routes!(auth::invite))
        .routes(routes!(programs::list, programs::create))
        .routes(routes!(programs::get, programs::update, programs::delete))
        .routes(routes!(programs::get_planning, programs::update_planning))
        .routes(routes!(programs::schedule))
        .routes(routes!(programs::methods))
        .routes(routes!(usage::habits::list, usage::habits::create, usage::habits::delete))
        .routes(routes!(usage::methods::create, usage::methods::update))
        .routes(routes!(usage::methods::by_program))
        .routes(routes!(usage::goals::list_usage, usage::goals::create_usage))
        .routes(routes!(usage::goals::list, usage::goals::create))
        .routes(routes!(usage::goals::update, usage::goals::delete))
        .routes(routes!(usage::beliefs::list_usage, usage::beliefs::create_usage))
        .routes(routes!(usage::beliefs::list_own, usage::beliefs::create_own))
        .routes(routes!(reference::methods))
        .routes(routes!(reference::method))
        .routes(routes!(reference::goals))
        .routes(routes!(reference::overtuigingen))
        .routes(routes!(reference::company_lookup))
        .routes(routes!(rewards::rewards))
}

/// The OpenAPI document, as served at /api/openapi.json.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn router(state: AppState) -> Router {
    let (router, doc) = api().with_state(state.clone()).split_for_parts();
    let doc = Arc::new(doc);
    router
        .route("/api/openapi.json", get(move || std::future::ready(Json(doc.clone()))))
        .route("/metrics", get(move || health::metrics(state.clone())))
        .fallback(|| async { crate::ApiError::NotFound })
}
