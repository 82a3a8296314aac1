// The shared vectors (tests/vectors.json) against this module under convex-test; the Rust
// emulator runs the same file (tests/convex-emulator), so the two keep the same semantics.
/// <reference types="vite/client" />
import { convexTest } from "convex-test";
import { anyApi } from "convex/server";
import { describe, expect, test } from "vitest";
import vectors from "./tests/vectors.json";
import schema from "./schema";

const modules = {
  ...import.meta.glob(["./*.ts", "!./*.test.ts"]),
  // convex-test finds the functions' root by their `_generated` directory.
  "./_generated/server.ts": async () => ({}),
};

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Expands the vectors' shorthands (see `about` in vectors.json). */
const expand = (value: Json): Json => {
  if (Array.isArray(value)) return value.map(expand);
  if (value !== null && typeof value === "object") {
    const repeat = value["$repeat"];
    if (Array.isArray(repeat)) return (repeat[0] as string).repeat(repeat[1] as number);
    const many = value["$many"] as { table: string; count: number; version: string } | undefined;
    if (many) {
      return Array.from({ length: many.count }, (_, n) => ({
        table: many.table,
        id: `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`,
        version: many.version,
        op: "upsert",
        doc: { n },
      }));
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v)]));
  }
  return value;
};

const mirror = anyApi.mirror;

const pageAll = async (t: ReturnType<typeof convexTest>, table: string, numItems: number) => {
  const pages = [];
  let cursor: string | null = null;
  for (;;) {
    const page: { page: any[]; isDone: boolean; continueCursor: string } = await t.query(
      mirror.snapshot,
      { table, cursor, numItems },
    );
    pages.push(page.page);
    if (page.isDone) return pages;
    cursor = page.continueCursor;
  }
};

describe("mirror (shared vectors)", () => {
  for (const c of vectors.cases as any[]) {
    test(c.name, async () => {
      const t = convexTest(schema, modules);
      for (const step of c.steps) {
        const changes = expand(step.apply);
        if (step.error) {
          await expect(t.mutation(mirror.apply, { changes })).rejects.toThrow(step.error);
        } else {
          expect(await t.mutation(mirror.apply, { changes })).toEqual(step.expect);
        }
      }
      for (const [table, rows] of Object.entries(c.state ?? {})) {
        const docs = (await pageAll(t, table, 1000)).flat();
        expect(docs).toEqual(rows);
      }
      for (const [table, count] of Object.entries(c.counts ?? {})) {
        expect((await pageAll(t, table, 1000)).flat()).toHaveLength(count as number);
      }
      if (c.pages) {
        const pages = await pageAll(t, c.pages.table, c.pages.numItems);
        const ids = pages.map((p) => p.map((d: any) => d.id)).filter((p) => p.length > 0);
        expect(ids).toEqual(c.pages.ids);
      }
    });
  }
});

describe("mirror (the module alone)", () => {
  test("a snapshot of a table that is not mirrored is refused", async () => {
    const t = convexTest(schema, modules);
    await expect(
      t.query(mirror.snapshot, { table: "refresh_tokens", cursor: null, numItems: 10 }),
    ).rejects.toThrow("is not mirrored");
  });
});
