/** "Did you mean": the known names closest to a mistyped one. */

/** Optimal string alignment distance: insertions, deletions, substitutions and swaps of two neighbours, each 1. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidates nearest to `word`, if near enough to be a typo: at most 1
 * edit for words up to 4 characters, 2 up to 8, 3 beyond. A candidate that
 * `word` is the start of (`--pass` for `--password-stdin`) counts too.
 */
export function suggestions(word: string, candidates: Iterable<string>): string[] {
  const w = word.toLowerCase();
  const limit = w.length <= 4 ? 1 : w.length <= 8 ? 2 : 3;
  let best = Infinity;
  let found: string[] = [];
  for (const c of new Set(candidates)) {
    const dist = c.startsWith(w) && w.length >= 3 ? 1 : editDistance(w, c.toLowerCase());
    if (dist > limit || dist > best) continue;
    if (dist < best) {
      best = dist;
      found = [];
    }
    found.push(c);
  }
  return found;
}

/** `did you mean "x"?` (or `"x" or "y"`), or null when nothing is near. */
export function didYouMean(word: string, candidates: Iterable<string>): string | null {
  const s = suggestions(word, candidates).slice(0, 3);
  if (s.length === 0) return null;
  return `did you mean ${s.map((c) => `"${c}"`).join(" or ")}?`;
}
