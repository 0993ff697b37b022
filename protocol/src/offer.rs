//! Settlement offers: structured items a party (or the mediator for it)
//! records in its private room, and that the mediator carries across like
//! any forward.
//!
//! An [`Offer`] names a sum of money (an [`Amount`]: integer minor units, a
//! currency code and its number of decimal places; never a float) or
//! non-financial terms in words, or both, with its conditions. A counter-offer
//! names the offer it answers by the envelope hash of the carried offer the
//! party received. A [`CarriedOffer`] is the mediator's copy in another
//! room, verbatim or restated.
//!
//! ```
//! use caucus_protocol::offer::{Amount, Offer, OfferKind};
//!
//! let offer = Offer {
//!     kind: OfferKind::Offer,
//!     amount: Some(Amount::parse("GBP", "250000.00")?),
//!     terms: "A written apology from the trust".into(),
//!     conditions: vec!["Each side bears its own costs".into()],
//!     responds_to: None,
//! };
//! assert_eq!(offer.amount.unwrap().to_string(), "GBP 250000.00");
//! # Ok::<(), caucus_protocol::Error>(())
//! ```

use std::fmt;

use crate::codec::{Canonical, DecodeError, Reader, Writer};
use crate::content::ForwardMode;
use crate::crypto::Digest;
use crate::error::Error;
use crate::ids::RoomId;

/// The most decimal places an amount may have.
pub const MAX_EXPONENT: u8 = 4;

/// Whether an offer opens or answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    /// A first offer.
    Offer,
    /// An answer to an offer received.
    CounterOffer,
}

/// A sum of money: `minor` units of `currency`, with `exponent` decimal
/// places (GBP 250000.00 is `minor` 25000000, exponent 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    /// The sum in minor units (pence, cents).
    pub minor: u64,
    /// An ISO 4217 code: three ASCII capital letters.
    pub currency: [u8; 3],
    /// Decimal places, at most [`MAX_EXPONENT`].
    pub exponent: u8,
}

impl Amount {
    /// Parse `"250000.00"` in `currency` ("GBP"); the number of decimal
    /// places written is the exponent.
    pub fn parse(currency: &str, value: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidOffer("an amount is digits with an optional decimal point");
        let currency: [u8; 3] = currency
            .as_bytes()
            .try_into()
            .ok()
            .filter(|c: &[u8; 3]| c.iter().all(u8::is_ascii_uppercase))
            .ok_or(Error::InvalidOffer("a currency is three capital letters"))?;
        let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
        if whole.is_empty() || !(whole.bytes().chain(fraction.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let exponent = u8::try_from(fraction.len())
            .ok()
            .filter(|e| *e <= MAX_EXPONENT && (*e > 0 || !value.ends_with('.')))
            .ok_or_else(invalid)?;
        let minor = format!("{whole}{fraction}")
            .parse::<u64>()
            .map_err(|_| Error::InvalidOffer("the amount is too large"))?;
        Ok(Self {
            minor,
            currency,
            exponent,
        })
    }

    /// The currency code.
    pub fn currency(&self) -> &str {
        std::str::from_utf8(&self.currency).unwrap_or("???")
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scale = 10u64.pow(u32::from(self.exponent));
        let (whole, part) = (self.minor / scale, self.minor % scale);
        write!(f, "{} {whole}", self.currency())?;
        if self.exponent > 0 {
            write!(f, ".{part:0width$}", width = usize::from(self.exponent))?;
        }
        Ok(())
    }
}

/// A settlement offer or counter-offer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Offer {
    /// Offer or counter-offer.
    pub kind: OfferKind,
    /// The sum offered, if any.
    pub amount: Option<Amount>,
    /// Non-financial terms in words (may be empty when there is an amount).
    pub terms: String,
    /// The conditions attached.
    pub conditions: Vec<String>,
    /// For a counter-offer: the envelope hash of the carried offer it answers.
    pub responds_to: Option<Digest>,
}

impl Offer {
    /// Check the rules a decoder also checks: something is offered, and a
    /// counter-offer says what it answers.
    pub fn validate(&self) -> Result<(), Error> {
        if self.amount.is_none() && self.terms.trim().is_empty() {
            return Err(Error::InvalidOffer("an offer names an amount or terms"));
        }
        if self.kind == OfferKind::CounterOffer && self.responds_to.is_none() {
            return Err(Error::InvalidOffer(
                "a counter-offer names the offer it answers",
            ));
        }
        Ok(())
    }

    /// One line for a log or a share receipt.
    pub fn summary(&self) -> String {
        let kind = match self.kind {
            OfferKind::Offer => "Offer",
            OfferKind::CounterOffer => "Counter-offer",
        };
        let mut parts = Vec::new();
        if let Some(a) = &self.amount {
            parts.push(a.to_string());
        }
        if !self.terms.is_empty() {
            parts.push(self.terms.clone());
        }
        let mut out = format!("{kind}: {}", parts.join("; "));
        if !self.conditions.is_empty() {
            out.push_str(&format!(" (conditions: {})", self.conditions.join("; ")));
        }
        out
    }
}

impl Canonical for OfferKind {
    fn encode(&self, w: &mut Writer) {
        w.u8(match self {
            Self::Offer => 1,
            Self::CounterOffer => 2,
        });
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Offer),
            2 => Ok(Self::CounterOffer),
            tag => Err(DecodeError::InvalidTag {
                what: "offer kind",
                tag,
            }),
        }
    }
}

impl Canonical for Amount {
    fn encode(&self, w: &mut Writer) {
        w.u64(self.minor).fixed(&self.currency).u8(self.exponent);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let minor = r.u64()?;
        let currency: [u8; 3] = r.array()?;
        let exponent = r.u8()?;
        if !currency.iter().all(u8::is_ascii_uppercase) {
            return Err(DecodeError::Invalid("currency code"));
        }
        if exponent > MAX_EXPONENT {
            return Err(DecodeError::Invalid("amount exponent"));
        }
        Ok(Self {
            minor,
            currency,
            exponent,
        })
    }
}

impl Canonical for Offer {
    fn encode(&self, w: &mut Writer) {
        self.kind.encode(w);
        w.option(self.amount.as_ref(), |w, a| a.encode(w));
        w.str(&self.terms);
        w.list(&self.conditions, |w, c| {
            w.str(c);
        });
        w.option(self.responds_to.as_ref(), |w, d| d.encode(w));
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let offer = Self {
            kind: OfferKind::decode(r)?,
            amount: r.option(Amount::decode)?,
            terms: r.string()?,
            conditions: r.list(|r| r.string())?,
            responds_to: r.option(Digest::decode)?,
        };
        offer
            .validate()
            .map_err(|_| DecodeError::Invalid("offer"))?;
        Ok(offer)
    }
}

/// A mediator's copy of an offer in another room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedOffer {
    /// The room the offer was made in.
    pub source_room: RoomId,
    /// The envelope hash of the offer there.
    pub source_message: Digest,
    /// Verbatim (the offer exactly as made) or restated by the mediator.
    pub mode: ForwardMode,
    /// The offer as carried.
    pub offer: Offer,
}

impl Canonical for CarriedOffer {
    fn encode(&self, w: &mut Writer) {
        self.source_room.encode(w);
        self.source_message.encode(w);
        self.mode.encode(w);
        self.offer.encode(w);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            source_room: RoomId::decode(r)?,
            source_message: Digest::decode(r)?,
            mode: ForwardMode::decode(r)?,
            offer: Offer::decode(r)?,
        })
    }
}

/// As JSON: `{"minor": 12000000, "currency": "GBP", "exponent": 2, "text":
/// "GBP 120000.00"}`.
impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("Amount", 4)?;
        out.serialize_field("minor", &self.minor)?;
        out.serialize_field("currency", self.currency())?;
        out.serialize_field("exponent", &self.exponent)?;
        out.serialize_field("text", &self.to_string())?;
        out.end()
    }
}
