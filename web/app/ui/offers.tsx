// Offers: the form a party fills in (amount, currency, terms, conditions;
// a counter-offer names the offer it answers) and the offers log, read from
// what was said. The amount is checked by the client machine (the currency's
// decimal places), not here.

import { useState } from "preact/hooks";
import type { Driver } from "../driver.ts";
import { type CaucusEvent, type View, offerSummary, roomName } from "../model.ts";
import { ErrorLine, useAction } from "./common.tsx";

export interface OfferForm {
  counter: boolean;
  respondsTo?: string;
  currency: string;
  amount: string;
  terms: string;
  /** One condition per line. */
  conditions: string;
}

export function emptyOffer(): OfferForm {
  return { counter: false, currency: "GBP", amount: "", terms: "", conditions: "" };
}

/** The form as the client machine takes it (`Device.makeOffer`). */
export function offerJson(f: OfferForm): string {
  return JSON.stringify({
    counter: f.counter,
    respondsTo: f.respondsTo,
    currency: f.currency,
    amount: f.amount,
    terms: f.terms,
    conditions: f.conditions.split("\n"),
  });
}

const CURRENCIES = ["GBP", "EUR", "USD", "CHF", "JPY", "CAD", "AUD"];

export function OfferFields({ form, setForm, idPrefix }: { form: OfferForm; setForm: (f: OfferForm) => void; idPrefix: string }) {
  const field = (name: keyof OfferForm) => (e: Event) => setForm({ ...form, [name]: (e.target as HTMLInputElement).value });
  return (
    <div class="offer-fields">
      <div class="amount">
        <label for={`${idPrefix}-amount`}>Amount (optional)</label>
        <input id={`${idPrefix}-amount`} inputMode="decimal" autoComplete="off" value={form.amount} onInput={field("amount")} placeholder="250000.00" />
        <label for={`${idPrefix}-currency`}>Currency</label>
        <select id={`${idPrefix}-currency`} value={form.currency} onChange={field("currency")}>
          {CURRENCIES.map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
        </select>
      </div>
      <label for={`${idPrefix}-terms`}>Terms in words</label>
      <textarea id={`${idPrefix}-terms`} rows={2} value={form.terms} onInput={field("terms")} placeholder="A written apology" />
      <label for={`${idPrefix}-conditions`}>Conditions (one per line, optional)</label>
      <textarea id={`${idPrefix}-conditions`} rows={2} value={form.conditions} onInput={field("conditions")} placeholder="Each side bears its own costs" />
    </div>
  );
}

/** A party's offer form: a new offer, or a counter-offer to `answering`. */
export function MakeOffer(props: {
  driver: Driver;
  view: View;
  answering?: Extract<CaucusEvent, { type: "offer_carried" }>;
  /** (Mediator) record the offer for this party. */
  forParty?: string;
  onDone?: () => void;
}) {
  const { driver, view, answering, forParty, onDone } = props;
  const [form, setForm] = useState<OfferForm>(() => ({
    ...emptyOffer(),
    counter: answering !== undefined,
    respondsTo: answering?.message,
    currency: answering?.offer.amount?.currency ?? "GBP",
  }));
  const [run, busy, error] = useAction();
  const [sent, setSent] = useState(false);
  return (
    <form
      class="offer-form"
      aria-label={answering ? "Counter-offer" : "Make an offer"}
      onSubmit={async (ev) => {
        ev.preventDefault();
        const ok = await run(() =>
          driver.run((d, now) =>
            forParty ? d.makeOfferFor(view.session, forParty, offerJson(form), now) : d.makeOffer(view.session, offerJson(form), now),
          ),
        );
        if (ok) {
          setForm({ ...emptyOffer(), currency: form.currency });
          setSent(true);
          onDone?.();
        }
      }}
    >
      {answering && <p>Answering: {offerSummary(answering.offer)}</p>}
      <OfferFields form={form} setForm={(f) => (setSent(false), setForm(f))} idPrefix={answering ? "counter" : forParty ? `for-${forParty}` : "offer"} />
      <p class="hint">{forParty ? "Recorded in their private room, as you heard it." : "Your offer goes to the mediator, in your private room. The mediator decides whether and how to carry it to the other side."}</p>
      <ErrorLine error={error} />
      {sent && <p role="status">Your offer is with the mediator.</p>}
      <button type="submit" class="primary" disabled={busy}>
        {answering ? "Send counter-offer" : forParty ? "Record offer" : "Send offer to the mediator"}
      </button>
    </form>
  );
}

/** The offers log: every offer this device has seen, made or carried, in order. */
export function OffersLog({ view, events }: { view: View; events: CaucusEvent[] }) {
  const offers = events.filter(
    (e): e is Extract<CaucusEvent, { type: "offer" | "offer_carried" }> => e.type === "offer" || e.type === "offer_carried",
  );
  if (offers.length === 0) return <p class="hint">No offers yet.</p>;
  return (
    <ol class="offers" aria-label="Offers log">
      {offers.map((e) => (
        <li key={e.message}>
          <span class="when">
            {e.type === "offer"
              ? view.mediators?.some((m) => m.device === e.by)
                ? `Recorded by the mediator in ${roomName(view, e.room)}`
                : `Made in ${roomName(view, e.room)}`
              : `Carried to ${roomName(view, e.room)} from ${roomName(view, e.from_room)}`}
          </span>
          <span>{offerSummary(e.offer)}</span>
        </li>
      ))}
    </ol>
  );
}
