//! The Meta API.

use super::Handled;
use crate::{lock, model::table::EMULATOR_USER, Shared};
use serde_json::json;
use std::sync::Arc;

pub fn whoami() -> Handled {
    Ok((
        json!({ "id": EMULATOR_USER, "scopes": ["data.records:read", "data.records:write", "schema.bases:read", "webhook:manage"] }),
        0,
    ))
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
