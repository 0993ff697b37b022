// The web client's entry: load the client machine (WebAssembly), open this
// browser's device, connect it to the relay that served the page, and show
// the screen the address asks for:
//
//   #caucus:invite:v1:…   an invitation (the secret never leaves the browser)
//   #session=ID           a mediation this device holds, or one that ended
//   #new                  a mediator starts a mediation
//   #verify               check a signed agreement, offline
//   (nothing)             the start page

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import init from "../pkg/caucus_web.js";
import { Driver } from "./driver.ts";
import { VerifyPage } from "./ui/agreement.tsx";
import { DriverContext, useDriver, viewOf } from "./ui/common.tsx";
import { Ended, Home, NewSession } from "./ui/home.tsx";
import { Invited, WaitingRoom } from "./ui/join.tsx";
import { MediatorScreen } from "./ui/mediator.tsx";
import { PartyScreen } from "./ui/party.tsx";
import "./style.css";

declare const WASM_URL: string;

const INVITE = "caucus:invite:v1:";

/**
 * The relay this page talks to: the one that served it (its websocket on
 * the same host), unless `?relay=wss://…` in the page's address names
 * another — for the built client hosted as a plain folder by any web server
 * (docs/web.md). Invitation links made on such a page keep the `?relay=`.
 */
function relayUrl(): string {
  return new URLSearchParams(location.search).get("relay") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
}

/** This browser's database for `relay`: one device per relay. */
function databaseFor(relay: string): string {
  const own = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}`;
  return relay === own ? "caucus" : `caucus ${relay}`;
}

/**
 * The address after `#`. An invitation is taken out of the address bar at
 * once (kept in memory only), so it is not left in the history or on screen.
 */
function useRoute(): [string, string | undefined] {
  const read = (): [string, string | undefined] => {
    const fragment = decodeURIComponent(location.hash.slice(1));
    if (fragment.startsWith(INVITE)) {
      history.replaceState(null, "", "#invitation");
      return ["invitation", fragment];
    }
    return [fragment, undefined];
  };
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const changed = () => setRoute((old) => {
      const next = read();
      // Leaving for #invitation by replaceState keeps the link held.
      return next[0] === "invitation" && next[1] === undefined ? old : next;
    });
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return route;
}

function Screen() {
  const driver = useDriver();
  const [route, link] = useRoute();
  useEffect(() => window.scrollTo(0, 0), [route]);
  if (route === "verify") return <VerifyPage />;
  if (route === "new") return <NewSession driver={driver} />;
  if (route === "invitation") {
    return link ? <Invited driver={driver} link={link} /> : <Home driver={driver} />;
  }
  if (route.startsWith("session=")) {
    const session = route.slice("session=".length);
    const view = viewOf(driver, session);
    if (view === undefined || view.membership === "closed") return <Ended driver={driver} session={session} view={view} />;
    if (view.membership === "knocking" || view.membership === "waiting") return <WaitingRoom driver={driver} view={view} />;
    if (view.me.role === "party_member") return <PartyScreen driver={driver} view={view} />;
    return <MediatorScreen driver={driver} view={view} />;
  }
  return <Home driver={driver} />;
}

/** For keyboards and screen readers: straight to the screen's content (not a `#` link: the address is the route). */
function SkipLink() {
  return (
    <a
      class="skip"
      href=""
      onClick={(e) => {
        e.preventDefault();
        const main = document.getElementById("main");
        main?.setAttribute("tabindex", "-1");
        main?.focus();
      }}
    >
      Skip to the content
    </a>
  );
}

/**
 * Hold this browser's device for as long as the page lives: two tabs running
 * one device would seal two messages with the same place in its chain (the
 * native client's directory lock, here a Web Lock). False if another tab
 * holds it.
 */
function holdDevice(database: string): Promise<boolean> {
  if (navigator.locks === undefined) return Promise.resolve(true);
  return new Promise((resolve) => {
    void navigator.locks.request(database, { ifAvailable: true }, (lock) => {
      resolve(lock !== null);
      // Never settles: the lock is released when the page goes.
      return lock === null ? undefined : new Promise<never>(() => undefined);
    });
  });
}

async function start(root: HTMLElement): Promise<void> {
  try {
    await init({ module_or_path: WASM_URL });
    // Ask the browser to keep this site's storage: the device's keys live there.
    await navigator.storage?.persist?.().catch(() => false);
    const relay = relayUrl();
    const database = databaseFor(relay);
    if (!(await holdDevice(database))) {
      root.textContent =
        "Caucus is already open in another tab or window of this browser. Use that one, or close it and reload this page.";
      return;
    }
    const driver = await Driver.open(relay, database);
    root.textContent = "";
    render(
      <DriverContext.Provider value={driver}>
        <SkipLink />
        <Screen />
      </DriverContext.Provider>,
      root,
    );
    root.dataset.ready = "true";
  } catch (e) {
    root.textContent = `Caucus could not start in this browser: ${e instanceof Error ? e.message : String(e)}`;
  }
}

const root = document.getElementById("app");
if (root) void start(root);
