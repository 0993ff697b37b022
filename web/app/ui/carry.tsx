// The mediator carries a message, a document or an offer to another room:
// pick the destination, choose the author's words (the document as it is)
// or a reframing (a version of the mediator's own), then confirm on a
// page that names the destination in words. Nothing is sent before that
// confirmation (a forward to the wrong room by one click is what people fear
// most in a chat tool).

import { useState } from "preact/hooks";
import { type Driver, Stopped } from "../driver.ts";
import { type Said, type View, offerSummary, roomName } from "../model.ts";
import { formatSize } from "../../pkg/caucus_web.js";
import { Dialog, ErrorLine, useAction } from "./common.tsx";
import { ChooseFile } from "./documents.tsx";
import { OfferFields, type OfferForm, emptyOffer, offerJson } from "./offers.tsx";

export function CarryDialog({ driver, view, event, onClose }: { driver: Driver; view: View; event: Said; onClose: () => void }) {
  const isOffer = event.type === "offer" || event.type === "offer_carried";
  const isDocument = event.type === "document";
  const destinations = (view.rooms ?? []).filter(
    (r) => r.id !== event.room && (r.kind !== "joint" || r.open) && r.members.includes(view.me.device),
  );
  const [to, setTo] = useState<string>();
  const [reframe, setReframe] = useState(false);
  const [words, setWords] = useState("");
  const [offer, setOffer] = useState<OfferForm>(() => (isOffer ? fromOffer(event) : emptyOffer()));
  const [own, setOwn] = useState<{ file: File; title: string }>();
  const [confirming, setConfirming] = useState(false);
  const [run, busy, error] = useAction();
  const original =
    event.type === "message"
      ? event.text
      : event.type === "document"
        ? `“${event.document.title}” (${event.document.name}, ${formatSize(event.document.size)})`
        : "offer" in event
          ? offerSummary(event.offer)
          : "";
  const where = to ? roomName(view, to) : "";
  const title = isOffer ? "Carry an offer" : isDocument ? "Share a document" : "Share a message";

  const send = () =>
    run(async () => {
      if (to === undefined) return;
      if (isOffer) {
        const message = (event as { message: string }).message;
        await driver.run((d, now) => d.carryOffer(view.session, message, to, reframe ? offerJson(offer) : "", now));
      } else if (event.type === "document") {
        try {
          await driver.carryDocument(view.session, event.hash, to, reframe ? own : undefined);
        } catch (e) {
          // The mediator stopped sending their version: nothing was shared.
          if (!(e instanceof Stopped)) throw e;
        }
      } else if (event.type === "message") {
        await driver.run((d, now) => d.forward(view.session, event.hash, to, reframe ? words : "", now));
      }
      onClose();
    });

  if (confirming && to !== undefined && isDocument) {
    return (
      <Dialog title={`Share this document with ${where}?`} onClose={onClose}>
        <p>
          Everyone in <strong>{where}</strong> will be able to read and download {reframe ? "your own version" : "the document as it was added, unchanged"}:
        </p>
        <blockquote>{reframe && own ? `“${own.title}” (${own.file.name}, ${formatSize(own.file.size)})` : original}</blockquote>
        <p>The author will see that you shared it, where, and how.</p>
        <ErrorLine error={error} />
        <div class="actions">
          <button type="button" onClick={() => setConfirming(false)}>
            Back
          </button>
          <button type="button" class="primary" disabled={busy} onClick={send}>
            Share with {where}
          </button>
        </div>
      </Dialog>
    );
  }

  if (confirming && to !== undefined) {
    return (
      <Dialog title={`${isOffer ? "Carry this offer" : "Share this"} with ${where}?`} onClose={onClose}>
        <p>
          Everyone in <strong>{where}</strong> will read {reframe ? (isOffer ? "this offer as you restated it" : "your reframing") : isOffer ? "this offer as it was made" : "the author's words, unchanged"}:
        </p>
        <blockquote>{reframe ? (isOffer ? offerSummary(offerFromForm(offer)) : words) : original}</blockquote>
        {!isOffer && <p>The author will see that you shared it, where, and how.</p>}
        <ErrorLine error={error} />
        <div class="actions">
          <button type="button" onClick={() => setConfirming(false)}>
            Back
          </button>
          <button type="button" class="primary" disabled={busy} onClick={send}>
            {isOffer ? "Carry" : "Share"} with {where}
          </button>
        </div>
      </Dialog>
    );
  }

  return (
    <Dialog title={title} onClose={onClose}>
      <blockquote>{original}</blockquote>
      <fieldset>
        <legend>Where to</legend>
        {destinations.length === 0 && <p>There is no other room to carry it to yet.</p>}
        {destinations.map((r) => (
          <label key={r.id}>
            <input type="radio" name="destination" checked={to === r.id} onChange={() => setTo(r.id)} /> {roomName(view, r.id)}
          </label>
        ))}
      </fieldset>
      <fieldset>
        <legend>How</legend>
        <label>
          <input type="radio" name="mode" checked={!reframe} onChange={() => setReframe(false)} />{" "}
          {isOffer ? "As it was made" : isDocument ? "Share this document as it is" : "Word for word"}
        </label>
        <label>
          <input type="radio" name="mode" checked={reframe} onChange={() => setReframe(true)} />{" "}
          {isOffer ? "Restated by me" : isDocument ? "Share my own version" : "Reframed in my words"}
        </label>
      </fieldset>
      {reframe && isDocument && <ChooseFile idPrefix="own-version" onChosen={setOwn} />}
      {reframe && event.type === "message" && (
        <>
          <label for="reframing">Your words</label>
          <textarea id="reframing" rows={3} value={words} onInput={(e) => setWords((e.target as HTMLTextAreaElement).value)} />
        </>
      )}
      {reframe && isOffer && <OfferFields form={offer} setForm={setOffer} idPrefix="restate" />}
      <ErrorLine error={error} />
      <div class="actions">
        <button type="button" onClick={onClose}>
          Cancel
        </button>
        <button type="button" class="primary" disabled={to === undefined || (reframe && event.type === "message" && words.trim() === "") || (reframe && isDocument && own === undefined)} onClick={() => setConfirming(true)}>
          Continue
        </button>
      </div>
    </Dialog>
  );
}

function fromOffer(event: Said): OfferForm {
  const o = (event as { offer: import("../model.ts").Offer }).offer;
  return {
    counter: o.kind === "counter_offer",
    respondsTo: o.responds_to ?? undefined,
    currency: o.amount?.currency ?? "GBP",
    amount: o.amount ? o.amount.text.replace(/^[A-Z]{3}\s*/, "") : "",
    terms: o.terms,
    conditions: o.conditions.join("\n"),
  };
}

function offerFromForm(f: OfferForm): import("../model.ts").Offer {
  return {
    kind: f.counter ? "counter_offer" : "offer",
    amount: f.amount.trim() ? { minor: 0, exponent: 0, currency: f.currency, text: `${f.currency} ${f.amount.trim()}` } : null,
    terms: f.terms.trim(),
    conditions: f.conditions.split("\n").map((c) => c.trim()).filter((c) => c),
    responds_to: f.respondsTo ?? null,
  };
}
