// The storage tests' page (tests/storage.test.mjs): the client machine
// (`Device`), its browser driver and its IndexedDB store, exactly as the web
// client bundles them, handed to the test on `window.caucus`. The shipped
// bundle exposes nothing on `window`; this page is built at test time and
// never shipped.
import init, { Device } from "../../pkg/caucus_web.js";
import { Driver } from "../../app/driver.ts";
import { Store } from "../../app/store.ts";

/** Where the test put the WebAssembly module, beside this page. */
declare const WASM_URL: string;

declare global {
  interface Window {
    caucus: { Device: typeof Device; Driver: typeof Driver; Store: typeof Store };
  }
}

await init({ module_or_path: WASM_URL });
window.caucus = { Device, Driver, Store };
document.body.dataset.ready = "true";
