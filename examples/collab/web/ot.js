// Operational transformation for plain text, the browser half (the server half is ../ot.h).
// An operation is a list of components walking the whole document: n > 0 retains n characters,
// a string inserts it, n < 0 deletes -n characters. Lengths are JavaScript string lengths.

export class TextOp {
  constructor() {
    this.ops = [];
    this.baseLength = 0;
    this.targetLength = 0;
  }
  static fromJSON(list) {
    const op = new TextOp();
    for (const c of list) {
      if (typeof c === "string") op.insert(c);
      else if (c > 0) op.retain(c);
      else if (c < 0) op.delete(-c);
    }
    return op;
  }
  toJSON() { return this.ops; }
  retain(n) {
    if (n <= 0) return this;
    this.baseLength += n;
    this.targetLength += n;
    const last = this.ops.length - 1;
    if (last >= 0 && typeof this.ops[last] === "number" && this.ops[last] > 0) this.ops[last] += n;
    else this.ops.push(n);
    return this;
  }
  insert(s) {
    if (!s) return this;
    this.targetLength += s.length;
    const ops = this.ops;
    const last = ops.length - 1;
    if (last >= 0 && typeof ops[last] === "string") ops[last] += s;
    else if (last >= 0 && typeof ops[last] === "number" && ops[last] < 0) {
      // Canonical order: insert before an adjacent delete.
      if (last >= 1 && typeof ops[last - 1] === "string") ops[last - 1] += s;
      else ops.splice(last, 0, s);
    } else ops.push(s);
    return this;
  }
  delete(n) {
    if (n <= 0) return this;
    this.baseLength += n;
    const last = this.ops.length - 1;
    if (last >= 0 && typeof this.ops[last] === "number" && this.ops[last] < 0) this.ops[last] -= n;
    else this.ops.push(-n);
    return this;
  }
  isNoop() { return this.ops.length === 0 || (this.ops.length === 1 && this.ops[0] > 0); }
  apply(doc) {
    if (doc.length !== this.baseLength) throw new Error("operation does not fit the document");
    let out = "";
    let pos = 0;
    for (const c of this.ops) {
      if (typeof c === "string") out += c;
      else if (c > 0) { out += doc.slice(pos, pos + c); pos += c; }
      else pos -= c;
    }
    return out;
  }
  // this then other, as one operation.
  compose(other) {
    if (this.targetLength !== other.baseLength) throw new Error("cannot compose: lengths differ");
    const out = new TextOp();
    const a = this.ops.slice();
    const b = other.ops.slice();
    let i = 0, j = 0;
    let x = a[i++], y = b[j++];
    while (x !== undefined || y !== undefined) {
      if (typeof x === "number" && x < 0) { out.delete(-x); x = a[i++]; continue; }
      if (typeof y === "string") { out.insert(y); y = b[j++]; continue; }
      if (x === undefined || y === undefined) throw new Error("cannot compose: too short");
      if (typeof x === "number" && x > 0 && typeof y === "number" && y > 0) {
        const m = Math.min(x, y);
        out.retain(m);
        x = x === m ? a[i++] : x - m;
        y = y === m ? b[j++] : y - m;
      } else if (typeof x === "string" && typeof y === "number" && y < 0) {
        const m = Math.min(x.length, -y);
        x = x.length === m ? a[i++] : x.slice(m);
        y = -y === m ? b[j++] : y + m;
      } else if (typeof x === "string" && typeof y === "number" && y > 0) {
        const m = Math.min(x.length, y);
        out.insert(x.slice(0, m));
        x = x.length === m ? a[i++] : x.slice(m);
        y = y === m ? b[j++] : y - m;
      } else if (typeof x === "number" && x > 0 && typeof y === "number" && y < 0) {
        const m = Math.min(x, -y);
        out.delete(m);
        x = x === m ? a[i++] : x - m;
        y = -y === m ? b[j++] : y + m;
      } else throw new Error("cannot compose");
    }
    return out;
  }
  // [a', b'] with apply(apply(d, a), b') == apply(apply(d, b), a'); a's inserts win ties.
  static transform(a, b) {
    if (a.baseLength !== b.baseLength) throw new Error("cannot transform: lengths differ");
    const a2 = new TextOp(), b2 = new TextOp();
    const as = a.ops.slice(), bs = b.ops.slice();
    let i = 0, j = 0;
    let x = as[i++], y = bs[j++];
    while (x !== undefined || y !== undefined) {
      if (typeof x === "string") { a2.insert(x); b2.retain(x.length); x = as[i++]; continue; }
      if (typeof y === "string") { a2.retain(y.length); b2.insert(y); y = bs[j++]; continue; }
      if (x === undefined || y === undefined) throw new Error("cannot transform: too short");
      const lx = Math.abs(x), ly = Math.abs(y);
      const m = Math.min(lx, ly);
      if (x > 0 && y > 0) { a2.retain(m); b2.retain(m); }
      else if (x < 0 && y > 0) a2.delete(m);
      else if (x > 0 && y < 0) b2.delete(m);
      x = lx === m ? as[i++] : Math.sign(x) * (lx - m);
      y = ly === m ? bs[j++] : Math.sign(y) * (ly - m);
    }
    return [a2, b2];
  }
  // Where a caret at `index` ends up after this operation.
  transformIndex(index) {
    let pos = 0, out = index;
    for (const c of this.ops) {
      if (pos > index) break;
      if (typeof c === "string") out += c.length;
      else if (c > 0) pos += c;
      else { out -= Math.min(-c, index - pos); pos -= c; }
    }
    return out;
  }
}

// The operation turning `before` into `after` (one changed span: what typing and pasting make).
export function diff(before, after) {
  let start = 0;
  while (start < before.length && start < after.length && before[start] === after[start]) start++;
  let endB = before.length, endA = after.length;
  while (endB > start && endA > start && before[endB - 1] === after[endA - 1]) { endB--; endA--; }
  return new TextOp().retain(start).delete(endB - start).insert(after.slice(start, endA)).retain(before.length - endB);
}
