// Documents in a room: what each is (title, file name, size and kind in
// words, who added it), downloading it with its progress, adding one (a
// file over the limit refused at once, with the machine's sentence, before
// any of it is read or sent), and the uploads on their way. Every check of
// a document is the machine's: the page reads files and saves what the
// machine has checked.

import { useState } from "preact/hooks";
import { checkDocumentSize, formatSize } from "../../pkg/caucus_web.js";
import { type Driver, Stopped, type Uploading } from "../driver.ts";
import { type DocumentInfo, type RoomView, type View, kindOfFile, titleOf } from "../model.ts";
import { ErrorLine, download } from "./common.tsx";

/** Title, file name, size and kind of a document, and its Download button. */
export function DocumentDetails({ driver, view, message, document: d }: { driver: Driver; view: View; message: string; document: DocumentInfo }) {
  return (
    <>
      <p class="text title">{d.title}</p>
      <p class="file">
        {d.name} · {formatSize(d.size)} · {kindOfFile(d.media_type)}
      </p>
      <DownloadButton driver={driver} view={view} message={message} document={d} />
    </>
  );
}

function DownloadButton({ driver, view, message, document: d }: { driver: Driver; view: View; message: string; document: DocumentInfo }) {
  const [error, setError] = useState<string>();
  const op = [...driver.downloading.values()].find((x) => x.session === view.session && x.message === message)?.op;
  const progress = op === undefined ? undefined : driver.progress(op);
  const start = () => {
    setError(undefined);
    driver.download(view.session, message).then(
      (parts) => download(d.name, parts as BlobPart[], d.media_type),
      (e: unknown) => {
        if (!(e instanceof Stopped)) setError(`This document could not be checked and was not saved: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
  };
  return (
    <>
      {op === undefined ? (
        <button type="button" onClick={start} aria-label={`Download ${d.title}`}>
          Download
        </button>
      ) : (
        <>
          <Progress label={`Downloading ${d.title}`} transfer={progress} words="downloading…" />
          <button type="button" onClick={() => driver.stopTransfer(op)} aria-label={`Stop downloading ${d.title}`}>
            Stop
          </button>
        </>
      )}
      <ErrorLine error={error} />
    </>
  );
}

/** A progress bar, with how far it has got in words. */
function Progress({ label, transfer, words }: { label: string; transfer: { done: number; total: number } | undefined; words: string }) {
  const done = transfer?.done ?? 0;
  const total = Math.max(transfer?.total ?? 1, 1);
  return (
    <p class="progress">
      <progress value={done} max={total} aria-label={label} />{" "}
      <span>
        {words} {formatSize(done)} of {formatSize(total)}
      </span>
    </p>
  );
}

/** A document on its way to the relay, in the room it goes to. */
export function UploadingEntry({ driver, upload }: { driver: Driver; upload: Uploading }) {
  const transfer = driver.progress(upload.op);
  return (
    <li class="message mine document sending">
      <p class="meta">You · sending…</p>
      <p class="text title">{upload.title}</p>
      <p class="file">
        {upload.name} · {formatSize(upload.size)}
      </p>
      <Progress label={`Sending ${upload.title}`} transfer={transfer} words={driver.connected ? "sent" : "waiting for the connection:"} />
      <button type="button" onClick={() => driver.stopTransfer(upload.op)} aria-label={`Stop sending ${upload.title}`}>
        Stop sending
      </button>
    </li>
  );
}

/**
 * "Add a document": choose a file; its title (the file's name without its
 * extension unless changed); in a party's private room, who may read it.
 */
export function AddDocument({ driver, view, room }: { driver: Driver; view: View; room: RoomView }) {
  const [file, setFile] = useState<File>();
  const [title, setTitle] = useState("");
  const [mayShare, setMayShare] = useState(false);
  const [error, setError] = useState<string>();
  const party = view.me.role === "party_member" && room.kind === "private";
  const id = `document-${room.id}`;
  const pending = pendingUploads(driver, view);
  return (
    <form
      class="add-document"
      onSubmit={(ev) => {
        ev.preventDefault();
        if (file === undefined) return;
        setError(undefined);
        const form = ev.currentTarget;
        // Shown as sending (with its progress) from the moment the machine
        // has it; the form is free again at once.
        driver
          .addDocument(view.session, room.id, file, title.trim() || titleOf(file.name), party ? mayShare : false)
          .catch((e: unknown) => {
            if (!(e instanceof Stopped)) setError(`Not sent: ${e instanceof Error ? e.message : String(e)}`);
          });
        form.reset();
        setFile(undefined);
        setTitle("");
        setMayShare(false);
      }}
    >
      <h3>Add a document</h3>
      {pending.map((p) => (
        <p class="hint" key={p.sha256}>
          Sending “{p.title}” ({p.name}) did not finish. Choose the same file again to finish sending it.
        </p>
      ))}
      <label for={`${id}-file`}>Choose a file</label>
      <input
        id={`${id}-file`}
        type="file"
        onChange={(ev) => {
          const chosen = (ev.target as HTMLInputElement).files?.[0];
          setError(undefined);
          setFile(undefined);
          if (chosen === undefined) return;
          try {
            // Refused at once, before any of it is read or sent.
            checkDocumentSize(chosen.name, chosen.size);
          } catch (e) {
            setError(`This file cannot be added: ${e instanceof Error ? e.message : String(e)}`);
            return;
          }
          setFile(chosen);
          setTitle(titleOf(chosen.name));
        }}
      />
      {file && (
        <>
          <label for={`${id}-title`}>Title</label>
          <input id={`${id}-title`} value={title} onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />
          {party && (
            <fieldset class="sharing">
              <legend>Who may read it</legend>
              <label>
                <input type="radio" name={`document-sharing-${room.id}`} checked={!mayShare} onChange={() => setMayShare(false)} /> For the mediator only
              </label>
              <label>
                <input type="radio" name={`document-sharing-${room.id}`} checked={mayShare} onChange={() => setMayShare(true)} /> The mediator may share it with the other side
              </label>
            </fieldset>
          )}
        </>
      )}
      <ErrorLine error={error} />
      <button type="submit" class="primary" disabled={file === undefined}>
        Add the document
      </button>
    </form>
  );
}

/** Uploads this device began in `view`'s session and did not finish, and is not sending now. */
function pendingUploads(driver: Driver, view: View): DocumentInfo[] {
  const sending = new Set([...driver.uploading.values()].map((u) => u.sha256));
  return (JSON.parse(driver.device.pendingUploads(view.session)) as DocumentInfo[]).filter((p) => !sending.has(p.sha256));
}

/** Choose a file to stand for a document (the mediator's own version): the file and its title. */
export function ChooseFile({ idPrefix, onChosen }: { idPrefix: string; onChosen: (chosen: { file: File; title: string } | undefined) => void }) {
  const [file, setFile] = useState<File>();
  const [title, setTitle] = useState("");
  const [refused, setRefused] = useState<string>();
  return (
    <>
      <label for={`${idPrefix}-file`}>Your version (a redacted copy, a summary)</label>
      <input
        id={`${idPrefix}-file`}
        type="file"
        onChange={(ev) => {
          const chosen = (ev.target as HTMLInputElement).files?.[0];
          setRefused(undefined);
          setFile(undefined);
          onChosen(undefined);
          if (chosen === undefined) return;
          try {
            checkDocumentSize(chosen.name, chosen.size);
          } catch (e) {
            setRefused(`This file cannot be shared: ${e instanceof Error ? e.message : String(e)}`);
            return;
          }
          setFile(chosen);
          setTitle(titleOf(chosen.name));
          onChosen({ file: chosen, title: titleOf(chosen.name) });
        }}
      />
      {file && (
        <>
          <label for={`${idPrefix}-title`}>Its title</label>
          <input
            id={`${idPrefix}-title`}
            value={title}
            onInput={(e) => {
              const t = (e.target as HTMLInputElement).value;
              setTitle(t);
              onChosen({ file, title: t.trim() || titleOf(file.name) });
            }}
          />
        </>
      )}
      <ErrorLine error={refused} />
    </>
  );
}
