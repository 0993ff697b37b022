// Where the bytes of a WebAssembly module go: its sections, and the size of
// each function body in the code section, named from the module's `name`
// section (which the shipped caucus-*.wasm carries: wasm-bindgen keeps it),
// grouped by the crate that the function's (demangled) path starts with.
// A small reader of the binary format, enough for this; no dependency.
//
//   node web/bench/wasm-size.mjs [FILE.wasm]   (default: the one in web/dist)
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const SECTIONS = ["custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "datacount"];

/** A cursor over `bytes` reading LEB128 integers and names. */
function reader(bytes, at = 0) {
  const r = {
    at,
    u32() {
      let value = 0;
      let shift = 0;
      let byte;
      do {
        byte = bytes[r.at++];
        value += (byte & 0x7f) * 2 ** shift;
        shift += 7;
      } while (byte & 0x80);
      return value;
    },
    name() {
      const n = r.u32();
      const s = Buffer.from(bytes.subarray(r.at, r.at + n)).toString("utf8");
      r.at += n;
      return s;
    },
  };
  return r;
}

/** The crate a demangled function name belongs to: `serde_json::de::…` → `serde_json`, `<T as core::…>` → `core`. */
export function crateOf(name) {
  let s = name.replace(/^<+/, "").replace(/^(impl |dyn |&|mut |\[|\()+/, "");
  // `<A as B>::f` belongs to the type's crate when it is a path, else B's.
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(\[[0-9a-f]+\])?::/.exec(s);
  if (m) return m[1];
  if (/^(u8|u16|u32|u64|usize|i8|i16|i32|i64|isize|f32|f64|bool|char|str)\b/.test(s)) {
    const as = / as ([A-Za-z_][A-Za-z0-9_]*)::/.exec(s);
    return as ? as[1] : "core";
  }
  if (s.startsWith("ring_core_")) return "ring";
  if (/^(__wbg|__wbindgen|wasm_bindgen)/.test(s)) return "wasm_bindgen";
  if (/^(memcpy|memset|memmove|memcmp|__rust|__rdl|__rg|rust_|dlmalloc|__multi|__divti|__udivti|__umodti|__ashl|__lshr)/.test(s)) return "compiler runtime";
  return "(other)";
}

/** Sections (name → bytes, custom sections by their own name) and every function body with its name and size. */
export function wasmBreakdown(bytes) {
  const sections = [];
  const r = reader(bytes, 8);
  let code;
  let names;
  let imported = 0;
  while (r.at < bytes.length) {
    const id = bytes[r.at++];
    const size = r.u32();
    const start = r.at;
    let name = SECTIONS[id] ?? `section ${id}`;
    if (id === 0) name = `custom "${reader(bytes, start).name()}"`;
    if (name === 'custom "name"') names = { start, end: start + size };
    if (id === 10) code = { start, end: start + size };
    if (id === 2) {
      const s = reader(bytes, start);
      for (let n = s.u32(); n > 0; n--) {
        s.name();
        s.name();
        const kind = bytes[s.at++];
        if (kind === 0) {
          imported += 1;
          s.u32();
        } else if (kind === 1) {
          s.at += 1;
          const flags = bytes[s.at++];
          s.u32();
          if (flags & 1) s.u32();
        } else if (kind === 2) {
          const flags = bytes[s.at++];
          s.u32();
          if (flags & 1) s.u32();
        } else if (kind === 3) {
          s.at += 2;
        } else {
          s.u32();
        }
      }
    }
    sections.push({ name, bytes: size });
    r.at = start + size;
  }
  // Function names: subsection 1 of the name section, by function index.
  const fnNames = new Map();
  if (names) {
    const s = reader(bytes, names.start);
    s.name(); // "name"
    while (s.at < names.end) {
      const sub = bytes[s.at++];
      const len = s.u32();
      const next = s.at + len;
      if (sub === 1) {
        for (let n = s.u32(); n > 0; n--) {
          const index = s.u32();
          fnNames.set(index, s.name());
        }
      }
      s.at = next;
    }
  }
  const functions = [];
  if (code) {
    const s = reader(bytes, code.start);
    const count = s.u32();
    for (let i = 0; i < count; i++) {
      const size = s.u32();
      const index = imported + i;
      functions.push({ name: fnNames.get(index) ?? `function[${index}]`, bytes: size });
      s.at += size;
    }
  }
  const crates = new Map();
  for (const f of functions) {
    const c = crateOf(f.name);
    const held = crates.get(c) ?? { crate: c, bytes: 0, functions: 0 };
    held.bytes += f.bytes;
    held.functions += 1;
    crates.set(c, held);
  }
  return {
    total: bytes.length,
    sections: sections.sort((a, b) => b.bytes - a.bytes),
    functions: functions.sort((a, b) => b.bytes - a.bytes),
    crates: [...crates.values()].sort((a, b) => b.bytes - a.bytes),
  };
}

/** The module without its custom section `name` (e.g. "name": what `wasm-bindgen --remove-name-section` leaves). */
export function withoutCustomSection(bytes, name) {
  const kept = [bytes.subarray(0, 8)];
  const r = reader(bytes, 8);
  while (r.at < bytes.length) {
    const begin = r.at;
    const id = bytes[r.at++];
    const size = r.u32();
    const end = r.at + size;
    if (!(id === 0 && reader(bytes, r.at).name() === name)) kept.push(bytes.subarray(begin, end));
    r.at = end;
  }
  return Buffer.concat(kept);
}

const pct = (n, total) => `${((100 * n) / total).toFixed(1)} %`;

/** The breakdown as lines of text: sections, the largest crates and functions. */
export function describeWasm(bytes, { top = 12 } = {}) {
  const b = wasmBreakdown(bytes);
  const lines = [`${b.total} bytes, ${b.functions.length} functions`, "sections:"];
  for (const s of b.sections) lines.push(`  ${s.name.padEnd(28)} ${String(s.bytes).padStart(9)}  ${pct(s.bytes, b.total)}`);
  lines.push("code by crate (function bodies):");
  for (const c of b.crates.slice(0, top)) {
    lines.push(`  ${c.crate.padEnd(28)} ${String(c.bytes).padStart(9)}  ${pct(c.bytes, b.total)}  (${c.functions} functions)`);
  }
  lines.push("largest functions:");
  for (const f of b.functions.slice(0, top)) {
    const name = f.name.length > 100 ? `${f.name.slice(0, 97)}...` : f.name;
    lines.push(`  ${String(f.bytes).padStart(7)}  ${name}`);
  }
  return lines.join("\n");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dist = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "assets");
  const file = process.argv[2] ?? path.join(dist, readdirSync(dist).find((f) => f.endsWith(".wasm")));
  const bytes = readFileSync(file);
  console.log(describeWasm(bytes, { top: Number(process.env.TOP ?? 20) }));
  const zlib = await import("node:zlib");
  const sizes = (b) => {
    const br = zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 11, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length } });
    return `raw ${b.length}, gzip -9 ${zlib.gzipSync(b, { level: 9 }).length}, brotli 11 ${br.length}`;
  };
  console.log(`as shipped:              ${sizes(bytes)}`);
  console.log(`without the name section: ${sizes(withoutCustomSection(bytes, "name"))}`);
}
