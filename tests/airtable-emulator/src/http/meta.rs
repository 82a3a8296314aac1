//! The Meta API.

use super::{Handled, Request};
use crate::{error::ApiError, lock, model::table::EMULATOR_USER, Shared};
use serde_json::{json, Value};
use std::sync::Arc;

pub fn whoami(shared: &Arc<Shared>) -> Handled {
    Ok((json!({ "id": EMULATOR_USER, "scopes": shared.scopes() }), 0))
}

pub fn bases(shared: &Arc<Shared>) -> Handled {
    let world = lock(&shared.world);
    let bases: Vec<_> = world
        .bases
        .values()
        .map(|b| json!({ "id": b.id, "name": b.name, "permissionLevel": "create" }))
        .collect();
    Ok((json!({ "bases": bases }), 0))
}

pub fn tables(shared: &Arc<Shared>, base: &str) -> Handled {
    let mut world = lock(&shared.world);
    let b = world.base_mut(base)?;
    Ok((json!({ "tables": b.tables.iter().map(|t| t.meta()).collect::<Vec<_>>() }), 0))
}

/// Schema writes need `schema.bases:write`; without it Airtable answers 403 as for a
/// model it cannot see.
fn may_write_schema(shared: &Shared) -> Result<(), ApiError> {
    if shared.scopes().iter().any(|s| s == "schema.bases:write") {
        Ok(())
    } else {
        Err(ApiError::model_not_found())
    }
}

pub fn create_table(shared: &Arc<Shared>, base: &str, req: &Request) -> Handled {
    may_write_schema(shared)?;
    let body = req.json()?;
    let mut world = lock(&shared.world);
    Ok((world.base_mut(base)?.create_table(&body)?, 0))
}

/// A schema write on one table of a base: scope checked, body parsed, table found.
fn on_table(
    shared: &Arc<Shared>,
    base: &str,
    table: &str,
    req: &Request,
    write: impl FnOnce(&mut crate::model::Base, usize, &Value) -> Result<Value, ApiError>,
) -> Handled {
    may_write_schema(shared)?;
    let body = req.json()?;
    let mut world = lock(&shared.world);
    let b = world.base_mut(base)?;
    let ti = b.table_index(table, false)?;
    Ok((write(b, ti, &body)?, 0))
}

pub fn patch_table(shared: &Arc<Shared>, base: &str, table: &str, req: &Request) -> Handled {
    on_table(shared, base, table, req, |b, ti, body| b.patch_table(ti, body))
}

pub fn create_field(shared: &Arc<Shared>, base: &str, table: &str, req: &Request) -> Handled {
    on_table(shared, base, table, req, |b, ti, body| b.create_field(ti, body))
}

pub fn patch_field(
    shared: &Arc<Shared>,
    base: &str,
    table: &str,
    field: &str,
    req: &Request,
) -> Handled {
    on_table(shared, base, table, req, |b, ti, body| b.patch_field(ti, field, body))
}
