// Build the client machine for the browser: compile `caucus-web` to
// wasm32 and generate its JavaScript bindings into `web/pkg/`. Needs the
// wasm32-unknown-unknown target, clang (for ring) and `wasm-bindgen` of the
// version pinned in web/Cargo.toml (`.ci/run` installs all three).
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import path from "node:path";

const web = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(web, "..");
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: "inherit" });
// Where cargo puts what it builds: `CARGO_TARGET_DIR` if set, as cargo has it.
const target = path.resolve(root, process.env.CARGO_TARGET_DIR ?? "target");

run("cargo", ["build", "--locked", "--release", "-p", "caucus-web", "--target", "wasm32-unknown-unknown"]);
run("wasm-bindgen", [
  "--target", "web",
  "--out-dir", path.join(web, "pkg"),
  path.join(target, "wasm32-unknown-unknown/release/caucus_web.wasm"),
]);
// The relay the browser tests talk to.
run("cargo", ["build", "--locked", "-p", "caucus-server"]);
