// The mirror's two functions, called by the sync daemon over the HTTP API with the deploy key
// (internal: no browser client can call them).
//
// mirror:apply is a compare-and-set on `version`: a change older than the stored version
// changes nothing (counted `stale`), a delete leaves a tombstone with its version. So replays
// and reorders never regress a document. A call is one Convex transaction: a change it
// refuses (an error) leaves every change of the call unapplied, and the daemon bisects.
import { internalMutationGeneric, internalQueryGeneric } from "convex/server";
import { v } from "convex/values";
import { TABLES } from "./schema";

/** The most changes one call carries. */
export const MAX_CHANGES = 100;
/** Convex's limit on a document, for the mapped columns' JSON. */
export const MAX_DOC_BYTES = 1 << 20;
/** The most documents one snapshot page returns. */
export const MAX_PAGE = 1000;
const U64_MAX = (1n << 64n) - 1n;

const change = v.object({
  table: v.string(),
  id: v.string(),
  version: v.string(),
  op: v.union(v.literal("upsert"), v.literal("delete")),
  doc: v.optional(v.any()),
});

const mirrored = (table: string, at: string): string => {
  if (!(TABLES as readonly string[]).includes(table)) {
    throw new Error(`${at}: table ${JSON.stringify(table)} is not mirrored`);
  }
  return table;
};

/** A version as a number: a decimal u64 without leading zeros. */
const parseVersion = (version: string, at: string): bigint => {
  if (!/^(0|[1-9][0-9]{0,19})$/.test(version) || BigInt(version) > U64_MAX) {
    throw new Error(`${at}: version ${JSON.stringify(version)} is not a decimal LSN`);
  }
  return BigInt(version);
};

const checkDoc = (doc: unknown, at: string): Record<string, unknown> => {
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) {
    throw new Error(`${at}: an upsert needs its doc as an object`);
  }
  const bytes = new TextEncoder().encode(JSON.stringify(doc)).length;
  if (bytes > MAX_DOC_BYTES) {
    throw new Error(`${at}: document too large (${bytes} bytes, at most ${MAX_DOC_BYTES})`);
  }
  return doc as Record<string, unknown>;
};

export const apply = internalMutationGeneric({
  args: { changes: v.array(change) },
  handler: async (ctx, { changes }) => {
    if (changes.length > MAX_CHANGES) {
      throw new Error(`at most ${MAX_CHANGES} changes per call, got ${changes.length}`);
    }
    let applied = 0;
    let stale = 0;
    for (const [i, c] of changes.entries()) {
      const at = `change ${i} (${c.table} ${c.id})`;
      const table = mirrored(c.table, at);
      if (c.id === "") throw new Error(`${at}: empty id`);
      const version = parseVersion(c.version, at);
      const doc = c.op === "upsert" ? checkDoc(c.doc, at) : null;
      const existing = await ctx.db
        .query(table)
        .withIndex("by_pgId", (q) => q.eq("pgId", c.id))
        .unique();
      // Equal versions are the same change again, or a later change of the same
      // transaction (which comes later in stream order): both apply.
      if (existing !== null && BigInt(existing.version as string) > version) {
        stale += 1;
        continue;
      }
      const row = { pgId: c.id, version: version.toString(), deleted: doc === null, doc };
      if (existing === null) {
        await ctx.db.insert(table, row);
      } else {
        await ctx.db.replace(existing._id, row);
      }
      applied += 1;
    }
    return { applied, stale };
  },
});

/** One page of a table in pgId order, tombstones included (`cdc verify` reads it). */
export const snapshot = internalQueryGeneric({
  args: {
    table: v.string(),
    cursor: v.union(v.string(), v.null()),
    numItems: v.number(),
  },
  handler: async (ctx, { table, cursor, numItems }) => {
    const name = mirrored(table, "snapshot");
    const size = Math.min(Math.max(1, Math.floor(numItems)), MAX_PAGE);
    const page = await ctx.db
      .query(name)
      .withIndex("by_pgId")
      .paginate({ cursor, numItems: size });
    return {
      page: page.page.map((d) => ({
        id: d.pgId,
        version: d.version,
        deleted: d.deleted,
        doc: d.doc,
      })),
      isDone: page.isDone,
      continueCursor: page.continueCursor,
    };
  },
});
