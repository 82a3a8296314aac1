//! `/v0` routes. Path segments are percent-decoded one by one, so a table named `a/b` sent
//! as `a%2Fb` stays one segment; a trailing slash is ignored.

use super::{meta, records, webhooks, Handled, Request};
use crate::Shared;
use axum::http::Method;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Whoami,
    Bases,
    Tables { base: String },
    CreateTable { base: String },
    PatchTable { base: String, table: String },
    CreateField { base: String, table: String },
    PatchField { base: String, table: String, field: String },
    ListHooks { base: String },
    CreateHook { base: String },
    DeleteHook { base: String, hook: String },
    RefreshHook { base: String, hook: String },
    EnableHook { base: String, hook: String },
    Payloads { base: String, hook: String },
    List { base: String, table: String, post: bool },
    Get { base: String, table: String, record: String },
    Create { base: String, table: String },
    UpdateMany { base: String, table: String, replace: bool },
    UpdateOne { base: String, table: String, record: String, replace: bool },
    DeleteMany { base: String, table: String },
    DeleteOne { base: String, table: String, record: String },
    NotFound,
}

impl Route {
    pub fn parse(method: &Method, path: &str) -> Route {
        let Some(rest) = path.strip_prefix("/v0") else { return Route::NotFound };
        let segs: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let m = method.as_str();
        let b = |x: &str| x.to_owned();
        match (m, s.as_slice()) {
            ("GET", ["meta", "whoami"]) => Route::Whoami,
            ("GET", ["meta", "bases"]) => Route::Bases,
            ("GET", ["meta", "bases", base, "tables"]) => Route::Tables { base: b(base) },
            ("POST", ["meta", "bases", base, "tables"]) => Route::CreateTable { base: b(base) },
            ("PATCH", ["meta", "bases", base, "tables", table]) => {
                Route::PatchTable { base: b(base), table: b(table) }
            }
            ("POST", ["meta", "bases", base, "tables", table, "fields"]) => {
                Route::CreateField { base: b(base), table: b(table) }
            }
            ("PATCH", ["meta", "bases", base, "tables", table, "fields", field]) => {
                Route::PatchField { base: b(base), table: b(table), field: b(field) }
            }
            ("GET", ["bases", base, "webhooks"]) => Route::ListHooks { base: b(base) },
            ("POST", ["bases", base, "webhooks"]) => Route::CreateHook { base: b(base) },
            ("DELETE", ["bases", base, "webhooks", hook]) => {
                Route::DeleteHook { base: b(base), hook: b(hook) }
            }
            ("POST", ["bases", base, "webhooks", hook, "refresh"]) => {
                Route::RefreshHook { base: b(base), hook: b(hook) }
            }
            ("POST", ["bases", base, "webhooks", hook, "enableNotifications"]) => {
                Route::EnableHook { base: b(base), hook: b(hook) }
            }
            ("GET", ["bases", base, "webhooks", hook, "payloads"]) => {
                Route::Payloads { base: b(base), hook: b(hook) }
            }
            (_, ["meta", ..]) | (_, ["bases", _, "webhooks", ..]) => Route::NotFound,
            ("GET", [base, table]) => Route::List { base: b(base), table: b(table), post: false },
            ("POST", [base, table, "listRecords"]) => {
                Route::List { base: b(base), table: b(table), post: true }
            }
            ("POST", [base, table]) => Route::Create { base: b(base), table: b(table) },
            ("PATCH", [base, table]) => {
                Route::UpdateMany { base: b(base), table: b(table), replace: false }
            }
            ("PUT", [base, table]) => {
                Route::UpdateMany { base: b(base), table: b(table), replace: true }
            }
            ("DELETE", [base, table]) => Route::DeleteMany { base: b(base), table: b(table) },
            ("GET", [base, table, record]) => {
                Route::Get { base: b(base), table: b(table), record: b(record) }
            }
            ("PATCH", [base, table, record]) => Route::UpdateOne {
                base: b(base),
                table: b(table),
                record: b(record),
                replace: false,
            },
            ("PUT", [base, table, record]) => Route::UpdateOne {
                base: b(base),
                table: b(table),
                record: b(record),
                replace: true,
            },
            ("DELETE", [base, table, record]) => {
                Route::DeleteOne { base: b(base), table: b(table), record: b(record) }
            }
            _ => Route::NotFound,
        }
    }

    /// The base the request counts against for rate limiting.
    pub fn base(&self) -> Option<&str> {
        match self {
            Route::Whoami | Route::Bases | Route::NotFound => None,
            Route::Tables { base }
            | Route::CreateTable { base }
            | Route::PatchTable { base, .. }
            | Route::CreateField { base, .. }
            | Route::PatchField { base, .. }
            | Route::ListHooks { base }
            | Route::CreateHook { base }
            | Route::DeleteHook { base, .. }
            | Route::RefreshHook { base, .. }
            | Route::EnableHook { base, .. }
            | Route::Payloads { base, .. }
            | Route::List { base, .. }
            | Route::Get { base, .. }
            | Route::Create { base, .. }
            | Route::UpdateMany { base, .. }
            | Route::UpdateOne { base, .. }
            | Route::DeleteMany { base, .. }
            | Route::DeleteOne { base, .. } => Some(base),
        }
    }

    /// The table a records request names (as sent: a name or an id).
    pub fn table(&self) -> Option<&str> {
        match self {
            Route::List { table, .. }
            | Route::Get { table, .. }
            | Route::Create { table, .. }
            | Route::UpdateMany { table, .. }
            | Route::UpdateOne { table, .. }
            | Route::DeleteMany { table, .. }
            | Route::DeleteOne { table, .. } => Some(table),
            _ => None,
        }
    }

    /// The webhook a payload read names.
    pub fn hook(&self) -> Option<&str> {
        match self {
            Route::Payloads { hook, .. } => Some(hook),
            _ => None,
        }
    }

    /// The kind counted in stats.
    pub fn kind(&self) -> &'static str {
        match self {
            Route::Whoami | Route::Bases | Route::Tables { .. } => "meta",
            Route::CreateTable { .. }
            | Route::PatchTable { .. }
            | Route::CreateField { .. }
            | Route::PatchField { .. } => "schema_write",
            Route::ListHooks { .. } => "webhook_list",
            Route::CreateHook { .. } => "webhook_create",
            Route::DeleteHook { .. } => "webhook_delete",
            Route::RefreshHook { .. } => "webhook_refresh",
            Route::EnableHook { .. } => "webhook_enable",
            Route::Payloads { .. } => "webhook_payloads",
            Route::List { .. } => "list",
            Route::Get { .. } => "get",
            Route::Create { .. } => "create",
            Route::UpdateMany { replace: false, .. } | Route::UpdateOne { replace: false, .. } => {
                "update"
            }
            Route::UpdateMany { replace: true, .. } | Route::UpdateOne { replace: true, .. } => {
                "replace"
            }
            Route::DeleteMany { .. } | Route::DeleteOne { .. } => "delete",
            Route::NotFound => "not_found",
        }
    }

    /// Whether the request changes data (fault injection after apply applies to these).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Route::Create { .. }
                | Route::UpdateMany { .. }
                | Route::UpdateOne { .. }
                | Route::DeleteMany { .. }
                | Route::DeleteOne { .. }
        )
    }

    pub fn dispatch(&self, shared: &Arc<Shared>, req: &Request) -> Handled {
        match self {
            Route::Whoami => meta::whoami(shared),
            Route::Bases => meta::bases(shared),
            Route::Tables { base } => meta::tables(shared, base),
            Route::CreateTable { base } => meta::create_table(shared, base, req),
            Route::PatchTable { base, table } => meta::patch_table(shared, base, table, req),
            Route::CreateField { base, table } => meta::create_field(shared, base, table, req),
            Route::PatchField { base, table, field } => {
                meta::patch_field(shared, base, table, field, req)
            }
            Route::ListHooks { base } => webhooks::list(shared, base),
            Route::CreateHook { base } => webhooks::create(shared, base, req),
            Route::DeleteHook { base, hook } => webhooks::delete(shared, base, hook),
            Route::RefreshHook { base, hook } => webhooks::refresh(shared, base, hook),
            Route::EnableHook { base, hook } => webhooks::enable(shared, base, hook, req),
            Route::Payloads { base, hook } => webhooks::payloads(shared, base, hook, req),
            Route::List { base, table, post } => records::list(shared, base, table, *post, req),
            Route::Get { base, table, record } => records::get(shared, base, table, record, req),
            Route::Create { base, table } => records::create(shared, base, table, req),
            Route::UpdateMany { base, table, replace } => {
                records::update_many(shared, base, table, *replace, req)
            }
            Route::UpdateOne { base, table, record, replace } => {
                records::update_one(shared, base, table, record, *replace, req)
            }
            Route::DeleteMany { base, table } => records::delete_many(shared, base, table, req),
            Route::DeleteOne { base, table, record } => {
                records::delete_one(shared, base, table, record)
            }
            Route::NotFound => Err(crate::error::ApiError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_decode_separately_and_trailing_slashes_are_ignored() {
        let r = Route::parse(&Method::GET, "/v0/appAAAAAAAAAAAAAA/a%2Fb%20c/");
        assert_eq!(
            r,
            Route::List { base: "appAAAAAAAAAAAAAA".into(), table: "a/b c".into(), post: false }
        );
        let r = Route::parse(&Method::POST, "/v0/appAAAAAAAAAAAAAA/Users/");
        assert!(matches!(r, Route::Create { .. }));
        assert_eq!(Route::parse(&Method::GET, "/v0/bases/app/webhooks/ach/bogus"), Route::NotFound);
        assert_eq!(Route::parse(&Method::POST, "/v0/meta/whoami"), Route::NotFound);
    }
}
