// Properties of the browser's OT (web/ot.js) on random documents and operations: transform
// converges, compose equals applying in turn, diff rebuilds the target. Seeded; bounded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { TextOp, diff } from "../web/ot.js";

function rng(seed) {
  let s = seed >>> 0;
  return () => { s = (s * 1664525 + 1013904223) >>> 0; return s / 2 ** 32; };
}
const alphabet = "abcdé€ \n";
function randomString(r, n) {
  let out = "";
  for (let i = 0; i < n; i++) out += alphabet[Math.floor(r() * alphabet.length)];
  return out;
}
function randomOp(r, doc) {
  const op = new TextOp();
  let left = doc.length;
  while (left > 0) {
    const n = 1 + Math.floor(r() * Math.min(left, 5));
    const k = r();
    if (k < 0.2) op.insert(randomString(r, 1 + Math.floor(r() * 4)));
    else if (k < 0.5) { op.delete(n); left -= n; }
    else { op.retain(n); left -= n; }
  }
  if (r() < 0.3) op.insert(randomString(r, 2));
  return op;
}

test("transform converges and compose matches sequential application", () => {
  const r = rng(42);
  for (let i = 0; i < 2000; i++) {
    const doc = randomString(r, Math.floor(r() * 20));
    const a = randomOp(r, doc), b = randomOp(r, doc);
    const [a2, b2] = TextOp.transform(a, b);
    assert.equal(b2.apply(a.apply(doc)), a2.apply(b.apply(doc)), `doc=${JSON.stringify(doc)} a=${JSON.stringify(a)} b=${JSON.stringify(b)}`);
    const c = randomOp(r, a.apply(doc));
    assert.equal(a.compose(c).apply(doc), c.apply(a.apply(doc)));
    const target = randomString(r, Math.floor(r() * 20));
    assert.equal(diff(doc, target).apply(doc), target);
  }
});

test("ties: the first operation's insert goes first; JSON round-trips", () => {
  const a = TextOp.fromJSON([2, "X", 1]);
  const b = TextOp.fromJSON([2, "Y", 1]);
  const [a2, b2] = TextOp.transform(a, b);
  assert.equal(b2.apply(a.apply("abc")), "abXYc");
  assert.equal(a2.apply(b.apply("abc")), "abXYc");
  assert.deepEqual(TextOp.fromJSON([3, "ab", -2, 5]).toJSON(), [3, "ab", -2, 5]);
  assert.throws(() => a.apply("too long"));
});
