// Pieces every screen uses: the driver's context and a hook that re-renders
// on every change, a confirmation dialog, an error line, copy and QR code.

import { createContext, type ComponentChildren } from "preact";
import { useContext, useEffect, useRef, useState } from "preact/hooks";
import qrcode from "qrcode-generator";
import type { Driver } from "../driver.ts";
import type { View } from "../model.ts";

export const DriverContext = createContext<Driver | undefined>(undefined);

/** The driver, re-rendering the caller after every change it makes. */
export function useDriver(): Driver {
  const driver = useContext(DriverContext);
  if (driver === undefined) throw new Error("no driver");
  const [, setTick] = useState(0);
  useEffect(() => driver.subscribe(() => setTick((t) => t + 1)), [driver]);
  return driver;
}

/** `session` as the page shows it, or undefined if this device no longer holds it. */
export function viewOf(driver: Driver, session: string): View | undefined {
  try {
    return JSON.parse(driver.device.view(session)) as View;
  } catch {
    return undefined;
  }
}

/** Go to a screen: the part of the address after `#`. */
export function go(fragment: string): void {
  location.hash = fragment;
}

/**
 * Run an action that may be refused; `error` is what to show, in words.
 * Returns `[run, busy, error, clearError]`.
 */
export function useAction(): [(act: () => Promise<unknown> | unknown) => Promise<boolean>, boolean, string | undefined, () => void] {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const run = async (act: () => Promise<unknown> | unknown) => {
    setBusy(true);
    setError(undefined);
    try {
      await act();
      return true;
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      return false;
    } finally {
      setBusy(false);
    }
  };
  return [run, busy, error, () => setError(undefined)];
}

export function ErrorLine({ error }: { error: string | undefined }) {
  if (error === undefined) return null;
  return (
    <p class="error" role="alert">
      {sentence(error)}
    </p>
  );
}

/** A message from the machine as a sentence: a capital first, a full stop last. */
export function sentence(text: string): string {
  const t = text.trim();
  const capital = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

/**
 * A modal dialog (the browser's own `<dialog>`: focus stays inside, Escape
 * closes it). `onClose` is called however it closes.
 */
export function Dialog(props: { title: string; onClose: () => void; children: ComponentChildren }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
    return () => dialog?.close();
  }, []);
  return (
    <dialog ref={ref} aria-label={props.title} onClose={props.onClose}>
      <h2>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

/** A button that asks first: the dialog names what will happen, in words. */
export function Confirm(props: {
  label: string;
  title: string;
  confirm: string;
  children: ComponentChildren;
  onConfirm: () => Promise<unknown> | unknown;
  danger?: boolean;
  disabled?: boolean;
}) {
  const [open, setOpen] = useState(false);
  const [run, busy, error] = useAction();
  return (
    <>
      <button type="button" class={props.danger ? "danger" : undefined} disabled={props.disabled} onClick={() => setOpen(true)}>
        {props.label}
      </button>
      {open && (
        <Dialog title={props.title} onClose={() => setOpen(false)}>
          {props.children}
          <ErrorLine error={error} />
          <div class="actions">
            <button type="button" onClick={() => setOpen(false)}>
              Cancel
            </button>
            <button
              type="button"
              class={props.danger ? "danger" : "primary"}
              disabled={busy}
              onClick={async () => {
                if (await run(props.onConfirm)) setOpen(false);
              }}
            >
              {props.confirm}
            </button>
          </div>
        </Dialog>
      )}
    </>
  );
}

/** Copy `text` to the clipboard, saying so. */
export function CopyButton({ text, label }: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      onClick={async () => {
        await navigator.clipboard.writeText(text).catch(() => undefined);
        setDone(true);
        setTimeout(() => setDone(false), 2000);
      }}
    >
      {done ? "Copied" : label}
    </button>
  );
}

/** `text` as a QR code, drawn in SVG (no image, no third party). */
export function QrCode({ text, label }: { text: string; label: string }) {
  const qr = qrcode(0, "M");
  qr.addData(text);
  qr.make();
  const n = qr.getModuleCount();
  const cells: string[] = [];
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < n; c++) if (qr.isDark(r, c)) cells.push(`M${c + 4},${r + 4}h1v1h-1z`);
  }
  return (
    <svg class="qr" viewBox={`0 0 ${n + 8} ${n + 8}`} role="img" aria-label={label}>
      <rect width={n + 8} height={n + 8} fill="#fff" />
      <path d={cells.join("")} fill="#000" />
    </svg>
  );
}

/** Save `content` (text, or bytes in parts) as a file the person downloads. */
export function download(name: string, content: string | BlobPart[], type: string): void {
  const url = URL.createObjectURL(new Blob(typeof content === "string" ? [content] : content, { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A safety code as people read it aloud: groups of digits. */
export function Code({ code }: { code: string }) {
  // Each group of digits stays whole; a narrow screen breaks between groups.
  const groups = code.split(" ");
  return (
    <span class="code">
      {groups.map((g, i) => (
        <span key={i}>
          {g}
          {i < groups.length - 1 ? " " : ""}
        </span>
      ))}
    </span>
  );
}
