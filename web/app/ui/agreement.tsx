// The agreement: the mediator drafts it, every party member reads it with
// its reality-testing questions and signs it, the mediator countersigns, and
// everyone downloads a copy that verifies offline — on the verify page here,
// with no relay, or with `caucus agreement verify`.

import { useState } from "preact/hooks";
import { verifyAgreement } from "../../pkg/caucus_web.js";
import type { Driver } from "../driver.ts";
import {
  type AgreementView,
  type Attachment,
  type CaucusEvent,
  type View,
  heldDocuments,
  hexOf,
  latestDraft,
  nameOf,
} from "../model.ts";
import { Confirm, ErrorLine, download, go, useAction } from "./common.tsx";

export function AgreementPanel({ driver, view, events }: { driver: Driver; view: View; events: CaucusEvent[] }) {
  const mediator = view.me.role === "mediator";
  const draft = latestDraft(events);
  const concluded = view.agreement;
  const signatories = (view.parties ?? []).filter((p) => !p.withdrawn).flatMap((p) => p.members);
  const [run, busy, error] = useAction();
  return (
    <section class="agreement" aria-labelledby="agreement-title">
      <h2 id="agreement-title">Agreement</h2>
      {concluded ? (
        <Concluded agreement={concluded} />
      ) : draft ? (
        <>
          <h3>{draft.title}</h3>
          <pre class="terms">{draft.terms}</pre>
          {draft.checklist.length > 0 && (
            <>
              <h4>Before you sign, ask yourself</h4>
              <ul>
                {draft.checklist.map((q) => (
                  <li key={q}>{q}</li>
                ))}
              </ul>
            </>
          )}
          <Attachments attachments={draft.attachments} />
          <h4>Signatures</h4>
          <ul aria-label="Signatures">
            {signatories.map((p) => (
              <li key={p.device}>
                {p.device === view.me.device ? "You" : nameOf(view, p.device)}: {draft.signed.has(p.device) ? "signed" : "not signed yet"}
              </li>
            ))}
          </ul>
          {view.me.role === "party_member" && !draft.signed.has(view.me.device) && (
            <Confirm
              label="Sign the agreement"
              title="Sign this agreement?"
              confirm="Sign"
              onConfirm={() => driver.run((d, now) => d.signAgreement(view.session, draft.agreement, now))}
            >
              <p>
                You sign “{draft.title}” exactly as written above
                {draft.attachments.length > 0 ? ", with the attached documents named by their SHA-256," : ""} in good faith. Your signature is made on this device and
                everyone can check it.
              </p>
            </Confirm>
          )}
          {mediator && (
            <>
              <ErrorLine error={error} />
              <button
                type="button"
                class="primary"
                disabled={busy}
                onClick={() => run(() => driver.run((d, now) => d.countersign(view.session, draft.agreement, now)))}
              >
                Countersign and give everyone their copy
              </button>
            </>
          )}
        </>
      ) : (
        <p class="hint">{mediator ? "No agreement drafted yet." : "When the sides agree, the mediator drafts the agreement here for everyone to read and sign."}</p>
      )}
      {mediator && !concluded && <Propose driver={driver} view={view} events={events} />}
    </section>
  );
}

/** The documents an agreement attaches, each with the SHA-256 its signatures cover. */
function Attachments({ attachments }: { attachments: Attachment[] }) {
  if (attachments.length === 0) return null;
  return (
    <>
      <h4>Attached documents</h4>
      <p class="hint">
        The signatures cover each file's SHA-256: check your copy of a file with <code>sha256sum</code>.
      </p>
      <ul aria-label="Attached documents" class="attachments">
        {attachments.map((a) => (
          <li key={a.sha256}>
            <strong>{a.title}</strong> ({a.name}, {a.size.toLocaleString()} bytes)
            <br />
            SHA-256 <code class="hash">{hexOf(a.sha256)}</code>
          </li>
        ))}
      </ul>
    </>
  );
}

function Propose({ driver, view, events }: { driver: Driver; view: View; events: CaucusEvent[] }) {
  const [title, setTitle] = useState("");
  const [terms, setTerms] = useState("");
  const [attach, setAttach] = useState<string[]>([]);
  const held = heldDocuments(events);
  const [checklist, setChecklist] = useState(
    "Is this workable in practice?\nWhat happens if a term is not kept?\nIs there anything you have not said that matters?",
  );
  const [run, busy, error] = useAction();
  return (
    <details>
      <summary>Draft an agreement</summary>
      <form
        onSubmit={(ev) => {
          ev.preventDefault();
          run(() => driver.run((d, now) => d.proposeAgreement(view.session, title, terms, checklist.split("\n"), attach, now)));
        }}
      >
        <label for="agreement-title-input">Title</label>
        <input id="agreement-title-input" value={title} onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />
        <label for="agreement-terms">Terms</label>
        <textarea id="agreement-terms" rows={6} value={terms} onInput={(e) => setTerms((e.target as HTMLTextAreaElement).value)} />
        <label for="agreement-checklist">Reality-testing questions (one per line)</label>
        <textarea id="agreement-checklist" rows={3} value={checklist} onInput={(e) => setChecklist((e.target as HTMLTextAreaElement).value)} />
        {held.length > 0 && (
          <fieldset>
            <legend>Attach documents (the signatures cover each file's SHA-256)</legend>
            {held.map(({ message, document }) => (
              <label key={message}>
                <input
                  type="checkbox"
                  checked={attach.includes(message)}
                  onChange={(e) =>
                    setAttach((a) => ((e.target as HTMLInputElement).checked ? [...a, message] : a.filter((m) => m !== message)))
                  }
                />{" "}
                {document.title} ({document.name})
              </label>
            ))}
          </fieldset>
        )}
        <ErrorLine error={error} />
        <button type="submit" class="primary" disabled={busy || title.trim() === "" || terms.trim() === ""}>
          Propose for signature
        </button>
      </form>
    </details>
  );
}

/** A concluded agreement, with its downloads. */
export function Concluded({ agreement }: { agreement: AgreementView }) {
  if (!agreement.verified) return <p class="error">This copy of the agreement does not verify: {agreement.error}</p>;
  const file = agreement.title.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "").toLowerCase() || "agreement";
  return (
    <div class="concluded">
      <p role="status">Signed by everyone and countersigned by the mediator. Keep a copy: it can be checked at any time, with no relay.</p>
      <h3>{agreement.title}</h3>
      <pre class="terms">{agreement.terms}</pre>
      <Attachments attachments={agreement.attachments} />
      <h4>Signed by</h4>
      <ul>
        {agreement.signers.map((s) => (
          <li key={s.device}>
            {s.name}
            {s.party ? ` (${s.party})` : " (mediator)"}
          </li>
        ))}
      </ul>
      <div class="actions">
        <button type="button" class="primary" onClick={() => download(`${file}.md`, agreement.markdown, "text/markdown")}>
          Download the signed agreement
        </button>
        <button type="button" onClick={() => download(`${file}.json`, agreement.json, "application/json")}>
          Download as JSON
        </button>
        <button type="button" onClick={() => go("verify")}>
          Check a copy
        </button>
      </div>
    </div>
  );
}

/** Check any copy of a signed agreement, offline. */
export function VerifyPage() {
  const [text, setText] = useState("");
  const [result, setResult] = useState<{ ok: true; agreement: Omit<AgreementView, "markdown" | "json"> } | { ok: false; why: string }>();
  const check = (t: string) => {
    try {
      setResult({ ok: true, agreement: JSON.parse(verifyAgreement(t)) });
    } catch (e) {
      setResult({ ok: false, why: e instanceof Error ? e.message : String(e) });
    }
  };
  return (
    <main id="main">
      <h1>Check a signed agreement</h1>
      <p>
        Choose the file you downloaded, or paste it. The check runs in this browser only: nothing is sent anywhere, and it
        works with no connection.
      </p>
      <label for="verify-file">Agreement file</label>
      <input
        id="verify-file"
        type="file"
        accept=".md,.json,.txt,text/markdown,application/json,text/plain"
        onChange={async (e) => {
          const file = (e.target as HTMLInputElement).files?.[0];
          if (file) {
            const t = await file.text();
            setText(t);
            check(t);
          }
        }}
      />
      <label for="verify-text">Or paste it here</label>
      <textarea id="verify-text" rows={8} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
      <button type="button" class="primary" onClick={() => check(text)} disabled={text.trim() === ""}>
        Check
      </button>
      {result?.ok === true && (
        <div class="verified" role="status">
          <p>
            <strong>Genuine.</strong> Every signature checks, and the text you have is exactly the text that was signed.
          </p>
          <h2>{result.agreement.title}</h2>
          <pre class="terms">{result.agreement.terms}</pre>
          <Attachments attachments={result.agreement.attachments} />
          <h3>Signed by</h3>
          <ul>
            {result.agreement.signers.map((s) => (
              <li key={s.device}>
                {s.name}
                {s.party ? ` (${s.party})` : " (mediator)"} — safety code {s.safetyCode}
              </li>
            ))}
          </ul>
        </div>
      )}
      {result?.ok === false && (
        <p class="error" role="alert">
          <strong>Not genuine, or not an agreement.</strong> {result.why}
        </p>
      )}
      <p>
        <a href="#">Back</a>
      </p>
    </main>
  );
}
