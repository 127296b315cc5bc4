/**
 * Imports run down the layers (docs/DESIGN.md §10): every `import`,
 * `import type`, `export … from` and `import("…")` in src/ is read, each
 * file is given its layer, and the test fails naming every import from a
 * lower layer to a higher one and every import cycle, between folders or
 * between files. ALLOWED lists the edges tolerated for now, each with its
 * reason; an entry whose import is gone fails the test too, so the list can
 * only shrink.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(import.meta.dir, "..");
const SRC = join(ROOT, "src");

/** Low to high. A file may import from its own layer or any lower one. */
const LAYERS: { name: string; members: string[] }[] = [
  { name: "base", members: ["errors.ts", "bytes.ts", "text.ts", "suggest.ts", "version.ts", "password.ts", "log.ts", "time.ts"] },
  { name: "crypto", members: ["crypto/", "fingerprint.ts", "paths.ts"] },
  { name: "protocol", members: ["protocol/"] },
  { name: "net/store/transcript", members: ["net/", "store/", "transcript/"] },
  { name: "server/client", members: ["server/", "client/"] },
  { name: "commands", members: ["commands/"] },
  { name: "cli", members: ["cli.ts", "main.ts"] },
];

/** `from -> to` (paths under src/) tolerated for now, with why. The goal is none. */
const ALLOWED: Record<string, string> = {};

/** The unit a cycle is counted between: a top folder of src/ (`client/`), or a top-level file. */
function unitOf(file: string): string {
  const slash = file.indexOf("/");
  return slash < 0 ? file : file.slice(0, slash + 1);
}

function layerOf(file: string): number {
  const i = LAYERS.findIndex((l) => l.members.includes(unitOf(file)));
  if (i < 0) throw new Error(`${file} has no layer: add its folder or file to LAYERS`);
  return i;
}

const STATIC = /^[ \t]*(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,?\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?)?\s*(?:from\s*)?["']([^"']+)["']/gm;
const DYNAMIC = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The specifiers a source file imports, type-only ones included; comments are not read. */
function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^[ \t]*\/\/.*$/gm, "");
  return [...code.matchAll(STATIC), ...code.matchAll(DYNAMIC)].map((m) => m[1]!);
}

function sourceFiles(): string[] {
  return [...new Bun.Glob("**/*.ts").scanSync({ cwd: SRC })].sort();
}

type Edge = { from: string; to: string };

function edges(): Edge[] {
  const out: Edge[] = [];
  for (const from of sourceFiles()) {
    for (const spec of importsOf(readFileSync(join(SRC, from), "utf8"))) {
      if (!spec.startsWith(".")) continue;
      const to = relative(SRC, resolve(SRC, dirname(from), spec)).replaceAll("\\", "/");
      out.push({ from, to });
    }
  }
  return out;
}

const key = (e: Edge) => `${e.from} -> ${e.to}`;

/** Strongly connected components with more than one node (Tarjan). */
function cycles(pairs: [string, string][]): string[][] {
  const next = new Map<string, string[]>();
  for (const [a, b] of pairs) {
    if (a === b) continue;
    next.set(a, [...(next.get(a) ?? []), b]);
    if (!next.has(b)) next.set(b, []);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) found.push(scc.sort());
    }
  };
  for (const v of [...next.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

describe("imports run down the layers", () => {
  const all = edges();
  const checked = all.filter((e) => !Object.hasOwn(ALLOWED, key(e)));

  test("the import reader sees every import Bun sees, and type-only and multi-line ones", () => {
    const transpiler = new Bun.Transpiler({ loader: "ts" });
    for (const file of sourceFiles()) {
      const source = readFileSync(join(SRC, file), "utf8").replace(/^#!.*/, "");
      const ours = new Set(importsOf(source));
      const missed = transpiler.scanImports(source).filter((i) => !ours.has(i.path));
      expect({ file, missed }).toEqual({ file, missed: [] });
    }
    const sample = `import type { A } from "./a.ts";\nimport {\n  b,\n  type C,\n} from "../b.ts";\nexport * from "./c.ts";\nexport { d } from "./d.ts";\nimport "./e.ts";\nconst f = await import("./f.ts");\n// import { g } from "./g.ts";\n/* import("./h.ts") */\n`;
    expect(importsOf(sample).sort()).toEqual(["../b.ts", "./a.ts", "./c.ts", "./d.ts", "./e.ts", "./f.ts"]);
  });

  test("every file in src/ has a layer", () => {
    for (const file of sourceFiles()) expect(() => layerOf(file)).not.toThrow();
  });

  test("no import from a lower layer to a higher one", () => {
    const upward = checked
      .filter((e) => layerOf(e.from) < layerOf(e.to))
      .map((e) => `${key(e)} (${LAYERS[layerOf(e.from)]!.name} imports ${LAYERS[layerOf(e.to)]!.name})`);
    expect(upward).toEqual([]);
  });

  test("no import cycle between folders", () => {
    expect(cycles(checked.map((e) => [unitOf(e.from), unitOf(e.to)]))).toEqual([]);
  });

  test("no import cycle between files", () => {
    expect(cycles(checked.map((e) => [e.from, e.to]))).toEqual([]);
  });

  test("every allowed edge still exists, so the list only shrinks", () => {
    const present = new Set(all.map(key));
    expect(Object.keys(ALLOWED).filter((k) => !present.has(k))).toEqual([]);
  });
});
