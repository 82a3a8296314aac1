// The mirror's tables: one per mirrored Postgres table (schema/convex.toml, parents first),
// each document keyed by its row's Postgres id and carrying the version it was written at.
import { defineSchema, defineTable } from "convex/server";
import { v } from "convex/values";

/** The mirrored tables, in the mapping's order (a Rust test holds this list to the mapping). */
export const TABLES = [
  "companies",
  "goals",
  "mindset_categories",
  "days_of_week",
  "methods",
  "overtuigingen",
  "prompts",
  "users",
  "programs",
  "program_schedule",
  "method_usage",
  "habit_usage",
  "personal_goals",
  "personal_goal_usage",
  "overtuiging_usage",
  "persoonlijke_overtuigingen",
] as const;

export type MirroredTable = (typeof TABLES)[number];

/**
 * A mirrored row. `version` is the commit LSN of the change that wrote it, as a decimal
 * string (compared as a number). A deleted row stays as a tombstone (`deleted`, `doc` null)
 * so that a late, older upsert cannot bring it back.
 */
const mirrored = () =>
  defineTable({
    pgId: v.string(),
    version: v.string(),
    deleted: v.boolean(),
    doc: v.union(v.null(), v.record(v.string(), v.any())),
  }).index("by_pgId", ["pgId"]);

export default defineSchema(
  Object.fromEntries(TABLES.map((t) => [t, mirrored()])) as Record<
    MirroredTable,
    ReturnType<typeof mirrored>
  >,
);
