// Arriving with an invitation, and waiting to be let in. The invitation's
// secret is in the address after `#`, which the browser never sends to the
// relay; the page reads it, takes it out of the address bar at once, and
// hands it to the client machine when the person chooses to join.

import { useState } from "preact/hooks";
import { readInvite, sameRelay } from "../../pkg/caucus_web.js";
import type { Driver } from "../driver.ts";
import type { View } from "../model.ts";
import { Code, ErrorLine, go, useAction } from "./common.tsx";

interface Invitation {
  relay: string;
  session: string;
  mediatorSafetyCode: string;
  expiresAt: number;
  link: string;
}

export function Invited({ driver, link }: { driver: Driver; link: string }) {
  const [run, busy, error] = useAction();
  let invite: Invitation;
  try {
    invite = JSON.parse(readInvite(link)) as Invitation;
  } catch (e) {
    return (
      <main id="main">
        <h1>This invitation link does not work</h1>
        <p>{e instanceof Error ? e.message : String(e)}. Check that you copied the whole link, or ask the mediator for a new one.</p>
        <p>
          <a href="#">Go to the start page</a>
        </p>
      </main>
    );
  }
  const expired = invite.expiresAt * 1000 < Date.now();
  const elsewhere = !sameRelay(invite.relay, driver.relay);
  return (
    <main id="main">
      <h1>You are invited to a mediation</h1>
      <p>
        Everything you write here is encrypted on this device. Only the people it is meant for can read it — not the service
        that carries it.
      </p>
      {expired && <p class="error">This invitation has expired. Ask the mediator for a new one.</p>}
      {elsewhere && (
        <p class="error">
          This invitation is for another Caucus service ({invite.relay}). Open it with that service's page.
        </p>
      )}
      <p>
        When you join, you wait until the mediator lets you in. The mediator will check who you are by comparing safety codes
        with you, by phone or video:
      </p>
      <ul>
        <li>
          Your mediator's safety code is <Code code={invite.mediatorSafetyCode} />
        </li>
        <li>
          Your own is <Code code={driver.device.safetyCode} />
        </li>
      </ul>
      <ErrorLine error={error} />
      <button
        type="button"
        class="primary"
        disabled={busy || expired || elsewhere}
        onClick={() =>
          run(() => {
            const session = driver.device.join(invite.link, Date.now());
            driver.now(() => undefined);
            location.replace(`#session=${session}`);
          })
        }
      >
        Join the mediation
      </button>
    </main>
  );
}

export function WaitingRoom({ driver, view }: { driver: Driver; view: View }) {
  const news = driver.newsOf(view.session);
  const [leaving, setLeaving] = useState(false);
  if (news.declined) {
    return (
      <main id="main">
        <h1>The mediator did not let you in</h1>
        <p>If you think this is a mistake, contact the mediator and ask for a new invitation.</p>
        <button
          type="button"
          onClick={() => {
            driver.erase(view.session);
            go("");
          }}
        >
          Remove this invitation from this device
        </button>
      </main>
    );
  }
  return (
    <main id="main">
      <h1>Waiting for the mediator to let you in</h1>
      <p role="status" aria-live="polite" class={`where ${news.mediatorOnline ? "online" : "offline"}`}>
        {!driver.connected || news.mediatorOnline === undefined
          ? "Connecting…"
          : news.mediatorOnline
            ? "The mediator is online and has been told you are here."
            : "The mediator is not online yet. They will be told you are here when they come online."}
      </p>
      <p>Keep this page open. When the mediator asks, read them your safety code:</p>
      <p class="big">
        <Code code={view.me.safetyCode} />
      </p>
      <p>
        Check that the mediator's code is <Code code={view.mediator?.safetyCode ?? ""} />. If it is not, do not go on: close this page
        and tell the mediator.
      </p>
      {!leaving ? (
        <button type="button" onClick={() => setLeaving(true)}>
          Leave the waiting room
        </button>
      ) : (
        <p>
          <button
            type="button"
            class="danger"
            onClick={() => {
              driver.erase(view.session);
              go("");
            }}
          >
            Leave and forget this invitation
          </button>
        </p>
      )}
    </main>
  );
}
